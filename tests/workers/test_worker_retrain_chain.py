"""The retraining chain on tiny models: fine-tune → compress → evaluate → promote."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from workerstack import TINY_TRAINING, Stack, wait_for

from workers.client import submit_job

pytestmark = [pytest.mark.workers, pytest.mark.slow]
logger = logging.getLogger(__name__)


def test_retrain_chain_promotes_a_new_reranker(make_stack: Callable[..., Stack]) -> None:
    stack = make_stack()
    stack.start("w1")
    settings = stack.settings()
    registry = stack.registry()
    before = registry.production_version("reranker")

    started = time.perf_counter()
    job_id = submit_job(
        settings,
        "retrain",
        {
            "judgments": str(stack.data.judgments),
            "overrides": {**TINY_TRAINING, "base_model": str(stack.data.reranker)},
        },
    )
    seen_steps: set[str] = set()
    while True:
        status = wait_for(settings, job_id, states=("PROGRESS", "STARTED", "SUCCESS", "FAILURE"))
        if status["progress"]:
            seen_steps.add(status["progress"]["step"])
        if status["state"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    logger.warning("tiny retrain chain: %.1f s", seconds)
    (stack.home / "chain-seconds.txt").write_text(f"{seconds:.1f}\n")

    assert status["state"] == "SUCCESS", status
    assert [step["name"] for step in status["steps"]] == [
        "finetune_reranker",
        "compress",
        "evaluate",
        "promote",
    ]
    result = status["result"]
    assert result["promoted"] is True, result
    promoted = result["candidate"]["version"]
    assert registry.production_version("reranker") == promoted != before
    version = registry.get("reranker", promoted)
    teacher = version.lineage.get("derived_from")
    assert teacher is not None
    assert registry.get("reranker", teacher).manifest["created_by"]["task_id"] == job_id
    assert {"train", "compress"} <= seen_steps, seen_steps  # progress at step boundaries
