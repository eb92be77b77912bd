"""Cohere's shapes on fakes: /v1/rerank, /v2/rerank, /v1/embed, /v2/embed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.settings import Settings


class OverlapReranker(FakeReranker):
    """Scores a document by how many of the query's words it has (a logit of 2 per word)."""

    def __init__(self) -> None:
        super().__init__("overlap-reranker")
        self.seen: list[str] = []

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        self.seen = list(documents)
        words = set(query.split())
        return np.asarray([2.0 * len(words & set(d.split())) for d in documents], np.float32)


@pytest.fixture
def reranker() -> OverlapReranker:
    return OverlapReranker()


@pytest.fixture
def client(tmp_path: Path, reranker: OverlapReranker) -> Iterator[TestClient]:
    service = fake_service(reranker=reranker, embedder=FakeEmbedder("tiny-embedder"))
    with TestClient(create_app(Settings(home=tmp_path), service=service)) as test_client:
        yield test_client


QUERY = "red usb cable"
DOCUMENTS: list[Any] = [
    "garden hose",
    {"text": "red usb cable", "id": "p2", "price": 9.5},
    "usb cable",
]


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_rerank_orders_best_first_and_leaves_document_out(client: TestClient, path: str) -> None:
    response = client.post(path, json={"query": QUERY, "documents": DOCUMENTS, "model": "any"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["index"] for r in body["results"]] == [1, 2, 0]
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])
    assert response.headers["x-model-version"] == "overlap-reranker"
    meta = body["meta"]
    assert meta["api_version"] == {"version": path[2]}
    assert meta["billed_units"] == {"search_units": 1}
    assert meta["model_version"] == "overlap-reranker"


def test_return_documents_gives_each_document_back_with_a_text(client: TestClient) -> None:
    response = client.post(
        "/v2/rerank",
        json={"query": QUERY, "documents": DOCUMENTS, "return_documents": True, "top_n": 2},
    )

    results = response.json()["results"]
    assert [r["document"] for r in results] == [
        {"text": "red usb cable", "id": "p2", "price": 9.5},
        {"text": "usb cable"},
    ]


def test_rank_fields_rank_on_those_fields_as_lines(
    client: TestClient, reranker: OverlapReranker
) -> None:
    documents = [{"title": "usb cable", "brand": "red"}, {"title": "hose", "color": "green"}]

    response = client.post(
        "/v1/rerank",
        json={
            "query": QUERY,
            "documents": documents,
            "rank_fields": ["title", "brand"],
            "return_documents": True,
        },
    )

    assert response.status_code == 200, response.text
    assert reranker.seen == ["title: usb cable\nbrand: red", "title: hose"]
    first = response.json()["results"][0]
    assert first["document"] == {**documents[0], "text": "title: usb cable\nbrand: red"}


def test_an_object_without_text_or_rank_fields_is_422(client: TestClient) -> None:
    response = client.post("/v1/rerank", json={"query": QUERY, "documents": [{"title": "x"}]})

    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"
    assert "documents[0] has no 'text' field" in response.json()["error"]


def test_max_tokens_per_doc_cuts_each_document(
    client: TestClient, reranker: OverlapReranker
) -> None:
    response = client.post(
        "/v2/rerank",
        json={"query": QUERY, "documents": ["one two three four"], "max_tokens_per_doc": 2},
    )

    assert response.status_code == 200, response.text
    assert reranker.seen == ["one two"]


def test_search_units_count_hundreds_of_documents(client: TestClient) -> None:
    response = client.post("/v2/rerank", json={"query": QUERY, "documents": ["usb"] * 101})

    assert response.json()["meta"]["billed_units"] == {"search_units": 2}


def test_the_array_format_stays_on_v1(client: TestClient) -> None:
    array = client.post("/v1/rerank?format=array", json={"query": QUERY, "documents": DOCUMENTS})

    assert [r["index"] for r in array.json()] == [1, 2, 0]
    assert all(set(r) == {"index", "relevance_score"} for r in array.json())


def test_v1_embed_answers_floats_and_by_type(client: TestClient) -> None:
    floats = client.post("/v1/embed", json={"texts": ["usb", "hose"], "model": "m"})
    by_type = client.post(
        "/v1/embed",
        json={"texts": ["usb"], "input_type": "search_query", "embedding_types": ["float"]},
    )

    assert floats.status_code == by_type.status_code == 200
    body = floats.json()
    assert body["response_type"] == "embeddings_floats"
    assert body["embeddings"] == [[0.5] * 4, [0.5] * 4]
    assert body["texts"] == ["usb", "hose"]
    assert body["meta"]["api_version"] == {"version": "1"}
    assert body["meta"]["billed_units"] == {"input_tokens": 6}
    assert body["meta"]["model_version"] == "tiny-embedder"
    assert floats.headers["x-embedder-version"] == "tiny-embedder"
    assert by_type.json()["response_type"] == "embeddings_by_type"
    assert by_type.json()["embeddings"] == {"float": [[0.5] * 4]}


def test_v2_embed_answers_by_type(client: TestClient) -> None:
    response = client.post(
        "/v2/embed",
        json={"texts": ["usb"], "model": "m", "input_type": "search_document"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["embeddings"] == {"float": [[0.5] * 4]}
    assert body["meta"]["api_version"] == {"version": "2"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"texts": ["usb"], "embedding_types": ["int8"]}, "only 'float' embeddings"),
        ({"texts": ["usb"], "output_dimension": 1024}, "answers 4-dimensional vectors only"),
        ({"images": ["data:image/png;base64,AAAA"]}, "only texts are embedded"),
        ({"model": "m"}, "missing field 'texts'"),
    ],
)
def test_embed_refuses_what_is_not_served(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/v2/embed", json=body)

    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


def test_truncate_none_refuses_an_over_long_text(client: TestClient) -> None:
    long_text = "word " * 100  # the fake tokenizer reads 64

    refused = client.post("/v2/embed", json={"texts": [long_text], "truncate": "NONE"})
    cut = client.post("/v2/embed", json={"texts": [long_text]})

    assert refused.status_code == 413
    assert refused.json()["error_type"] == "too_large"
    assert cut.status_code == 200
    assert cut.json()["meta"]["billed_units"] == {"input_tokens": 64}
