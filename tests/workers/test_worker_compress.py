"""Compression on real workers: built once per set of inputs, and a worker killed in the
middle of one leaves no partial version; the task is redelivered and completes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from workerstack import Stack, wait_for

from workers.client import job_status, submit_job
from workers.inputs import compression_inputs

pytestmark = [pytest.mark.workers, pytest.mark.slow]


class RegistryWatcher(threading.Thread):
    """Lists the registry's rerankers over and over; every listed one must verify."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.registry = stack.registry()
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.listings = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for version in self.registry.versions("reranker"):
                try:
                    self.registry.verify("reranker", version.version)
                except Exception as exc:
                    self.problems.append(f"{version.ref}: {exc}")
            self.listings += 1
            time.sleep(0.05)


def test_two_concurrent_maybe_compress_deliveries_build_one_version(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack()
    stack.start("w1")
    stack.start("w2")
    settings = stack.settings()
    key = compression_inputs(settings).key

    first, second = (submit_job(settings, "maybe_compress", {}) for _ in range(2))
    results = [wait_for(settings, job_id, timeout_s=400)["result"] for job_id in (first, second)]

    assert sorted(str(result["skipped"]) for result in results) == ["None", "in_progress"]
    assert {result["key"] for result in results} == {key}
    built = [v for v in stack.registry().versions("reranker") if v.key == key]
    assert len(built) == 1
    assert stack.redis().keys("shoprank:lock:*") == []
    again = wait_for(settings, submit_job(settings, "maybe_compress", {}))["result"]
    assert (again["skipped"], again["registered"]) == ("unchanged", built[0].version)


def _wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return found


def test_a_worker_killed_mid_compress_leaves_nothing_and_the_task_completes_elsewhere(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(workers__visibility_timeout_s="5")
    first = stack.start("w1")
    settings = stack.settings()
    registry = stack.registry()
    before = {v.version for v in registry.versions("reranker")}
    watcher = RegistryWatcher(stack)
    watcher.start()

    job_id = submit_job(settings, "compress", {"promote": False})
    work = stack.home / "jobs" / job_id
    _wait_until(
        lambda: (job_status(settings, job_id)["progress"] or {}).get("step") == "compress",
        timeout_s=120,
        what="the compress step",
    )
    _wait_until(
        lambda: (work / "embedder").is_dir() and any((work / "embedder").iterdir()),
        timeout_s=120,
        what="the job's first files",
    )
    first.kill()
    assert {v.version for v in registry.versions("reranker")} == before, "killed too late"
    assert work.is_dir()

    second = stack.start("w2")
    status = wait_for(settings, job_id, timeout_s=400, states=("SUCCESS", "FAILURE"))
    watcher.stop.set()
    watcher.join()

    assert status["state"] == "SUCCESS", status
    assert watcher.problems == []
    assert watcher.listings > 10
    new = [v for v in registry.versions("reranker") if v.version not in before]
    assert [v.version for v in new] == [status["result"]["registered"]]
    assert new[0].key == status["result"]["key"]
    assert new[0].manifest["created_by"]["task_id"] == job_id
    assert f"shoprank.compress[{job_id}] received" in second.text()
    assert f"shoprank.compress[{job_id}] succeeded" not in first.text()
    assert list(registry.root.joinpath("reranker").glob(".staging-*")) == []
