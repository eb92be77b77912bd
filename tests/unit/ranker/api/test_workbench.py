"""The workbench page's files and its read-only routes, on a service of fakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_fakes import FakeLoader, FakeReranker, fake_service
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.api.model_loading import load_models
from ranker.api.workbench import judgments_path
from ranker.registry import Registry
from ranker.settings import ApiSettings, Settings

JUDGMENTS = (
    "query_id,query,product_id,esci_label\n"
    "q1,kindle fire,p1,E\n"
    "q1,kindle fire,p2,S\n"
    "q1,kindle fire,p3,I\n"
)


def _client(settings: Settings, *, loader: FakeLoader | None = None) -> TestClient:
    if loader is None:
        service = fake_service(reranker=FakeReranker("rr"))
    else:
        models = load_models(settings, loader)
        service = fake_service(
            reranker=models.reranker,
            embedder=models.embedder,
            reranker_source=models.reranker_source,
            embedder_source=models.embedder_source,
        )
    return TestClient(create_app(settings, service=service, reload=False, model_loader=loader))


@pytest.fixture
def judged_settings(tmp_path: Path) -> Settings:
    path = tmp_path / "judgments.csv"
    path.write_text(JUDGMENTS, encoding="utf-8")
    return Settings(home=tmp_path / "home", api=ApiSettings(judgments=path))


def test_the_page_and_its_files_are_served(tmp_path: Path) -> None:
    with _client(Settings(home=tmp_path)) as client:
        page = client.get("/ui", params={"q": "kindle"})
        script = client.get("/ui/static/workbench.js")
        style = client.get("/ui/static/workbench.css")
        other = client.get("/ui/static/secrets.txt")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/static/workbench.js">' in page.text
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert '"/search"' in script.text
    assert '"/judgments"' in script.text
    assert style.headers["content-type"].startswith("text/css")
    assert other.status_code == 404
    assert other.json()["error_type"] == "not_found"


def test_judgments_give_labels_and_ndcg_per_ranking(judged_settings: Settings) -> None:
    body = {"query": " Kindle  Fire", "rankings": {"good": ["p1", "p2"], "bad": ["p3", "p2"]}}
    with _client(judged_settings) as client:
        response = client.post("/judgments", json=body)

    assert response.status_code == 200, response.text
    found = response.json()
    assert found["judged"] is True
    assert found["query_id"] == "q1"
    assert found["labels"] == {"p1": "E", "p2": "S", "p3": "I"}
    assert found["gains"] == {"p1": 1.0, "p2": 0.1, "p3": 0.0}
    assert found["ndcg"]["good"] == pytest.approx(1.0)
    assert 0.0 < found["ndcg"]["bad"] < found["ndcg"]["good"]
    assert found["source"] == "judgments.csv"


def test_an_unjudged_query_says_so(judged_settings: Settings) -> None:
    with _client(judged_settings) as client:
        response = client.post("/judgments", json={"query": "garden hose", "rankings": {}})

    assert response.status_code == 200
    assert response.json() == {
        "query": "garden hose",
        "judged": False,
        "query_id": None,
        "labels": {},
        "gains": {},
        "ndcg": {},
        "source": "judgments.csv",
    }


def test_bad_rankings_are_4xx(judged_settings: Settings) -> None:
    with _client(judged_settings) as client:
        repeated = client.post(
            "/judgments", json={"query": "kindle fire", "rankings": {"x": ["p1", "p1"]}}
        )
        unknown_field = client.post("/judgments", json={"query": "kindle fire", "ranking": {}})
        empty = client.post("/judgments", json={"query": ""})

    assert repeated.status_code == 422
    assert "rankings.x" in repeated.json()["error"]
    assert unknown_field.status_code == 422
    assert empty.status_code == 422


def test_without_judgments_nothing_is_judged(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert judgments_path(settings) is None  # no index built from the sample catalog
    with _client(settings) as client:
        response = client.post("/judgments", json={"query": "kindle fire"})

    assert response.status_code == 200
    assert response.json()["judged"] is False
    assert response.json()["source"] is None


def test_the_page_is_open_but_its_data_routes_need_the_api_key(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, api=ApiSettings(api_keys="k-123"))
    with _client(settings) as client:
        page = client.get("/ui")
        script = client.get("/ui/static/workbench.js")
        refused = client.post("/judgments", json={"query": "kindle fire"})
        allowed = client.post(
            "/judgments",
            json={"query": "kindle fire"},
            headers={"authorization": "Bearer k-123"},
        )

    assert (page.status_code, script.status_code) == (200, 200)
    assert refused.status_code == 401
    assert allowed.status_code == 200


def test_rerankers_lists_versions_production_and_serving(
    registry: Registry, registry_settings: Settings
) -> None:
    registry.update("reranker", "v2", metrics={"ndcg@10": 0.41, "judgments_sha256": "ab"})
    with _client(registry_settings, loader=FakeLoader()) as client:
        response = client.get("/rerankers")

    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["production"] == "v1"
    assert listing["serving"] == "reranker/v1"
    assert [(v["version"], v["state"]) for v in listing["versions"]] == [
        ("v1", "production"),
        ("v2", "candidate"),
    ]
    assert listing["versions"][1]["ndcg_at_10"] == pytest.approx(0.41)
    assert set(listing["versions"][0]) == {"version", "ref", "state", "created_at", "ndcg_at_10"}
