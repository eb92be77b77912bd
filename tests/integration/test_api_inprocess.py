"""The app in-process (FastAPI TestClient) with the real loader: fast checks and 503 paths."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.catalog import Product
from ranker.api.app import create_app
from ranker.api.service_loading import load_service
from ranker.settings import RerankSettings, Settings

QUERY = "adidas gym bag for women"


@pytest.fixture(scope="module")
def client(built_index: dict[str, Any], integration_settings: Settings) -> Iterator[TestClient]:
    """The app over the shared index; entering the client runs the loader (lifespan)."""
    with TestClient(create_app(integration_settings, loader=load_service)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def client_without_index(
    integration_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The app with models but an index directory that does not exist."""
    missing = tmp_path_factory.mktemp("no-index") / "index"
    settings = integration_settings.model_copy(update={"index_dir": missing})
    with TestClient(create_app(settings, loader=load_service)) as test_client:
        yield test_client


def test_healthz_is_ok_after_loading(client: TestClient, catalog_subset: list[Product]) -> None:
    health = client.get("/healthz").json()

    assert health["status"] == "ok"
    assert health["products"] == len(catalog_subset)


def test_search_answers_k_results(client: TestClient) -> None:
    response = client.post("/search", json={"query": QUERY, "k": 4})

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 4
    assert body["reranked"] > 0
    assert body["timings_ms"].keys() >= {"embed_query", "dense", "lexical", "fusion", "rerank"}


def test_empty_query_is_400(client: TestClient) -> None:
    response = client.post("/search", json={"query": "  "})

    assert response.status_code == 400
    body = response.json()
    assert body == {
        "error": "query is empty",
        "error_type": "empty",
        "request_id": response.headers["x-request-id"],
    }


def test_unknown_field_is_422(client: TestClient) -> None:
    response = client.post("/v1/rerank", json={"query": "bag", "documents": ["a"], "topn": 1})

    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert "unknown field 'topn'" in response.json()["error"]


def test_missing_index_degrades_only_search(client_without_index: TestClient) -> None:
    health_response = client_without_index.get("/healthz")
    health = health_response.json()
    search = client_without_index.post("/search", json={"query": QUERY})
    rerank = client_without_index.post(
        "/v1/rerank", json={"query": QUERY, "documents": ["adidas bag", "binder"]}
    )
    embed = client_without_index.post("/embed", json={"inputs": ["adidas bag"]})

    assert health_response.status_code == 503
    assert health["status"] == "degraded"
    assert health["products"] is None
    assert "index:" in health["detail"]
    assert search.status_code == 503
    assert search.json()["error_type"] == "unhealthy"
    assert "no search index is loaded" in search.json()["error"]
    assert "shoprank index" in search.json()["error"]
    assert rerank.status_code == 200, rerank.text
    assert len(rerank.json()["results"]) == 2
    assert embed.status_code == 200, embed.text


def test_routes_answer_503_until_the_service_is_loaded(integration_settings: Settings) -> None:
    def never_called(_: Settings) -> Any:
        raise AssertionError("the loader runs only in the lifespan")

    # Without entering the client the lifespan does not run: the app is still "loading".
    client = TestClient(create_app(integration_settings, loader=never_called))

    health_response = client.get("/healthz")
    health = health_response.json()
    search = client.post("/search", json={"query": QUERY})

    assert health_response.status_code == 503
    assert health["status"] == "unavailable"
    assert health["detail"] == "loading"
    assert search.status_code == 503
    assert search.json()["error"] == "the service is still loading"
    assert search.json()["error_type"] == "unhealthy"


def test_answers_name_the_model_that_scored_them(
    client: TestClient, tiny_reranker_dir: Path
) -> None:
    rerank = client.post("/v1/rerank", json={"query": QUERY, "documents": ["adidas bag", "pen"]})
    search = client.post("/search", json={"query": QUERY, "k": 3})
    health = client.get("/healthz").json()

    # Models named outright in the settings are outside the registry: named by their id.
    assert rerank.headers["x-model-version"] == tiny_reranker_dir.name
    assert rerank.json()["meta"]["model_version"] == tiny_reranker_dir.name
    assert search.headers["x-model-version"] == tiny_reranker_dir.name
    assert search.json()["model_version"] == tiny_reranker_dir.name
    assert search.headers["x-embedder-version"] == search.json()["embedder_version"]
    assert health["versions"]["reranker"] == tiny_reranker_dir.name


def test_a_truncated_onnx_reranker_does_not_crash_start_up(
    built_index: dict[str, Any],
    integration_settings: Settings,
    tiny_reranker_dir: Path,
    tmp_path: Path,
) -> None:
    pytest.importorskip("onnxruntime")
    broken = tmp_path / "truncated-onnx"
    shutil.copytree(tiny_reranker_dir, broken)
    (broken / "model.onnx").write_bytes(b"\x08\x07\x12\x04onnx\x1a")  # a protobuf cut short
    settings = integration_settings.model_copy(
        update={"rerank": RerankSettings(model=str(broken), backend="onnx")}
    )

    with TestClient(create_app(settings, loader=load_service)) as client:
        health_response = client.get("/healthz")
        rerank = client.post("/v1/rerank", json={"query": QUERY, "documents": ["adidas bag"]})
        embed = client.post("/embed", json={"inputs": ["adidas bag"]})

    health = health_response.json()
    assert health_response.status_code == 503
    assert health["status"] == "degraded"
    assert "file model.onnx cannot be loaded" in health["detail"], health["detail"]
    assert rerank.status_code == 503
    assert "file model.onnx cannot be loaded" in rerank.json()["error"]
    assert embed.status_code == 200
