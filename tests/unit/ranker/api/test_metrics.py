"""/metrics: prometheus_client histograms by route template, stages, the serving models."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ranker.api.app import create_app
from ranker.settings import ApiSettings, Settings

RERANK = {"query": "usb cable", "documents": ["usb c cable", "garden hose"]}


def _client(tmp_path: Path) -> TestClient:
    settings = Settings(home=tmp_path, api=ApiSettings(admin_keys=SecretStr("admin-key-1234")))
    service = fake_service(reranker=FakeReranker("rr"), embedder=FakeEmbedder("emb"))
    return TestClient(create_app(settings, service=service))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as test_client:
        yield test_client


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample named ``name`` in the exposition, parsed by prometheus_client itself."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    client.post("/v1/rerank", json=RERANK)
    client.post("/v1/rerank", json={"query": " ", "documents": ["a"]})
    client.get("/admin/jobs/job-1")  # no key: 401, labelled by the template

    response = client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    counts = {
        (labels["route"], labels["method"], labels["status"]): value
        for labels, value in _samples(response.text, "shoprank_request_duration_seconds_count")
    }
    assert counts[("/v1/rerank", "POST", "200")] == 1
    assert counts[("/v1/rerank", "POST", "400")] == 1
    assert counts[("/admin/jobs/{job_id}", "GET", "401")] == 1


def test_a_path_with_a_quote_does_not_break_the_exposition(client: TestClient) -> None:
    client.get('/search"} 1%0Ashoprank_fake 2')
    client.request("BREW", "/v1/rerank")

    text = client.get("/metrics").text

    labels = [labels for labels, _ in _samples(text, "shoprank_request_duration_seconds_count")]
    assert {"route": "unmatched", "method": "GET", "status": "404"} in labels
    assert {"route": "/v1/rerank", "method": "other", "status": "405"} in labels
    assert "shoprank_fake" not in text


def test_random_paths_do_not_grow_the_exposition(client: TestClient) -> None:
    client.get("/no/such/path")
    client.get("/metrics")  # its own series exists from here on
    before = len(client.get("/metrics").text)
    draw = random.Random(3)
    for _ in range(300):
        client.get("/" + "".join(draw.choices(string.ascii_letters, k=24)))

    after = client.get("/metrics").text

    assert len(after) < before + 200  # the same series, larger counts
    count = _samples(after, "shoprank_request_duration_seconds_count")
    unmatched = [value for labels, value in count if labels["route"] == "unmatched"]
    assert unmatched == [301]


def test_stages_and_serving_models_are_exposed(client: TestClient) -> None:
    client.post("/v1/rerank", json=RERANK)

    text = client.get("/metrics").text

    stages = {
        labels["stage"] for labels, _ in _samples(text, "shoprank_stage_duration_seconds_count")
    }
    assert {"validate", "rerank"} <= stages
    models = {labels["role"]: labels for labels, _ in _samples(text, "shoprank_model_info")}
    assert models["reranker"] == {
        "role": "reranker",
        "version": "rr",
        "backend": "fake",
        "device": "cpu",
    }
    assert models["embedder"]["version"] == "emb"
    assert _samples(text, "shoprank_index_info") == [({"backend": "embedded"}, 1.0)]


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    with _client(tmp_path / "a") as first, _client(tmp_path / "b") as second:
        first.post("/v1/rerank", json=RERANK)

        text = second.get("/metrics").text

    routes = {
        labels["route"] for labels, _ in _samples(text, "shoprank_request_duration_seconds_count")
    }
    assert "/v1/rerank" not in routes
