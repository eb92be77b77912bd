"""``/search``'s ``rerank_depth`` and ``latency_budget_ms``: what is refused (422) and how
OpenAPI documents them; the choice itself is tested in ``tests/integration``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.settings import Settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    service = fake_service(reranker=FakeReranker("rr"), embedder=FakeEmbedder("emb"))
    with TestClient(create_app(Settings(home=tmp_path), service=service)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"rerank_depth": "deep"}, "rerank_depth"),
        ({"rerank_depth": "AUTO"}, "rerank_depth"),
        ({"rerank_depth": 0}, "rerank_depth"),
        ({"rerank_depth": -3}, "rerank_depth"),
        ({"rerank_depth": 1001}, "above the limit 1000"),
        ({"rerank_depth": "auto", "latency_budget_ms": 0}, "latency_budget_ms"),
        ({"rerank_depth": "auto", "latency_budget_ms": -5}, "latency_budget_ms"),
        ({"rerank_depth": "auto", "latency_budget_ms": 1e9}, "latency_budget_ms"),
        ({"rerank_depth": "auto", "latency_budget_ms": "fast"}, "latency_budget_ms"),
        ({"rerank_depth": 20, "latency_budget_ms": 50}, "applies only with rerank_depth 'auto'"),
        ({"latency_budget_ms": 50}, "applies only with rerank_depth 'auto'"),
    ],
)
def test_bad_depths_and_budgets_are_422(
    client: TestClient, fields: dict[str, Any], fragment: str
) -> None:
    response = client.post("/search", json={"query": "usb cable", **fields})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_type"] == "validation"
    assert fragment in body["error"]


def test_openapi_documents_auto_and_the_depth_served(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]

    request = schemas["SearchRequest"]["properties"]
    answer = schemas["SearchResponse"]["properties"]
    depth_kinds = request["rerank_depth"]["anyOf"]
    assert {"type": "integer", "minimum": 1} in depth_kinds
    assert {"type": "string", "const": "auto"} in depth_kinds or {
        "enum": ["auto"],
        "type": "string",
    } in depth_kinds
    assert "latency_budget_ms" in request
    assert "x-rerank-depth" in answer["rerank_depth"]["description"]
    assert "predicted_rerank_ms" in answer
