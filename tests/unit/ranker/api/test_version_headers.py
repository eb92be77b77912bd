"""Every scored answer names the version that scored it: headers, meta, /healthz."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.registry import Registry
from ranker.serving_models import ModelSource
from ranker.settings import Settings

RERANK = {"query": "usb cable", "documents": ["usb c cable", "garden hose"]}


@pytest.fixture
def client(registry: Registry, registry_settings: Settings) -> Iterator[TestClient]:
    reranker_version = registry.get("reranker", "v2")
    embedder_version = registry.get("embedder", "v1")
    service = fake_service(
        reranker=FakeReranker("tiny-reranker", 2.0),
        embedder=FakeEmbedder("tiny-embedder"),
        reranker_source=ModelSource(reranker_version.path, reranker_version),
        embedder_source=ModelSource(embedder_version.path, embedder_version),
    )
    with TestClient(create_app(registry_settings, service=service)) as test_client:
        yield test_client


def test_cohere_rerank_names_the_version_in_the_header_and_meta(client: TestClient) -> None:
    response = client.post("/v1/rerank", json=RERANK)

    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == "reranker/v2"
    assert response.json()["meta"]["model_version"] == "reranker/v2"
    assert response.json()["meta"]["model"] == "tiny-reranker"


def test_the_array_format_and_tei_rerank_name_it_in_the_header(client: TestClient) -> None:
    array = client.post("/v1/rerank?format=array", json=RERANK)
    tei = client.post("/rerank", json={"query": "usb", "texts": ["usb c cable"]})

    assert array.headers["x-model-version"] == "reranker/v2"
    assert isinstance(array.json(), list)
    assert tei.headers["x-model-version"] == "reranker/v2"


def test_embed_names_the_embedder_version(client: TestClient) -> None:
    response = client.post("/embed", json={"inputs": ["usb c cable"]})

    assert response.status_code == 200, response.text
    assert response.headers["x-embedder-version"] == "embedder/v1"
    assert "x-model-version" not in response.headers


def test_healthz_lists_the_serving_versions(client: TestClient) -> None:
    health = client.get("/healthz").json()

    assert health["versions"] == {"embedder": "embedder/v1", "reranker": "reranker/v2"}


def test_a_model_outside_the_registry_is_named_by_its_id(tmp_path: Path) -> None:
    service = fake_service(reranker=FakeReranker("tiny-reranker"))
    with TestClient(create_app(Settings(home=tmp_path), service=service)) as client:
        response = client.post("/v1/rerank", json=RERANK)

    assert response.headers["x-model-version"] == "tiny-reranker"
    assert response.json()["meta"]["model_version"] == "tiny-reranker"
