"""The error table: old rows unchanged, new rows, shoprank errors mapped, JSON 500s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from api_fakes import FakeReranker, fake_model_dir, fake_service
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ranker.api import admin
from ranker.api.app import create_app
from ranker.api.errors import ERROR_TABLE, ApiError, api_error_for
from ranker.errors import ShoprankError
from ranker.promotion import GateDecision, PromotionRefusedError
from ranker.registry import IntegrityError, Registry, RegistryError, VersionNotFoundError
from ranker.settings import ApiSettings, Settings

KEY = "an-admin-key-for-tests"
AUTH = {"Authorization": f"Bearer {KEY}"}

BEFORE_THIS_CHANGE = {
    (400, "empty"),
    (400, "malformed"),
    (413, "too_large"),
    (422, "validation"),
    (429, "overloaded"),
    (503, "unhealthy"),
    (503, "index_unavailable"),
}


def test_the_rows_the_api_had_are_unchanged_and_the_new_ones_are_there() -> None:
    rows = {(row.status_code, row.error_type) for row in ERROR_TABLE}

    assert rows >= BEFORE_THIS_CHANGE
    assert rows - BEFORE_THIS_CHANGE >= {
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (409, "promotion_refused"),
        (422, "integrity"),
        (422, "bad_request"),
        (503, "broker_unavailable"),
    }
    assert len({row.error_type for row in ERROR_TABLE}) == len(ERROR_TABLE)
    assert all(row.meaning for row in ERROR_TABLE)


def test_api_errors_are_shoprank_errors() -> None:
    assert issubclass(ApiError, ShoprankError)


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (VersionNotFoundError("no reranker version 'v9'"), 404, "not_found"),
        (IntegrityError("reranker/v3: file model.onnx does not match"), 422, "integrity"),
        (RegistryError("unknown role 'ranker'"), 422, "bad_request"),
        (ShoprankError("something else"), 500, "internal"),
    ],
)
def test_shoprank_errors_map_to_one_row(error: ShoprankError, status: int, error_type: str) -> None:
    mapped = api_error_for(error)

    assert (mapped.status_code, mapped.error_type) == (status, error_type)
    assert mapped.message == error.message


def test_a_refused_promotion_is_409_with_its_reasons() -> None:
    decision = GateDecision("reranker/v2", "reranker/v1", False, ("NDCG@10 0.3 < 0.5",))

    mapped = api_error_for(PromotionRefusedError("reranker/v2 not promoted", decision))

    assert mapped.status_code == 409
    assert mapped.body()["reasons"] == ["NDCG@10 0.3 < 0.5"]
    assert mapped.body()["gate"]["passed"] is False


def test_workers_errors_map_to_503_and_422() -> None:
    errors = pytest.importorskip("workers.errors")

    assert api_error_for(errors.BrokerUnavailableError("redis down")).status_code == 503
    assert api_error_for(errors.BrokerUnavailableError("x")).error_type == "broker_unavailable"
    assert api_error_for(errors.UnknownJobKindError("no kind 'x'")).error_type == "bad_request"


# ----------------------------------------------------------------------------- over HTTP


@pytest.fixture
def admin_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        home=tmp_path,
        registry_dir=tmp_path / "registry",
        api=ApiSettings(admin_keys=SecretStr(KEY)),
    )
    registry = Registry(settings.registry_path)
    for marker in ("r1", "r2"):
        registry.register("reranker", fake_model_dir(tmp_path / marker, marker=marker))
    registry.promote("reranker", "v1")
    app = create_app(settings, service=fake_service(reranker=FakeReranker("r")))
    with TestClient(app) as client:
        yield client


def test_promoting_an_unknown_version_is_404(admin_client: TestClient) -> None:
    response = admin_client.post(
        "/admin/promote", json={"role": "reranker", "version": "v9"}, headers=AUTH
    )

    assert response.status_code == 404
    assert response.json()["error_type"] == "not_found"


def test_a_candidate_without_metrics_is_refused_with_reasons(admin_client: TestClient) -> None:
    response = admin_client.post(
        "/admin/promote", json={"role": "reranker", "version": "v2"}, headers=AUTH
    )
    models = admin_client.get("/admin/models", headers=AUTH).json()

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error_type"] == "promotion_refused"
    assert any("NDCG@10" in reason for reason in body["reasons"])
    assert models["roles"]["reranker"]["production"] == "v1"
    gate = models["roles"]["reranker"]["versions"][1]["gate"]
    assert gate["passed"] is False


def test_forcing_past_the_gate_promotes_and_rollback_restores(admin_client: TestClient) -> None:
    forced = admin_client.post(
        "/admin/promote", json={"role": "reranker", "version": "v2", "force": True}, headers=AUTH
    )
    rolled = admin_client.post("/admin/rollback", json={"role": "reranker"}, headers=AUTH)
    nothing_left = admin_client.post(
        "/admin/rollback", json={"role": "reranker", "to": "v7"}, headers=AUTH
    )

    assert forced.status_code == 200, forced.text
    assert forced.json()["production"] == "v2"
    assert forced.json()["forced"] is True
    assert rolled.status_code == 200, rolled.text
    assert rolled.json() == {"role": "reranker", "production": "v1", "previous": "v2"}
    assert nothing_left.status_code == 404


def test_an_unknown_role_is_422(admin_client: TestClient) -> None:
    response = admin_client.post("/admin/rollback", json={"role": "ranker"}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"


def test_a_broker_that_is_down_is_503(
    admin_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = pytest.importorskip("workers.errors")

    def submit_job(settings: Settings, kind: str, params: Any) -> str:
        raise errors.BrokerUnavailableError("the broker at redis://127.0.0.1:1/0 does not answer")

    monkeypatch.setattr(admin, "_workers", lambda: SimpleNamespace(submit_job=submit_job))

    response = admin_client.post("/admin/jobs", json={"kind": "retrain"}, headers=AUTH)

    assert response.status_code == 503
    assert response.json()["error_type"] == "broker_unavailable"


def test_a_submitted_job_answers_202_with_its_id(
    admin_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted: list[tuple[str, Any]] = []

    def submit_job(settings: Settings, kind: str, params: Any) -> str:
        submitted.append((kind, params))
        return "job-1"

    def job_status(settings: Settings, job_id: str) -> dict[str, Any]:
        return {"id": job_id, "kind": "retrain", "state": "STARTED", "progress": {"step": 1}}

    fake = SimpleNamespace(submit_job=submit_job, job_status=job_status)
    monkeypatch.setattr(admin, "_workers", lambda: fake)

    response = admin_client.post(
        "/admin/jobs", json={"kind": "retrain", "params": {"judgments": "j.csv"}}, headers=AUTH
    )
    status = admin_client.get("/admin/jobs/job-1", headers=AUTH)

    assert response.status_code == 202
    assert response.json() == {"id": "job-1", "kind": "retrain", "status_url": "/admin/jobs/job-1"}
    assert submitted == [("retrain", {"judgments": "j.csv"})]
    assert status.json()["state"] == "STARTED"
    assert status.json()["progress"] == {"step": 1}


def test_an_unexpected_error_is_a_json_500_with_a_request_id(tmp_path: Path) -> None:
    class Broken(FakeReranker):
        def prepare(self, query: str, documents: Any, **_: Any) -> Any:
            raise RuntimeError("boom at https://user:hunter22@example.com")

    app = create_app(Settings(home=tmp_path), service=fake_service(reranker=Broken("r")))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/rerank", json={"query": "q", "documents": ["d"]})

    assert response.status_code == 500
    body = response.json()
    assert body["error_type"] == "internal"
    assert response.headers["x-request-id"] in body["error"]
    assert "hunter22" not in response.text


def test_the_new_rows_are_there() -> None:
    rows = {(row.status_code, row.error_type) for row in ERROR_TABLE}

    assert rows >= {(405, "method_not_allowed"), (408, "timeout"), (424, "backend")}


def test_backend_errors_are_shoprank_errors_and_answer_424() -> None:
    from ranker.backends.base import BackendError, InferenceError

    assert issubclass(BackendError, ShoprankError)
    assert issubclass(BackendError, RuntimeError)
    assert api_error_for(InferenceError("onnx failed")).status_code == 424


def test_run_batch_raises_a_runtime_failure_as_an_inference_error() -> None:
    from ranker.backends.base import InferenceError, dummy_batch, run_batch

    class Failing:
        name, device = "onnx", "cpu"

        def infer(self, batch: Any) -> Any:
            raise ValueError("bad shape")

    with pytest.raises(InferenceError, match="the onnx backend on cpu failed: ValueError") as info:
        run_batch(Failing(), dummy_batch(1, 2))  # type: ignore[arg-type]

    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("path", ["/search", "/v1/rerank", "/rerank", "/embed"])
def test_openapi_documents_every_error_status_with_the_error_schema(
    tmp_path: Path, path: str
) -> None:
    app = create_app(Settings(home=tmp_path), service=fake_service())
    with TestClient(app) as client:
        spec = client.get("/openapi.json").json()

    responses = spec["paths"][path]["post"]["responses"]
    for status in ("400", "401", "403", "408", "413", "422", "424", "429", "500", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
    assert "`backend`" in responses["424"]["description"]
    assert "`index_unavailable`" in responses["503"]["description"]
    error = spec["components"]["schemas"]["ErrorResponse"]
    assert set(error["properties"]) == {"error", "error_type", "request_id"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_openapi_documents_the_admin_errors(admin_client: TestClient) -> None:
    spec = admin_client.get("/openapi.json").json()

    responses = spec["paths"]["/admin/promote"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422", "503"} <= set(responses)
    assert "`promotion_refused`" in responses["409"]["description"]
