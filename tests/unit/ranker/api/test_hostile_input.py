"""Inputs that fuzzing found answered 500, against the real service with the tiny models.

Lone surrogates in any text (the models' tokenizer and SQLite cannot encode them), 300,000
filter values (past SQLite's variable limit), a backend that fails while it runs (424).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.catalog import TextTemplate, load_products, sample_catalog_path
from indexer.jobs import build_index
from ranker.api.app import create_app
from ranker.api.service import Service
from ranker.api.service_loading import load_service
from ranker.embedder import Embedder
from ranker.settings import ApiSettings, EmbedderSettings, RerankSettings, Settings

PRODUCTS = 30


@pytest.fixture(scope="module")
def settings(
    tiny_embedder_dir: Path, tiny_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings with the tiny models and an index of the sample catalog's first products."""
    home = tmp_path_factory.mktemp("hostile")
    settings = Settings(
        home=home,
        embedder=EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"),
        rerank=RerankSettings(model=str(tiny_reranker_dir), backend="torch"),
    )
    build_index(
        load_products(sample_catalog_path())[:PRODUCTS],
        settings.index_path,
        embedder=Embedder.load(tiny_embedder_dir, backend="torch"),
        template=TextTemplate(settings.index.text_template),
        source="sample",
        hnsw_threshold=settings.index.hnsw_threshold,
        progress=False,
    )
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, loader=load_service)) as test_client:
        yield test_client


def _post(client: TestClient, path: str, raw: str) -> Any:
    """POST ``raw`` JSON text as it is (``\\ud800`` stays an escape in the body)."""
    return client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "raw", "where"),
    [
        ("/search", '{"query": "bag \\ud800"}', "query"),
        ("/search", '{"query": "bag", "filters": {"brands": ["\\ud800"]}}', "filters.brands[0]"),
        (
            "/search",
            '{"query": "bag", "filters": {"categories": ["a", "\\udc00"]}}',
            "filters.categories[1]",
        ),
        ("/v1/rerank", '{"query": "\\ud800", "documents": ["x"]}', "query"),
        ("/v1/rerank", '{"query": "q", "documents": ["x\\udbff"]}', "documents[0]"),
        ("/v1/rerank", '{"query": "q", "documents": [{"text": "\\ud800"}]}', "documents[0].text"),
        ("/v1/rerank", '{"query": "q", "documents": ["x"], "model": "\\ud800"}', "model"),
        ("/rerank", '{"query": "q", "texts": ["ok", "\\ud800"]}', "texts[1]"),
        ("/embed", '{"inputs": "\\ud800"}', "inputs"),
        ("/embed", '{"inputs": ["a", "\\ude00b"]}', "inputs[1]"),
        ("/search", '{"query": "bag", "\\ud800": 1}', "body"),
    ],
)
def test_a_lone_surrogate_anywhere_is_422_not_500(
    client: TestClient, path: str, raw: str, where: str
) -> None:
    response = _post(client, path, raw)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_type"] == "validation"
    assert f"{where} holds a lone surrogate" in body["error"]


def test_a_surrogate_pair_is_ordinary_text(client: TestClient) -> None:
    response = _post(client, "/v1/rerank", '{"query": "bag \\ud83d\\ude00", "documents": ["x"]}')

    assert response.status_code == 200, response.text


def test_300000_filter_values_are_413_not_500(client: TestClient) -> None:
    brands = [f"b{i}" for i in range(300_000)]

    response = client.post("/search", json={"query": "bag", "filters": {"brands": brands}})

    assert response.status_code == 413, response.text
    body = response.json()
    assert body["error_type"] == "too_large"
    assert "filters.brands has 300000 values; the limit is 1000" in body["error"]


def test_the_filter_value_limit_is_a_setting(client: TestClient, settings: Settings) -> None:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    limited = settings.model_copy(update={"api": ApiSettings(max_filter_values=3)})
    with TestClient(create_app(limited, service=service)) as small:
        four = small.post(
            "/search", json={"query": "bag", "filters": {"categories": ["a", "b", "c", "d"]}}
        )
        three = small.post("/search", json={"query": "bag", "filters": {"brands": ["a", "b", "c"]}})

    assert four.status_code == 413
    assert "filters.categories has 4 values; the limit is 3" in four.json()["error"]
    assert three.status_code == 200, three.text


@pytest.mark.parametrize(
    ("path", "body", "role"),
    [
        ("/rerank", {"query": "bag", "texts": ["a bag"]}, "reranker"),
        ("/search", {"query": "bag"}, "embedder"),
        ("/embed", {"inputs": "bag"}, "embedder"),
    ],
)
def test_a_backend_that_fails_while_it_runs_is_424(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict[str, Any],
    role: str,
) -> None:
    snapshot = client.app.state.service.snapshot  # type: ignore[attr-defined]
    backend = getattr(snapshot, role).backend

    def out_of_memory(batch: Any) -> Any:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(backend, "infer", out_of_memory)
    snapshot.embedder.query_cache.clear()  # the query must reach the backend, not the cache

    response = client.post(path, json=body)

    assert response.status_code == 424, response.text
    error = response.json()
    assert error["error_type"] == "backend"
    assert "out of memory" in error["error"]
    assert error["request_id"] == response.headers["x-request-id"]
