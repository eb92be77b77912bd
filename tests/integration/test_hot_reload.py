"""Hot reload over a socket: a real ``shoprank serve`` follows the registry while it serves.

The server runs on a temp registry holding two tiny rerankers with different weights (so
each answer's scores tell which one scored it), and polls the production pointer every
0.2 s. A stream of rerank calls from several threads runs while the pointer is promoted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ranker.demo import free_port
from ranker.registry import Registry
from ranker.settings import Settings

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 180.0
SWAP_TIMEOUT_S = 60.0
STREAM_CALLS = 1200
STREAM_THREADS = 4
PROMOTE_AFTER = 300
BODY = {
    "query": "adidas gym bag for women",
    "documents": ["adidas duffel bag, black", "clear silicone sealant", "ring binder"],
}


@pytest.fixture(scope="module")
def second_reranker_dir(tiny_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny reranker with perturbed weights: it scores the same texts differently."""
    import torch
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("second-reranker") / "tiny-reranker-b"
    shutil.copytree(tiny_reranker_dir, directory)
    model = BertForSequenceClassification.from_pretrained(str(directory))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def registry(
    tiny_reranker_dir: Path, second_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    """reranker v1 (production) and v2 (candidate)."""
    found = Registry(tmp_path_factory.mktemp("hot-reload") / "registry")
    found.register("reranker", tiny_reranker_dir, job="test")
    found.register("reranker", second_reranker_dir, job="test")
    found.promote("reranker", "v1", actor="test")
    return found


@contextmanager
def serve(
    settings: Settings, registry: Registry, embedder_dir: Path, workdir: Path, *, interval: float
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """``shoprank serve`` on the registry (the reranker from it, the embedder explicit)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SHOPRANK_")}
    env.update(
        {
            "SHOPRANK_HOME": str(workdir / "home"),
            "SHOPRANK_REGISTRY_DIR": str(registry.root),
            "SHOPRANK_EMBEDDER__MODEL": str(embedder_dir),
            "SHOPRANK_EMBEDDER__BACKEND": "torch",
            "SHOPRANK_RERANK__BACKEND": "torch",
            "SHOPRANK_API__RELOAD_INTERVAL_S": str(interval),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        }
    )
    port = free_port()
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "ranker", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--index-dir", str(settings.index_path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            _wait(lambda: _health(client, process, log_path) == "ok", START_TIMEOUT_S, log_path)
            yield client, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _health(client: httpx.Client, process: subprocess.Popen[bytes], log_path: Path) -> str | None:
    if process.poll() is not None:
        pytest.fail(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
    try:
        status: str = client.get("/healthz", timeout=5.0).json()["status"]
    except httpx.TransportError:
        return None
    return status


def _tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait(condition: Callable[[], bool], timeout_s: float, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"not true after {timeout_s:.0f} s" + (f":\n{_tail(log_path)}" if log_path else ""))


def _status(client: httpx.Client) -> str:
    status: str = client.get("/healthz").json()["status"]
    return status


def _serving(client: httpx.Client) -> str:
    response = client.post("/v1/rerank", json=BODY)
    assert response.status_code == 200, response.text
    return response.headers["x-model-version"]


@pytest.fixture(scope="module")
def server(
    built_index: dict[str, Any],
    integration_settings: Settings,
    registry: Registry,
    tiny_embedder_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    workdir = tmp_path_factory.mktemp("hot-reload-server")
    with serve(integration_settings, registry, tiny_embedder_dir, workdir, interval=0.2) as (
        client,
        _,
    ):
        yield client


def test_a_promotion_mid_stream_swaps_without_a_failure(
    server: httpx.Client, registry: Registry
) -> None:
    answers: list[tuple[int, str | None, str | None, tuple[float, ...]]] = []
    failures: list[str] = []
    lock = threading.Lock()
    base_url = str(server.base_url)

    def stream(calls: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            for _ in range(calls):
                try:
                    response = client.post("/v1/rerank", json=BODY)
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(repr(exc))
                    continue
                body = response.json() if response.status_code == 200 else {}
                scores = tuple(round(r["relevance_score"], 5) for r in body.get("results", []))
                with lock:
                    answers.append(
                        (
                            response.status_code,
                            response.headers.get("x-model-version"),
                            (body.get("meta") or {}).get("model_version"),
                            scores,
                        )
                    )

    threads = [
        threading.Thread(target=stream, args=(STREAM_CALLS // STREAM_THREADS,))
        for _ in range(STREAM_THREADS)
    ]
    for thread in threads:
        thread.start()
    _wait(lambda: len(answers) >= PROMOTE_AFTER, 120.0)
    registry.promote("reranker", "v2", actor="test", reason="mid-stream")
    for thread in threads:
        thread.join(timeout=300)

    assert failures == []
    assert len(answers) == STREAM_CALLS
    assert Counter(status for status, *_ in answers) == {200: STREAM_CALLS}
    assert all(header == meta for _, header, meta, _ in answers)
    versions = Counter(header for _, header, _, _ in answers)
    assert set(versions) == {"reranker/v1", "reranker/v2"}, versions
    scores_by_version: dict[str | None, set[tuple[float, ...]]] = defaultdict(set)
    for _, header, _, scores in answers:
        scores_by_version[header].add(scores)
    # One version scored each answer whole: one set of scores per version, and they differ.
    assert all(len(scores) == 1 for scores in scores_by_version.values()), scores_by_version
    assert scores_by_version["reranker/v1"] != scores_by_version["reranker/v2"]
    search = server.post("/search", json={"query": BODY["query"], "k": 3})
    assert search.headers["x-model-version"] == "reranker/v2"
    assert search.json()["model_version"] == "reranker/v2"
    assert server.get("/healthz").json()["versions"]["reranker"] == "reranker/v2"


def test_rollback_restores_the_previous_version_without_a_restart(
    server: httpx.Client, registry: Registry
) -> None:
    if registry.production_version("reranker") != "v2":
        registry.promote("reranker", "v2", actor="test")
        _wait(lambda: _serving(server) == "reranker/v2", SWAP_TIMEOUT_S)

    registry.rollback("reranker", actor="test", reason="test")

    _wait(lambda: _serving(server) == "reranker/v1", SWAP_TIMEOUT_S)
    health = server.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_a_corrupt_production_file_keeps_the_previous_version_serving(
    server: httpx.Client, registry: Registry
) -> None:
    registry.promote("reranker", "v2", actor="test")
    _wait(lambda: _serving(server) == "reranker/v2", SWAP_TIMEOUT_S)
    weights = registry.get("reranker", "v2").path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    weights.write_bytes(bytes(data))  # same size, other bytes

    _wait(lambda: _status(server) == "degraded", SWAP_TIMEOUT_S)
    health = server.get("/healthz")
    body = health.json()
    assert health.status_code == 200
    assert "reranker/v2: file model.safetensors does not match its manifest hash" in body["detail"]
    assert body["versions"]["reranker"] == "reranker/v1"
    assert _serving(server) == "reranker/v1"

    registry.rollback("reranker", actor="test", reason="v2 is corrupt")

    _wait(lambda: _status(server) == "ok", SWAP_TIMEOUT_S)
    assert _serving(server) == "reranker/v1"


def test_sighup_makes_the_server_check_at_once(
    built_index: dict[str, Any],
    integration_settings: Settings,
    tiny_reranker_dir: Path,
    second_reranker_dir: Path,
    tiny_embedder_dir: Path,
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register("reranker", tiny_reranker_dir)
    registry.register("reranker", second_reranker_dir)
    registry.promote("reranker", "v1")
    # Interval 0: the server never polls; only SIGHUP makes it look.
    with serve(integration_settings, registry, tiny_embedder_dir, tmp_path, interval=0) as (
        client,
        process,
    ):
        registry.promote("reranker", "v2")
        time.sleep(1.0)
        before = _serving(client)
        process.send_signal(signal.SIGHUP)
        _wait(lambda: _serving(client) == "reranker/v2", SWAP_TIMEOUT_S, tmp_path / "server.log")

    assert before == "reranker/v1"
