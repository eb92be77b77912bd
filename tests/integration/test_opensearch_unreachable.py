"""OpenSearch unreachable, in-process: 503 ``index_unavailable`` or the embedded fallback.

No node is needed: the settings point at a port nothing listens on, so every request to
the cluster is refused at once. The embedded index of the shared fixtures is the fallback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import StoreUnavailableError
from indexer.stores.opensearch.bulk import BulkOptions
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.devnode import free_port
from indexer.stores.opensearch.mapping import index_meta
from indexer.stores.opensearch.store import (
    OpenSearchIndex,
    OpenSearchLexicalIndex,
    OpenSearchProductStore,
    OpenSearchVectorStore,
)
from ranker.api.app import create_app
from ranker.api.service import Service
from ranker.api.service_loading import load_service
from ranker.embedder import Embedder
from ranker.loading import open_embedded_pipeline
from ranker.pipeline import SearchPipeline
from ranker.settings import IndexSettings, OpenSearchSettings, Settings

pytest.importorskip("opensearchpy")

QUERY = "adidas gym bag for women"


def _unreachable(settings: Settings, *, fallback: bool) -> Settings:
    """``settings`` with the opensearch backend on a closed port of 127.0.0.1."""
    return settings.model_copy(
        update={
            "index": IndexSettings(backend="opensearch"),
            "opensearch": OpenSearchSettings(
                url=f"http://127.0.0.1:{free_port()}",
                max_retries=0,
                timeout_s=2.0,
                search_timeout_s=2.0,
                fallback_to_embedded=fallback,
            ),
        }
    )


@pytest.fixture(scope="module")
def down_settings(integration_settings: Settings, built_index: dict[str, Any]) -> Settings:
    return _unreachable(integration_settings, fallback=False)


@pytest.fixture(scope="module")
def fallback_settings(integration_settings: Settings, built_index: dict[str, Any]) -> Settings:
    return _unreachable(integration_settings, fallback=True)


@pytest.fixture(scope="module")
def down_client(down_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(down_settings, loader=load_service)) as client:
        yield client


@pytest.fixture(scope="module")
def fallback_client(fallback_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(fallback_settings, loader=load_service)) as client:
        yield client


def test_search_answers_503_index_unavailable_without_a_fallback(down_client: TestClient) -> None:
    search = down_client.post("/search", json={"query": QUERY})
    rerank = down_client.post("/v1/rerank", json={"query": QUERY, "documents": ["adidas bag"]})

    assert search.status_code == 503, search.text
    assert search.json()["error_type"] == "index_unavailable"
    assert "unreachable" in search.json()["error"]
    assert "FALLBACK_TO_EMBEDDED" in search.json()["error"]
    assert rerank.status_code == 200, rerank.text


def test_healthz_says_opensearch_is_unreachable_and_nothing_serves(
    down_client: TestClient, down_settings: Settings
) -> None:
    response = down_client.get("/healthz")
    health = response.json()

    assert response.status_code == 503
    assert health["status"] == "degraded"
    assert health["index"]["backend"] == "opensearch"
    assert health["index"]["reachable"] is False
    assert health["index"]["serving"] is None
    assert health["index"]["fallback"] is False
    assert down_settings.opensearch.url in health["index"]["detail"]


def test_search_falls_back_to_the_embedded_index(
    fallback_client: TestClient, integration_settings: Settings
) -> None:
    with TestClient(create_app(integration_settings, loader=load_service)) as embedded:
        expected = embedded.post("/search", json={"query": QUERY, "k": 5}).json()

    response = fallback_client.post("/search", json={"query": QUERY, "k": 5})

    assert response.status_code == 200, response.text
    assert response.json()["index"] == "embedded"
    assert [r["id"] for r in response.json()["results"]] == [r["id"] for r in expected["results"]]
    assert expected["index"] == "embedded"


def test_healthz_says_the_fallback_serves(
    fallback_client: TestClient, catalog_subset: list[Product]
) -> None:
    response = fallback_client.get("/healthz")
    health = response.json()

    assert response.status_code == 200, health
    assert health["status"] == "fallback"
    assert health["index"] == {
        "backend": "opensearch",
        "serving": "embedded",
        "reachable": False,
        "fallback": True,
        "detail": health["index"]["detail"],
    }
    assert "unreachable" in health["index"]["detail"]
    assert health["products"] == len(catalog_subset)


def _opensearch_pipeline(settings: Settings, embedder: Embedder) -> SearchPipeline:
    """A pipeline on an OpenSearch index that was open when the cluster went away."""
    config = settings.opensearch
    template = TextTemplate(settings.index.text_template)
    index = OpenSearchIndex(
        make_client(config),
        alias=config.index_alias,
        meta=index_meta(
            identity=embedder.identity, template=template, space_type="innerproduct", source="t"
        ),
        ef_search=config.hnsw_ef_search,
        bulk=BulkOptions(),
        url=config.url,
        search_timeout_s=config.search_timeout_s,
    )
    return SearchPipeline(
        embedder=embedder,
        vector_store=OpenSearchVectorStore(index),
        lexical_index=OpenSearchLexicalIndex(index),
        product_store=OpenSearchProductStore(index),
        template=template,
        retrieval=settings.retrieval,
        rerank=settings.rerank,
    )


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_a_cluster_lost_after_start_up_fails_searches_as_unavailable(
    down_settings: Settings, tiny_embedder: Embedder, mode: str
) -> None:
    pipeline = _opensearch_pipeline(down_settings, tiny_embedder)

    with pytest.raises(StoreUnavailableError, match="unreachable"):
        pipeline.search(QUERY, mode=mode, rerank=False)  # type: ignore[arg-type]


def test_a_cluster_lost_after_start_up_is_answered_by_the_fallback(
    fallback_settings: Settings, tiny_embedder: Embedder
) -> None:
    primary = _opensearch_pipeline(fallback_settings, tiny_embedder)
    fallback = open_embedded_pipeline(fallback_settings, embedder=tiny_embedder, reranker=None)
    service = Service(
        embedder=tiny_embedder,
        reranker=None,
        pipeline=primary,
        problems=[],
        backend="opensearch",
        fallback=fallback,
        probe=lambda: "refused",
    )
    with TestClient(create_app(fallback_settings, service=service)) as client:
        search = client.post("/search", json={"query": QUERY, "k": 3})
        health = client.get("/healthz").json()
    without_fallback = Service(
        embedder=tiny_embedder, reranker=None, pipeline=primary, problems=[], backend="opensearch"
    )
    with TestClient(create_app(fallback_settings, service=without_fallback)) as client:
        refused = client.post("/search", json={"query": QUERY, "k": 3})

    assert search.status_code == 200, search.text
    assert search.json()["index"] == "embedded"
    assert len(search.json()["results"]) == 3
    assert health["index"]["serving"] == "embedded"
    assert health["index"]["reachable"] is False
    assert refused.status_code == 503
    assert refused.json()["error_type"] == "index_unavailable"


def test_an_index_missing_at_start_up_is_opened_when_the_cluster_answers(
    fallback_settings: Settings, tiny_embedder: Embedder
) -> None:
    fallback = open_embedded_pipeline(fallback_settings, embedder=tiny_embedder, reranker=None)
    opened: list[int] = []

    def reopen() -> SearchPipeline:
        opened.append(1)
        return fallback

    service = Service(
        embedder=tiny_embedder,
        reranker=None,
        pipeline=None,
        problems=["index: unreachable"],
        backend="opensearch",
        reopen=reopen,
    )

    outcome, answered_by = service.search(
        QUERY, k=2, mode=None, search_filter=None, rerank=False, rerank_depth=None
    )
    service.primary()

    assert answered_by == "opensearch"
    assert len(outcome.results) == 2
    assert opened == [1]
    assert service.problems == []
