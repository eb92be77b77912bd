"""Server-side hybrid: the query and pipeline bodies, and creating the pipeline by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from indexer.stores.base import SearchFilter, StoreError
from indexer.stores.opensearch.mapping import (
    BM25_TEXT_FIELD,
    VECTOR_FIELD,
    hybrid_pipeline_body,
    hybrid_query,
    hybrid_weights,
)
from indexer.stores.opensearch.pipelines import ensure_search_pipeline
from indexer.stores.opensearch.store import ServerHybrid, server_hybrid_from
from ranker.settings import OpenSearchSettings

opensearchpy = pytest.importorskip("opensearchpy")

FILTER = SearchFilter(brands=("Adidas",), price_max=50.0)


def test_hybrid_query_holds_knn_then_bm25_each_with_the_filter() -> None:
    body = hybrid_query(
        "gym bag", np.ones(4, dtype=np.float32), depth=100, ef_search=128, search_filter=FILTER
    )

    dense, lexical = body["query"]["hybrid"]["queries"]
    knn = dense["knn"][VECTOR_FIELD]
    assert body["size"] == 100
    assert body["_source"] is False
    assert "sort" not in body
    assert knn["k"] == 100
    assert knn["vector"] == [1.0, 1.0, 1.0, 1.0]
    assert knn["filter"]["bool"]["filter"] == [
        {"terms": {"brand.keyword": ["adidas"]}},
        {"range": {"price": {"lte": 50.0}}},
    ]
    assert lexical["bool"]["must"] == [
        {"match": {BM25_TEXT_FIELD: {"query": "gym bag", "operator": "or"}}}
    ]
    assert lexical["bool"]["filter"] == knn["filter"]["bool"]["filter"]


def test_hybrid_query_without_filter_has_no_knn_filter() -> None:
    body = hybrid_query(
        "bag", np.ones(2, dtype=np.float32), depth=10, ef_search=5, search_filter=None
    )

    knn = body["query"]["hybrid"]["queries"][0]["knn"][VECTOR_FIELD]
    assert "filter" not in knn
    assert knn["method_parameters"] == {"ef_search": 10}


@pytest.mark.parametrize("normalization", ["min_max", "l2"])
def test_pipeline_normalizes_then_takes_the_weighted_arithmetic_mean(
    normalization: Any,
) -> None:
    body = hybrid_pipeline_body(normalization=normalization, weights=(0.25, 0.75))

    (processor,) = body["phase_results_processors"]
    assert processor == {
        "normalization-processor": {
            "normalization": {"technique": normalization},
            "combination": {
                "technique": "arithmetic_mean",
                "parameters": {"weights": [0.25, 0.75]},
            },
        }
    }


def test_weights_from_settings_are_scaled_to_sum_to_one() -> None:
    assert hybrid_weights(dense=1.0, lexical=1.0) == (0.5, 0.5)
    assert hybrid_weights(dense=1.0, lexical=3.0) == (0.25, 0.75)
    assert hybrid_weights(dense=0.0, lexical=2.0) == (0.0, 1.0)
    dense, lexical = hybrid_weights(dense=1.0, lexical=2.0)
    assert dense + lexical == pytest.approx(1.0, abs=1e-9)


def test_weights_that_cannot_be_combined_are_refused() -> None:
    with pytest.raises(ValueError, match="not both 0"):
        hybrid_weights(dense=0.0, lexical=0.0)
    with pytest.raises(ValueError, match="summing to 1"):
        hybrid_pipeline_body(normalization="min_max", weights=(0.5, 0.6))


def test_settings_choose_client_rrf_unless_told_server() -> None:
    assert server_hybrid_from(OpenSearchSettings()) is None
    chosen = server_hybrid_from(
        OpenSearchSettings(hybrid="server", hybrid_pipeline="p1", hybrid_normalization="l2")
    )
    assert chosen == ServerHybrid(pipeline="p1", normalization="l2")


class _Transport:
    """Search pipelines and plugins of a pretend cluster."""

    def __init__(self, plugins: list[str]) -> None:
        self.plugins = plugins
        self.pipelines: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []

    def perform_request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        self.calls.append((method, path))
        if path == "/_cat/plugins":
            return [{"name": "node", "component": c, "version": "2.19.1.0"} for c in self.plugins]
        name = path.rsplit("/", 1)[-1]
        if method == "GET":
            if name not in self.pipelines:
                raise opensearchpy.NotFoundError(404, "resource_not_found_exception", {})
            return {name: self.pipelines[name]}
        if method == "PUT":
            self.pipelines[name] = body
            return {"acknowledged": True}
        raise AssertionError(f"unexpected {method} {path}")


class _Client:
    def __init__(self, plugins: list[str]) -> None:
        self.transport = _Transport(plugins)


BODY = hybrid_pipeline_body(normalization="min_max", weights=(0.5, 0.5))


def test_pipeline_is_created_once_then_reused() -> None:
    client = _Client(["opensearch-knn", "opensearch-neural-search"])

    first = ensure_search_pipeline(client, "hybrid", BODY, requires="neural-search")
    second = ensure_search_pipeline(client, "hybrid", BODY, requires="neural-search")

    assert (first, second) == (True, False)
    assert client.transport.pipelines == {"hybrid": BODY}
    assert [c for c in client.transport.calls if c[0] == "PUT"] == [
        ("PUT", "/_search/pipeline/hybrid")
    ]


def test_a_pipeline_with_another_body_is_updated() -> None:
    client = _Client(["opensearch-neural-search"])
    ensure_search_pipeline(client, "hybrid", BODY)
    other = hybrid_pipeline_body(normalization="l2", weights=(0.3, 0.7))

    assert ensure_search_pipeline(client, "hybrid", other) is True
    assert client.transport.pipelines["hybrid"] == other


def test_a_missing_plugin_is_named() -> None:
    client = _Client(["opensearch-knn"])

    with pytest.raises(StoreError, match="neural-search plugin"):
        ensure_search_pipeline(client, "hybrid", BODY, requires="neural-search")
    assert client.transport.pipelines == {}
