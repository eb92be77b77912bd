"""``rerank_depth: "auto"`` on the app in-process, with the real loader and tiny models: the
cost model is measured at warm-up, shown in /healthz and /metrics, and a budget picks the
depth the answer names."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.api.rerank_budget import RerankCostModel
from ranker.api.service import Service
from ranker.api.service_loading import load_service
from ranker.settings import Settings

QUERY = "adidas gym bag for women"
MAX_AUTO_DEPTH = 40


@pytest.fixture(scope="module")
def client(built_index: dict[str, Any], integration_settings: Settings) -> Iterator[TestClient]:
    api = integration_settings.api.model_copy(update={"max_auto_rerank_depth": MAX_AUTO_DEPTH})
    settings = integration_settings.model_copy(update={"api": api})
    with TestClient(create_app(settings, loader=load_service)) as test_client:
        yield test_client


def service_of(client: TestClient) -> Service:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    return service


def test_the_cost_model_is_measured_at_warm_up_and_shown(client: TestClient) -> None:
    cost = service_of(client).snapshot.reranker_cost
    assert cost is not None
    assert cost.samples >= 6
    assert cost.predict_ms(50, 96) > 0

    health = client.get("/healthz").json()
    metrics = client.get("/metrics").text

    assert health["rerank_cost"]["samples"] == cost.samples
    assert health["rerank_cost"]["per_token_ms"] == pytest.approx(cost.per_token_ms, abs=1e-6)
    assert 'shoprank_reranker_cost_ms{term="per_pair"}' in metrics


def test_auto_with_a_generous_budget_reranks_to_the_maximum(client: TestClient) -> None:
    response = client.post(
        "/search",
        json={"query": QUERY, "k": 5, "rerank_depth": "auto", "latency_budget_ms": 60_000},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rerank_depth"] == MAX_AUTO_DEPTH
    assert body["reranked"] == MAX_AUTO_DEPTH
    assert response.headers["x-rerank-depth"] == str(MAX_AUTO_DEPTH)
    assert body["predicted_rerank_ms"] > 0


def test_auto_with_a_budget_too_small_answers_in_retrieval_order(client: TestClient) -> None:
    response = client.post(
        "/search",
        json={"query": QUERY, "k": 5, "rerank_depth": "auto", "latency_budget_ms": 0.001},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rerank_depth"] == 0
    assert body["reranked"] == 0
    assert response.headers["x-rerank-depth"] == "0"
    assert body["model_version"] is None
    assert all(hit["rerank_score"] is None for hit in body["results"])
    assert "rerank" not in body["timings_ms"]


def test_auto_picks_the_depth_a_known_cost_model_fits(client: TestClient) -> None:
    service = service_of(client)
    measured = service.snapshot
    # One second a pair: a budget of 25.5 s fits 25 pairs whatever the request spent (< 0.5 s).
    known = RerankCostModel(fixed_ms=0.0, per_pair_ms=1000.0, per_token_ms=0.0, samples=1)
    service.swap(lambda current: dataclasses.replace(current, reranker_cost=known))
    try:
        response = client.post(
            "/search",
            json={"query": QUERY, "k": 5, "rerank_depth": "auto", "latency_budget_ms": 25_500},
        )
    finally:
        service.swap(lambda current: measured)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rerank_depth"], body["reranked"]) == (25, 25)
    assert body["predicted_rerank_ms"] == pytest.approx(25_000.0)


def test_auto_without_a_cost_model_reranks_the_configured_depth(client: TestClient) -> None:
    service = service_of(client)
    measured = service.snapshot
    service.swap(lambda current: dataclasses.replace(current, reranker_cost=None))
    try:
        response = client.post("/search", json={"query": QUERY, "k": 5, "rerank_depth": "auto"})
    finally:
        service.swap(lambda current: measured)

    assert response.status_code == 200, response.text
    body = response.json()
    default = measured.pipeline.rerank_settings.depth  # type: ignore[union-attr]
    assert body["rerank_depth"] == min(default, MAX_AUTO_DEPTH)
    assert body["predicted_rerank_ms"] is None


def test_integer_depths_answer_as_before_and_name_their_depth(client: TestClient) -> None:
    response = client.post("/search", json={"query": QUERY, "k": 5, "rerank_depth": 7})
    default = client.post("/search", json={"query": QUERY, "k": 5})
    off = client.post("/search", json={"query": QUERY, "k": 5, "rerank": False})

    assert (response.json()["rerank_depth"], response.json()["reranked"]) == (7, 7)
    assert response.json()["predicted_rerank_ms"] is None
    assert default.json()["rerank_depth"] == service_of(client).pipeline.rerank_settings.depth  # type: ignore[union-attr]
    assert off.json()["rerank_depth"] is None
    assert "x-rerank-depth" not in off.headers
