"""The edge: request ids, the closed error body everywhere, body limits, the gate, API keys."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ranker.api.app import create_app
from ranker.settings import ApiSettings, Settings

RERANK = {"query": "usb cable", "documents": ["usb c cable", "garden hose"]}
RERANK2 = {"query": "usb cable", "texts": ["usb c cable"]}
API_KEYS = "first-api-key-0123, second-api-key-4567"
ADMIN_KEY = "an-admin-key-for-tests"


def _app(tmp_path: Path, reranker: Any = None, **api: Any) -> Any:
    settings = Settings(home=tmp_path, api=ApiSettings(**api))
    service = fake_service(reranker=reranker or FakeReranker("r"), embedder=FakeEmbedder("e"))
    return create_app(settings, service=service)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(_app(tmp_path, max_body_bytes=2048)) as test_client:
        yield test_client


def _assert_error(response: Any, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error_type"] == error_type
    assert body["request_id"] == response.headers["x-request-id"]
    return body


# ----------------------------------------------------------------------------- request ids


def test_every_response_has_a_new_request_id(client: TestClient) -> None:
    first = client.post("/v1/rerank", json=RERANK)
    second = client.get("/healthz")

    assert first.status_code == 200
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2
    assert all(len(request_id) == 32 for request_id in ids)


def test_a_sane_client_request_id_is_echoed_in_headers_and_error_bodies(
    client: TestClient,
) -> None:
    ok = client.post("/v1/rerank", json=RERANK, headers={"x-request-id": "req-42.a_b:c"})
    error = client.post("/v1/rerank", json={"query": ""}, headers={"x-request-id": "req-43"})

    assert ok.headers["x-request-id"] == "req-42.a_b:c"
    assert _assert_error(error, 422, "validation")["request_id"] == "req-43"


@pytest.mark.parametrize("given", ["a" * 129, "has space", 'quote"d', "-leading-dash", ""])
def test_an_insane_client_request_id_is_replaced(client: TestClient, given: str) -> None:
    response = client.get("/healthz", headers={"x-request-id": given})

    assert response.headers["x-request-id"] != given
    assert len(response.headers["x-request-id"]) == 32


# ----------------------------------------------------------------------------- one error body


def test_an_unknown_route_is_404_with_the_error_body(client: TestClient) -> None:
    body = _assert_error(client.get("/no/such/route"), 404, "not_found")

    assert "/no/such/route" in body["error"]


def test_a_wrong_method_is_405_with_the_error_body_and_allow(client: TestClient) -> None:
    response = client.get("/v1/rerank")

    _assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_a_body_that_is_not_json_is_400_malformed(client: TestClient) -> None:
    response = client.post(
        "/v1/rerank", content=b'{"query": ', headers={"content-type": "application/json"}
    )

    _assert_error(response, 400, "malformed")


def test_an_unexpected_error_is_a_json_500_that_closes_the_connection(tmp_path: Path) -> None:
    class Broken(FakeReranker):
        def score(self, query: str, documents: Any) -> Any:
            raise RuntimeError("boom")

    app = _app(tmp_path, reranker=Broken("r"))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/rerank", json=RERANK, headers={"x-request-id": "req-500"})

    body = _assert_error(response, 500, "internal")
    assert body["request_id"] == "req-500"
    assert "req-500" in body["error"]
    assert "Traceback" not in response.text
    assert "boom" not in response.text
    assert response.headers["connection"] == "close"


def test_a_backend_failure_is_424(tmp_path: Path) -> None:
    from ranker.backends.base import InferenceError

    class Failing(FakeReranker):
        def score(self, query: str, documents: Any) -> Any:
            raise InferenceError("the torch backend on cuda:0 failed: out of memory")

    with TestClient(_app(tmp_path, reranker=Failing("r"))) as client:
        response = client.post("/rerank", json={"query": "q", "texts": ["a"]})

    body = _assert_error(response, 424, "backend")
    assert "out of memory" in body["error"]


# ----------------------------------------------------------------------------- body limits


def test_a_declared_content_length_over_the_limit_is_413_unread(client: TestClient) -> None:
    response = client.post(
        "/v1/rerank",
        content=b"x" * 4096,
        headers={"content-type": "application/json"},
    )

    body = _assert_error(response, 413, "too_large")
    assert "4096 bytes" in body["error"]
    assert response.headers["connection"] == "close"


def test_a_chunked_body_that_grows_past_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "q", "documents": ["'
        yield b"x" * 4096
        yield b'"]}'

    response = client.post(
        "/v1/rerank", content=chunks(), headers={"content-type": "application/json"}
    )

    _assert_error(response, 413, "too_large")


def test_a_body_under_the_limit_is_served(client: TestClient) -> None:
    assert client.post("/v1/rerank", json=RERANK).status_code == 200


def test_a_body_not_sent_in_time_is_408_and_never_reaches_the_routes(tmp_path: Path) -> None:
    app = _app(tmp_path, body_timeout_s=0.05)
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/rerank",
        "raw_path": b"/v1/rerank",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    parts = iter([{"type": "http.request", "body": b'{"query": ', "more_body": True}])

    async def receive() -> dict[str, Any]:
        part = next(parts, None)
        if part is None:
            await asyncio.sleep(60)  # the client stalls
        return part or {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))

    start = sent[0]
    headers = dict(start["headers"])
    assert start["status"] == 408
    assert headers[b"connection"] == b"close"
    assert b'"error_type":"timeout"' in sent[1]["body"]


# ----------------------------------------------------------------------------- the gate


def test_a_full_gate_sheds_with_429_but_health_and_metrics_answer(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(FakeReranker):
        def infer(self, inputs: Any) -> Any:  # on the model's thread, as a model runs
            entered.set()
            release.wait(10)
            return super().infer(inputs)

    with TestClient(_app(tmp_path, reranker=Slow("r"), max_concurrent_requests=1)) as client:
        first: list[Any] = []
        worker = threading.Thread(target=lambda: first.append(client.post("/rerank", json=RERANK2)))
        worker.start()
        try:
            assert entered.wait(10)
            shed = client.post("/rerank", json=RERANK2)
            health = client.get("/healthz")
            metrics = client.get("/metrics").text
        finally:
            release.set()
            worker.join(10)

    _assert_error(shed, 429, "overloaded")
    assert health.json()["status"] == "degraded"  # answered (no index here), not shed
    assert "shoprank_requests_in_flight 1.0" in metrics
    assert "shoprank_max_concurrent_requests 1.0" in metrics
    assert first[0].status_code == 200


def test_a_full_gate_refuses_before_reading_the_body(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(FakeReranker):
        def infer(self, inputs: Any) -> Any:
            entered.set()
            release.wait(10)
            return super().infer(inputs)

    app = _app(tmp_path, reranker=Slow("r"), max_concurrent_requests=1)
    body = b'{"query": "usb cable", "texts": ["usb c cable"]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/rerank",
        "raw_path": b"/rerank",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    second_reads = 0

    async def whole_body() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def stalled_body() -> dict[str, Any]:
        nonlocal second_reads
        second_reads += 1
        await asyncio.sleep(60)  # a client that never sends its body
        return {"type": "http.disconnect"}

    async def both() -> None:
        async def into(sent: list[dict[str, Any]], message: dict[str, Any]) -> None:
            sent.append(message)

        running = asyncio.create_task(
            app({**scope, "state": {}}, whole_body, lambda m: into(first, m))
        )
        while not entered.is_set():
            await asyncio.sleep(0.01)
        await asyncio.wait_for(
            app({**scope, "state": {}}, stalled_body, lambda m: into(second, m)), 5
        )
        release.set()
        await running

    try:
        asyncio.run(both())
    finally:
        release.set()
    assert second[0]["status"] == 429
    assert b'"error_type":"overloaded"' in second[1]["body"]
    assert second_reads == 0
    assert first[0]["status"] == 200


# ----------------------------------------------------------------------------- API keys


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    app = _app(tmp_path, api_keys=SecretStr(API_KEYS), admin_keys=SecretStr(ADMIN_KEY))
    with TestClient(app) as test_client:
        yield test_client


def test_api_keys_are_off_by_default(client: TestClient) -> None:
    assert client.post("/v1/rerank", json=RERANK).status_code == 200


def test_with_api_keys_no_key_is_401(keyed: TestClient) -> None:
    response = keyed.post("/v1/rerank", json=RERANK)

    _assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_with_api_keys_a_wrong_key_is_403_and_never_echoed(keyed: TestClient) -> None:
    response = keyed.post(
        "/v1/rerank", json=RERANK, headers={"Authorization": "Bearer not-a-key-at-all"}
    )

    _assert_error(response, 403, "forbidden")
    assert "not-a-key-at-all" not in response.text


@pytest.mark.parametrize("key", ["first-api-key-0123", "second-api-key-4567"])
def test_with_api_keys_every_key_is_accepted(keyed: TestClient, key: str) -> None:
    response = keyed.post("/v1/rerank", json=RERANK, headers={"Authorization": f"Bearer {key}"})

    assert response.status_code == 200, response.text


def test_health_and_metrics_stay_open_and_admin_keeps_its_own_keys(keyed: TestClient) -> None:
    api_key = {"Authorization": "Bearer first-api-key-0123"}

    assert "status" in keyed.get("/healthz").json()  # 503 without an index, but not 401
    assert keyed.get("/metrics").status_code == 200
    assert keyed.get("/admin/models", headers=api_key).status_code == 403
    admin = keyed.get("/admin/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert admin.status_code == 200


def test_open_paths_are_a_setting(tmp_path: Path) -> None:
    app = _app(tmp_path, api_keys=SecretStr(API_KEYS), open_paths=())
    with TestClient(app) as client:
        _assert_error(client.get("/healthz"), 401, "unauthorized")
