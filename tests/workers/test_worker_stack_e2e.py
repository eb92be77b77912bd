"""End to end on a running stack (Redis, a worker, the API): `shoprank jobs submit retrain`
leads to a promoted reranker that the running API serves without a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest
from workerstack import REPO, TINY_TRAINING, Stack

from ranker.demo import running_server

pytestmark = [pytest.mark.workers, pytest.mark.slow]

RERANK = {"query": "usb c charger", "documents": ["usb c wall charger", "cutting board"]}


def _served_version(base_url: str) -> str:
    response = httpx.post(f"{base_url}/v1/rerank", json=RERANK, timeout=30)
    response.raise_for_status()
    assert response.json()["meta"]["model_version"] == response.headers["x-model-version"]
    return response.headers["x-model-version"]


def test_a_submitted_retrain_is_served_by_the_running_api(
    make_stack: Callable[..., Stack],
) -> None:
    stack = make_stack(API__RELOAD_INTERVAL_S="0.2")
    stack.start("w1")
    settings = stack.settings()
    before = stack.registry().production_version("reranker")
    with running_server(settings, port=0, env=stack.env) as base_url:
        assert _served_version(base_url) == f"reranker/{before}"
        health = httpx.get(f"{base_url}/healthz", timeout=10).json()
        submitted = subprocess.run(
            [
                sys.executable,
                "-m",
                "ranker",
                "jobs",
                "submit",
                "retrain",
                "--judgments",
                str(stack.data.judgments),
                "--param",
                "overrides="
                + json.dumps({**TINY_TRAINING, "base_model": str(stack.data.reranker)}),
                "--wait",
                "--timeout",
                "600",
            ],
            cwd=REPO,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=660,
            check=False,
        )
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        status = json.loads(submitted.stdout)
        assert status["state"] == "SUCCESS", status
        promoted = stack.registry().production_version("reranker")
        assert promoted != before
        deadline = time.monotonic() + 30
        while (served := _served_version(base_url)) != f"reranker/{promoted}":
            assert time.monotonic() < deadline, f"the API still serves {served}"
            time.sleep(0.2)
        after = httpx.get(f"{base_url}/healthz", timeout=10).json()
    assert after["status"] == "ok", after
    assert health["status"] == "ok", health
