"""The routes through the schedulers: concurrent reranks on a tiny model, 429 before
queueing, deadlines, a failing backend, and schedulers that follow hot swaps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service, fake_tokens
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.api.errors import api_error_for
from ranker.api.service import Service, Snapshot
from ranker.batching import (
    DeadlineExceededError,
    InferenceFailedError,
    SchedulerConfig,
    SchedulerOverloadedError,
    SchedulerStoppedError,
)
from ranker.errors import ShoprankError
from ranker.reranker import Reranker
from ranker.settings import Settings
from ranker.stages import PreparedTokens

WAIT_S = 10.0
BATCHING = SchedulerConfig(max_batch_tokens=4_096, max_queue_tokens=100_000)
RERANK = {"query": "usb cable", "documents": ["usb c cable", "garden hose"]}
TEI = {"query": "q", "texts": ["d"]}


class HeldReranker(FakeReranker):
    """A fake whose model thread waits for ``hold`` (set by default) or fails."""

    def __init__(self, model_id: str, score: float = 0.0, *, fail: bool = False) -> None:
        super().__init__(model_id, score)
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail = fail
        self.batches = 0

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        self.batches += 1
        self.started.set()
        self.hold.wait(WAIT_S)
        if self.fail:
            raise RuntimeError("CUDA error: an illegal memory access")
        return super().infer(inputs)


class HeldEmbedder(FakeEmbedder):
    """A fake whose model thread waits for ``hold`` (set by default)."""

    def __init__(self, model_id: str) -> None:
        super().__init__(model_id)
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        self.started.set()
        self.hold.wait(WAIT_S)
        return super().infer(inputs)


def _service(reranker: Any, config: SchedulerConfig | None = BATCHING) -> Service:
    service = fake_service(reranker=reranker)
    return Service(
        embedder=None,
        reranker=service.reranker,
        pipeline=None,
        problems=[],
        batching=config,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@contextmanager
def _occupied(
    service: Service, model: HeldReranker | HeldEmbedder, *, queued: int = 1
) -> Iterator[None]:
    """Hold the model thread on one request and queue ``queued`` more behind it."""
    model.hold.clear()
    with service.lease():
        scheduler = service.schedulers.get(model)  # type: ignore[arg-type]
        assert scheduler is not None
        scheduler.enqueue(fake_tokens(["busy"]))
        assert model.started.wait(WAIT_S)
        for _ in range(queued):
            scheduler.enqueue(fake_tokens(["queued behind"]))
        try:
            yield
        finally:
            model.hold.set()


def test_concurrent_reranks_each_get_their_own_scores(
    tiny_reranker_dir: Path, settings: Settings
) -> None:
    reranker = Reranker.load(tiny_reranker_dir, backend="torch")
    service = Service(
        embedder=None, reranker=reranker, pipeline=None, problems=[], batching=BATCHING
    )
    bodies = [
        {"query": f"query {i}", "documents": [f"product {i} {j}" for j in range(i + 1)]}
        for i in range(8)
    ]

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(settings, service=service))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(
                *(client.post("/v1/rerank?format=array", json=body) for body in bodies)
            )

    try:
        responses = asyncio.run(send())
    finally:
        service.schedulers.close()

    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["x-model-version"] == reranker.model_id
        assert "queue;dur=" in response.headers["server-timing"]
        expected = 1 / (1 + np.exp(-reranker.score(body["query"], body["documents"])))
        got = {row["index"]: row["relevance_score"] for row in response.json()}
        np.testing.assert_allclose([got[i] for i in range(len(expected))], expected, atol=1e-5)


MODEL_ROUTES = [
    ("/v1/rerank", RERANK, "reranker"),
    ("/v2/rerank", RERANK, "reranker"),
    ("/rerank", TEI, "reranker"),
    ("/rerank", RERANK, "reranker"),  # Infinity's body
    ("/v1/embed", {"texts": ["gym bag"]}, "embedder"),
    ("/v2/embed", {"texts": ["gym bag"], "embedding_types": ["float"]}, "embedder"),
    ("/v1/embeddings", {"input": "gym bag", "model": "m"}, "embedder"),
    ("/embed", {"inputs": "gym bag"}, "embedder"),
    ("/", {"inputs": "gym bag"}, "embedder"),
]


@pytest.mark.parametrize(("path", "body", "role"), MODEL_ROUTES)
def test_every_model_route_runs_through_its_models_scheduler(
    settings: Settings, path: str, body: dict[str, Any], role: str
) -> None:
    service = fake_service(reranker=HeldReranker("r"), embedder=FakeEmbedder("e"))
    service = Service(
        embedder=service.embedder,
        reranker=service.reranker,
        pipeline=None,
        problems=[],
        batching=BATCHING,
    )
    with TestClient(create_app(settings, service=service)) as client:
        response = client.post(path, json=body)
        metrics = client.get("/metrics").text

    assert response.status_code == 200, response.text
    assert "queue;dur=" in response.headers["server-timing"]
    assert f'shoprank_batch_requests_count{{model="{role}"}} 1.0' in metrics
    assert f'shoprank_batch_padded_tokens_count{{model="{role}"}} 1.0' in metrics
    assert f'shoprank_queue_padded_tokens{{model="{role}"}} 0.0' in metrics


@pytest.mark.parametrize(
    ("path", "body"), [(path, body) for path, body, role in MODEL_ROUTES if role == "embedder"]
)
def test_an_overloaded_embedder_answers_429_with_retry_after(
    settings: Settings, path: str, body: dict[str, Any]
) -> None:
    embedder = HeldEmbedder("held")
    service = Service(
        embedder=embedder,  # type: ignore[arg-type]
        reranker=None,
        pipeline=None,
        problems=[],
        batching=SchedulerConfig(max_batch_tokens=64, max_queue_tokens=1),
    )
    with TestClient(create_app(settings, service=service)) as client, _occupied(service, embedder):
        response = client.post(path, json=body)

    assert response.status_code == 429, response.text
    body = response.json()
    # OpenAI's route answers in OpenAI's error body (see ranker.api.error_shapes).
    error_type = body["error"]["type"] if path == "/v1/embeddings" else body["error_type"]
    assert error_type == "overloaded"
    assert int(response.headers["retry-after"]) >= 1


def test_an_overloaded_model_answers_429_at_once_with_retry_after(settings: Settings) -> None:
    reranker = HeldReranker("held")
    service = _service(reranker, SchedulerConfig(max_batch_tokens=64, max_queue_tokens=1))
    with TestClient(create_app(settings, service=service)) as client, _occupied(service, reranker):
        start = time.perf_counter()
        response = client.post("/v1/rerank", json=RERANK)
        elapsed = time.perf_counter() - start

    assert response.status_code == 429
    assert response.json()["error_type"] == "overloaded"
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < WAIT_S / 2  # answered, not queued behind the held model


def test_a_request_past_its_deadline_answers_504(settings: Settings) -> None:
    reranker = HeldReranker("held")
    service = _service(reranker)
    with TestClient(create_app(settings, service=service)) as client:
        with _occupied(service, reranker, queued=0):
            late = client.post("/rerank", json=TEI, headers={"x-request-timeout-ms": "50"})
        bad = client.post("/rerank", json=TEI, headers={"x-request-timeout-ms": "soon"})

    assert late.status_code == 504
    assert late.json()["error_type"] == "deadline_exceeded"
    assert bad.status_code == 422
    assert "x-request-timeout-ms" in bad.json()["error"]


@pytest.mark.parametrize("batching", [BATCHING, None])
def test_a_failing_backend_answers_424_batching_or_not(
    settings: Settings, batching: SchedulerConfig | None
) -> None:
    service = fake_service(reranker=HeldReranker("broken", fail=True))
    service = Service(
        embedder=None, reranker=service.reranker, pipeline=None, problems=[], batching=batching
    )
    with TestClient(create_app(settings, service=service), raise_server_exceptions=False) as c:
        response = c.post("/v1/rerank", json=RERANK)

    assert response.status_code == 424
    assert response.json()["error_type"] == "backend"
    assert "illegal memory access" not in response.text


def test_a_swap_starts_the_new_models_scheduler_and_drains_the_old_after_its_requests() -> None:
    old, new = HeldReranker("old", 1.0), HeldReranker("new", 2.0)
    service = _service(old)
    try:
        with service.lease() as in_flight:
            old_scheduler = service.schedulers.get(old)
            service.swap(lambda snapshot: Snapshot(reranker=new))  # type: ignore[arg-type]

            assert service.schedulers.get(new) is not None
            assert old_scheduler is not None
            assert not old_scheduler.stopped
            late = old_scheduler.enqueue(fake_tokens(["still on the old version"]))
            assert late.result(WAIT_S).output[0] == 1.0
            assert in_flight.reranker is old

        assert old_scheduler.stopped
        assert old_scheduler.join(WAIT_S)
        assert service.schedulers.get(old) is None
    finally:
        service.schedulers.close()


def test_batching_off_runs_without_schedulers(settings: Settings) -> None:
    reranker = HeldReranker("plain", 3.0)
    service = _service(reranker, config=None)
    with TestClient(create_app(settings, service=service)) as client:
        response = client.post("/v1/rerank", json=RERANK)

    assert response.status_code == 200
    assert service.schedulers.get(reranker) is None
    assert response.json()["results"][0]["relevance_score"] == pytest.approx(1 / (1 + np.exp(-3)))


@pytest.mark.parametrize(
    ("error", "status", "error_type"),
    [
        (SchedulerOverloadedError("queue full", retry_after_s=3), 429, "overloaded"),
        (DeadlineExceededError("too late"), 504, "deadline_exceeded"),
        (InferenceFailedError("the reranker failed"), 424, "backend"),
        (SchedulerStoppedError("stopped"), 503, "unhealthy"),
    ],
)
def test_scheduler_errors_map_to_one_row(
    error: ShoprankError, status: int, error_type: str
) -> None:
    mapped = api_error_for(error)

    assert (mapped.status_code, mapped.error_type) == (status, error_type)
    assert mapped.message == error.message
    if status == 429:
        assert mapped.response_headers()["Retry-After"] == "3"
