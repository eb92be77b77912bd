"""The admin API in-process, on a real registry and tiny models, with hot reload running.

Promotions go through the gate (the versions carry metrics that pass or fail it), and the
app's watcher swaps the served reranker within moments, without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from indexer.stores.opensearch.devnode import free_port
from ranker.api.app import create_app
from ranker.api.service_loading import load_service
from ranker.registry import Registry
from ranker.settings import ApiSettings, RerankSettings, Settings, WorkerSettings

KEY = "integration-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
JUDGMENTS = "0" * 64
BODY = {"query": "adidas gym bag for women", "documents": ["adidas duffel bag", "ring binder"]}
SWAP_TIMEOUT_S = 30.0


def _metrics(ndcg: float) -> dict[str, Any]:
    return {"ndcg@10": ndcg, "judgments_sha256": JUDGMENTS, "rerank50_p50_ms": 5.0}


@pytest.fixture(scope="module")
def registry(tiny_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """reranker v1 (production, NDCG 0.50), v2 (0.52: passes), v3 (0.30: refused)."""
    found = Registry(tmp_path_factory.mktemp("admin") / "registry")
    for ndcg in (0.50, 0.52, 0.30):
        found.register("reranker", tiny_reranker_dir, metrics=_metrics(ndcg), job="test")
    found.promote("reranker", "v1", actor="test")
    return found


@pytest.fixture(scope="module")
def client(
    built_index: dict[str, Any], integration_settings: Settings, registry: Registry
) -> Iterator[TestClient]:
    settings = integration_settings.model_copy(
        update={
            "registry_dir": registry.root,
            "rerank": RerankSettings(backend="torch"),
            "api": ApiSettings(admin_keys=SecretStr(f"other-key, {KEY}"), reload_interval_s=0.2),
            "workers": WorkerSettings(
                broker_url=SecretStr(f"redis://:pw-123@127.0.0.1:{free_port()}/0")
            ),
        }
    )
    with TestClient(create_app(settings, loader=load_service)) as test_client:
        yield test_client


def _serving(client: TestClient) -> str:
    response = client.post("/v1/rerank", json=BODY)
    assert response.status_code == 200, response.text
    return response.headers["x-model-version"]


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SWAP_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true after {SWAP_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def test_promote_needs_a_key(client: TestClient) -> None:
    body = {"role": "reranker", "version": "v2"}

    anonymous = client.post("/admin/promote", json=body)
    wrong = client.post("/admin/promote", json=body, headers={"Authorization": "Bearer nope"})

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 403
    assert _serving(client) == "reranker/v1"


def test_models_lists_versions_states_and_what_serves(client: TestClient) -> None:
    response = client.get("/admin/models", headers=AUTH)

    assert response.status_code == 200, response.text
    reranker = response.json()["roles"]["reranker"]
    assert reranker["production"] == "v1"
    assert reranker["serving"] == "reranker/v1"
    assert [v["state"] for v in reranker["versions"]] == ["production", "candidate", "candidate"]
    assert reranker["versions"][1]["metrics"]["ndcg@10"] == 0.52


def test_a_better_candidate_is_promoted_and_served_without_a_restart(client: TestClient) -> None:
    response = client.post(
        "/admin/promote", json={"role": "reranker", "version": "v2"}, headers=AUTH
    )

    assert response.status_code == 200, response.text
    assert response.json()["production"] == "v2"
    assert response.json()["gate"]["passed"] is True
    _wait(lambda: _serving(client) == "reranker/v2")


def test_a_worse_candidate_is_refused_with_reasons(client: TestClient, registry: Registry) -> None:
    response = client.post(
        "/admin/promote", json={"role": "reranker", "version": "v3"}, headers=AUTH
    )

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error_type"] == "promotion_refused"
    assert any("NDCG@10 0.3000 <" in reason for reason in body["reasons"]), body["reasons"]
    assert registry.production_version("reranker") == "v2"
    assert registry.get("reranker", "v3").manifest["gate"]["passed"] is False


def test_rollback_restores_the_previous_version(client: TestClient) -> None:
    response = client.post("/admin/rollback", json={"role": "reranker"}, headers=AUTH)

    assert response.status_code == 200, response.text
    assert response.json()["production"] == "v1"
    _wait(lambda: _serving(client) == "reranker/v1")
    history = client.get("/admin/models", headers=AUTH).json()
    assert history["roles"]["reranker"]["production"] == "v1"


def test_jobs_answer_503_when_the_broker_is_down(client: TestClient) -> None:
    pytest.importorskip("celery")
    pytest.importorskip("redis")

    submit = client.post("/admin/jobs", json={"kind": "retrain"}, headers=AUTH)
    status = client.get("/admin/jobs/some-id", headers=AUTH)

    for response in (submit, status):
        assert response.status_code == 503, response.text
        assert response.json()["error_type"] == "broker_unavailable"
        assert "pw-123" not in response.text


def test_an_unknown_job_kind_is_refused_before_the_broker(client: TestClient) -> None:
    pytest.importorskip("celery")

    response = client.post("/admin/jobs", json={"kind": "reboot"}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["error_type"] == "bad_request"
    assert "unknown job kind 'reboot'" in response.json()["error"]
