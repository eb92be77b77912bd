"""A sharded catalog build on real Redis and real workers: a chord of shard tasks, a commit
that checks their counts and swaps the index in, a shard that fails retried alone, and a
build that fails for good leaving the serving index and no files behind."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from workerstack import RedisServer, Stack, WorkerData, new_stack, wait_for

from indexer.catalog import load_products
from indexer.jobs import read_index_manifest
from ranker.sharded_indexing import build_dir
from workers.client import job_status, submit_job

pytestmark = pytest.mark.workers

SHARDS = 3


def _stack(
    redis_server: RedisServer, worker_data: WorkerData, home: Path, **fault: str
) -> Iterator[Stack]:
    stack = new_stack(redis_server, worker_data, home)
    env = {name.upper(): value for name, value in fault.items()}
    if "FAULT_KIND" in env:
        env["FAULT_MARKER"] = str(home / "fault-marker")
    stack.start("w1", concurrency=2, env=env, include="faults")
    yield stack
    stack.stop_all()


@pytest.fixture
def stack(redis_server: RedisServer, worker_data: WorkerData, tmp_path: Path) -> Iterator[Stack]:
    """Two pool processes; shard 1 fails once with a busy file system."""
    yield from _stack(
        redis_server, worker_data, tmp_path / "home", fault_shard="1", fault_kind="transient"
    )


def _task_lines(log: str, task_id: str) -> list[str]:
    return [line for line in log.splitlines() if task_id in line]


def test_shards_embed_apart_and_the_commit_swaps_the_index_in(stack: Stack) -> None:
    settings = stack.settings()
    before = read_index_manifest(stack.home / "index")

    job_id = submit_job(settings, "index", {"catalog": str(stack.data.catalog), "shards": SHARDS})
    seen_progress = []
    deadline = time.monotonic() + 240
    while (status := job_status(settings, job_id))["state"] not in ("SUCCESS", "FAILURE"):
        if status["progress"]:
            seen_progress.append(status["progress"])
        assert time.monotonic() < deadline, status
        time.sleep(0.05)

    assert status["state"] == "SUCCESS", status
    products = load_products(stack.data.catalog)
    result = status["result"]
    assert (result["backend"], result["action"], result["count"]) == (
        "embedded",
        "build",
        len(products),
    )
    manifest = read_index_manifest(stack.home / "index")
    assert (manifest["build"], manifest["shards"], manifest["count"]) == (
        job_id,
        SHARDS,
        len(products),
    )
    assert manifest["built_at"] >= before["built_at"]
    assert not build_dir(settings, job_id).exists()
    names = [step["name"] for step in status["steps"]]
    assert names == ["index_plan", *["index_shard"] * SHARDS, "index_commit"]
    assert all(step["state"] == "SUCCESS" for step in status["steps"])
    assert any(p.get("of") == SHARDS for p in seen_progress), seen_progress

    # Shard 1 failed once and was retried alone; the others ran once.
    log = stack.processes[0].text()
    shard_ids = [step["id"] for step in status["steps"] if step["name"] == "index_shard"]
    retried = [re.search(r"\bRetry in\b", line) for line in _task_lines(log, shard_ids[1])]
    assert any(retried), _task_lines(log, shard_ids[1])
    assert (Path(stack.home) / "fault-marker").is_file()
    for other in (shard_ids[0], shard_ids[2]):
        lines = _task_lines(log, other)
        assert sum("succeeded" in line for line in lines) == 1, lines
        assert not any("Retry in" in line for line in lines), lines


def test_a_shard_that_fails_for_good_leaves_the_serving_index_and_no_files(
    redis_server: RedisServer, worker_data: WorkerData, tmp_path: Path
) -> None:
    for stack in _stack(
        redis_server, worker_data, tmp_path / "home", fault_shard="2", fault_kind="permanent"
    ):
        settings = stack.settings()
        before = read_index_manifest(stack.home / "index")

        job_id = submit_job(
            settings, "index", {"catalog": str(stack.data.catalog), "shards": SHARDS}
        )
        status = wait_for(settings, job_id)

        assert status["state"] == "FAILURE", status
        assert "a product no model can embed" in status["error"]
        assert status["progress"]["step"] == "index_shard"
        assert read_index_manifest(stack.home / "index") == before
        deadline = time.monotonic() + 30  # the commit's error callback removes the shards
        while build_dir(settings, job_id).exists():
            assert time.monotonic() < deadline, list(build_dir(settings, job_id).iterdir())
            time.sleep(0.1)
