"""OpenAI's shapes on fakes: /v1/embeddings and /v1/models."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.registry import Registry
from ranker.serving_models import ModelSource
from ranker.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    service = fake_service(reranker=FakeReranker("tiny-reranker"), embedder=FakeEmbedder("emb"))
    with TestClient(create_app(Settings(home=tmp_path), service=service)) as test_client:
        yield test_client


def test_float_embeddings_with_usage(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"input": ["usb c", "hose"], "model": "x"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == "emb"
    assert body["data"] == [
        {"object": "embedding", "embedding": [0.5] * 4, "index": 0},
        {"object": "embedding", "embedding": [0.5] * 4, "index": 1},
    ]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert response.headers["x-embedder-version"] == "emb"


def test_base64_is_little_endian_float32(client: TestClient) -> None:
    response = client.post(
        "/v1/embeddings", json={"input": "usb", "model": "x", "encoding_format": "base64"}
    )

    encoded = response.json()["data"][0]["embedding"]
    vector = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    np.testing.assert_array_equal(vector, [0.5] * 4)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"input": [101, 2054]}, 422, "token-id arrays are not accepted"),
        ({"input": [[101, 2054]]}, 422, "token-id arrays are not accepted"),
        ({"input": "usb", "dimensions": 2}, 422, "answers 4-dimensional vectors only"),
        ({"input": "usb", "encoding_format": "int8"}, 422, "encoding_format"),
        ({"input": []}, 400, "input is empty"),
        ({"input": "word " * 100, "truncate": False}, 413, "the model reads at most 64"),
    ],
)
def test_refusals(client: TestClient, body: dict[str, Any], status: int, fragment: str) -> None:
    response = client.post("/v1/embeddings", json={"model": "x", **body})

    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


def test_the_models_own_dimension_is_accepted(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"input": "usb", "model": "x", "dimensions": 4})

    assert response.status_code == 200, response.text


def test_models_lists_each_role_by_version(registry: Registry, registry_settings: Settings) -> None:
    embedder_version = registry.get("embedder", "v1")
    service = fake_service(
        reranker=FakeReranker("tiny-reranker"),
        embedder=FakeEmbedder("emb"),
        embedder_source=ModelSource(embedder_version.path, embedder_version),
    )
    with TestClient(create_app(registry_settings, service=service)) as client:
        body = client.get("/v1/models").json()

    assert body["object"] == "list"
    models = {model["id"]: model for model in body["data"]}
    assert set(models) == {"embedder/v1", "tiny-reranker"}
    assert models["embedder/v1"]["role"] == "embedder"
    assert models["embedder/v1"]["created"] > 0
    assert models["tiny-reranker"]["created"] == 0
    assert all(model["object"] == "model" for model in body["data"])
