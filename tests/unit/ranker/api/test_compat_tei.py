"""text-embeddings-inference's and Infinity's shapes on fakes: /rerank, /embed, /, /info,
/health."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient
from test_compat_cohere import OverlapReranker

from ranker.api.app import create_app
from ranker.settings import Settings

QUERY = "red usb cable"
TEXTS = ["garden hose", "red usb cable", "usb cable"]


@pytest.fixture
def reranker() -> OverlapReranker:
    return OverlapReranker()


@pytest.fixture
def client(tmp_path: Path, reranker: OverlapReranker) -> Iterator[TestClient]:
    service = fake_service(reranker=reranker, embedder=FakeEmbedder("tiny-embedder"))
    with TestClient(create_app(Settings(home=tmp_path), service=service)) as test_client:
        yield test_client


def test_tei_body_gets_a_bare_list_without_text(client: TestClient) -> None:
    response = client.post("/rerank", json={"query": QUERY, "texts": TEXTS})
    with_text = client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "return_text": True})

    assert response.status_code == 200, response.text
    ranks = response.json()
    assert [r["index"] for r in ranks] == [1, 2, 0]
    assert all(set(r) == {"index", "score"} for r in ranks)
    assert [r["text"] for r in with_text.json()] == ["red usb cable", "usb cable", "garden hose"]
    assert response.headers["x-model-version"] == "overlap-reranker"


def test_infinity_body_gets_infinity_shape(client: TestClient) -> None:
    response = client.post(
        "/rerank",
        json={"model": "m", "query": QUERY, "documents": TEXTS, "top_n": 2},
    )
    raw = client.post(
        "/rerank",
        json={"query": QUERY, "documents": TEXTS, "raw_scores": True, "return_documents": True},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "rerank"
    assert body["model"] == "overlap-reranker"
    assert body["id"].startswith("infinity-")
    assert isinstance(body["created"], int)
    assert [r["index"] for r in body["results"]] == [1, 2]
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])
    assert 0 < body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]
    raw_results = raw.json()["results"]
    assert [r["relevance_score"] for r in raw_results] == [6.0, 4.0, 0.0]
    assert [r["document"] for r in raw_results] == ["red usb cable", "usb cable", "garden hose"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"query": QUERY}, "missing field 'texts'"),
        ({"query": QUERY, "documents": TEXTS, "return_text": True}, "unknown field 'return_text'"),
        ({"query": QUERY, "texts": TEXTS, "top_n": 1}, "unknown field 'top_n'"),
    ],
)
def test_rerank_errors_name_the_fields_of_the_shape(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/rerank", json=body)

    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert fragment in response.json()["error"], response.json()


def test_tei_rerank_refuses_an_over_long_text_unless_truncating(
    client: TestClient, reranker: OverlapReranker
) -> None:
    long_text = "cable " * 80
    body: dict[str, Any] = {"query": QUERY, "texts": [long_text]}

    refused = client.post("/rerank", json=body)
    null = client.post("/rerank", json={**body, "truncate": None})
    left = client.post(
        "/rerank",
        json={
            **body,
            "texts": ["usb " + long_text],
            "truncate": True,
            "truncation_direction": "Left",
        },
    )

    assert refused.status_code == null.status_code == 413
    assert refused.json()["error_type"] == "too_large"
    assert left.status_code == 200, left.text
    assert not reranker.seen[0].startswith("usb")  # the start was cut


def test_embed_and_root_answer_vectors_with_tei_defaults(client: TestClient) -> None:
    embed = client.post("/embed", json={"inputs": ["usb", "hose"]})
    root = client.post("/", json={"inputs": "usb", "normalize": True, "truncate": None})
    long = client.post("/embed", json={"inputs": "word " * 100})
    left = client.post(
        "/", json={"inputs": "word " * 100, "truncate": True, "truncation_direction": "left"}
    )

    assert embed.status_code == root.status_code == 200
    assert embed.json() == [[0.5] * 4, [0.5] * 4]
    assert root.json() == [[0.5] * 4]
    assert root.headers["x-embedder-version"] == "tiny-embedder"
    assert long.status_code == 413
    assert left.status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [101, 2054]}, "token-id arrays are not accepted"),
        ({"inputs": "usb", "prompt_name": "query"}, "the served model has no prompts"),
        ({"inputs": "usb", "dimensions": 2}, "answers 4-dimensional vectors only"),
        ({"inputs": "usb", "truncation_direction": "Middle"}, "truncation_direction"),
    ],
)
def test_embed_refuses_what_is_not_served(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/embed", json=body)

    assert response.status_code == 422
    assert fragment in response.json()["error"]


def test_info_describes_the_embedder_and_names_the_reranker(client: TestClient) -> None:
    info = client.get("/info").json()

    assert info["model_id"] == "tiny-embedder"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["model_dtype"] == "float32"
    assert info["max_input_length"] == 64
    assert info["max_client_batch_size"] == 256
    assert info["auto_truncate"] is False
    assert info["model_version"] == "tiny-embedder"
    assert info["reranker"]["model_version"] == "overlap-reranker"
    assert {"max_batch_tokens", "max_concurrent_requests", "version", "model_sha"} <= set(info)


def test_info_of_a_reranker_only_service(tmp_path: Path) -> None:
    service = fake_service(reranker=FakeReranker("tiny-reranker"))
    with TestClient(create_app(Settings(home=tmp_path), service=service)) as client:
        info = client.get("/info").json()

    assert info["model_type"] == {
        "reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    }


def test_health_is_200_empty_while_serving_else_503(tmp_path: Path, client: TestClient) -> None:
    serving = client.get("/health")
    with TestClient(create_app(Settings(home=tmp_path), service=fake_service())) as empty:
        down = empty.get("/health")

    assert serving.status_code == 200
    assert serving.content == b""
    assert down.status_code == 503
    body = down.json()
    assert (body["error"], body["error_type"]) == ("unhealthy", "unhealthy")
    assert body["request_id"] == down.headers["x-request-id"]
