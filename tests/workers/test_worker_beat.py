"""Periodic re-compression with real beat and worker processes: unchanged inputs are
skipped, changed ones build a new candidate."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from workerstack import Stack

from workers.client import list_jobs
from workers.inputs import compression_inputs

pytestmark = [pytest.mark.workers, pytest.mark.slow]


def _ticks(stack: Stack) -> list[dict[str, Any]]:
    """The results of beat's finished ``maybe_compress`` runs, oldest first."""
    jobs = list_jobs(stack.settings(), limit=200)
    return [
        job["result"]
        for job in reversed(jobs)
        if job["kind"] == "maybe_compress" and job["state"] == "SUCCESS"
    ]


def _wait_for_tick(
    stack: Stack, accept: Callable[[dict[str, Any]], bool], *, timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [tick for tick in _ticks(stack) if accept(tick)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no such maybe_compress run after {timeout_s} s")
        time.sleep(0.5)


def test_beat_skips_unchanged_inputs_and_compresses_changed_ones(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    own_judgments = tmp_path / "judgments.csv"
    stack = make_stack(workers__compress_every_s="2", workers__judgments=str(own_judgments))
    shutil.copy(stack.data.judgments, own_judgments)
    settings = stack.settings()
    registry = stack.registry()
    unchanged = compression_inputs(settings).key
    earlier = registry.register("reranker", stack.data.reranker, key=unchanged, job="test")
    stack.start("w1")
    stack.start("beat", beat=True)

    skipped = _wait_for_tick(stack, lambda tick: tick["skipped"] == "unchanged", timeout_s=120)
    assert (skipped["key"], skipped["registered"]) == (unchanged, earlier.version)

    lines = own_judgments.read_text(encoding="utf-8").splitlines(keepends=True)
    own_judgments.write_text("".join(lines[:-3]), encoding="utf-8")
    changed = compression_inputs(settings).key
    assert changed != unchanged
    built = _wait_for_tick(stack, lambda tick: tick["key"] == changed, timeout_s=400)

    assert built["skipped"] is None
    assert built["registered"] is not None
    assert [v.version for v in registry.versions("reranker") if v.key == changed] == [
        built["registered"]
    ]
    assert [v.version for v in registry.versions("reranker") if v.key == unchanged] == [
        earlier.version
    ]
    after = _wait_for_tick(
        stack,
        lambda tick: tick["key"] == changed and tick["skipped"] == "unchanged",
        timeout_s=60,
    )
    assert after["registered"] == built["registered"]
