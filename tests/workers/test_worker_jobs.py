"""Jobs through real Redis and one real worker: submitted, run, their results read back.

The worker here has a rerank-50 budget of 1 ms and an NDCG budget of 0.01, so a slow or
worse reranker is refused: the refusal is a normal result carrying the gate's reasons. Its
OpenSearch URL is a closed port: a transient failure, retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from workerstack import REPO, RedisServer, Stack, WorkerData, free_port, new_stack, wait_for

from indexer.jobs import read_index_manifest
from workers.client import job_status, list_jobs, submit_job

pytestmark = pytest.mark.workers


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, worker_data: WorkerData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One worker for the module's jobs."""
    shared = new_stack(
        redis_server,
        worker_data,
        tmp_path_factory.mktemp("stack"),
        registry__max_rerank_p50_ms="1",
        registry__max_ndcg_drop="0.01",
        opensearch__url=f"http://127.0.0.1:{free_port()}",
        opensearch__max_retries="0",
    )
    shared.start("w1")
    yield shared
    shared.stop_all()


def test_an_index_job_round_trip(stack: Stack) -> None:
    settings = stack.settings()

    job_id = submit_job(settings, "index", {"catalog": str(stack.data.catalog)})
    status = wait_for(settings, job_id)

    assert status["state"] == "SUCCESS", status
    assert status["kind"] == "index"
    assert status["error"] is None
    result = status["result"]
    assert (result["backend"], result["action"]) == ("embedded", "build")
    assert result["count"] == read_index_manifest(stack.home / "index")["count"] > 0
    assert json.loads(json.dumps(result)) == result
    assert job_id in [job["id"] for job in list_jobs(settings)]
    assert job_status(settings, job_id)["steps"] == [
        {"name": "index", "id": job_id, "state": "SUCCESS"}
    ]


def _worse_candidate(stack: Stack) -> str:
    """A reranker candidate slower than the budget and worse than production's figure."""
    registry = stack.registry()
    production = registry.production_version("reranker")
    registry.update(
        "reranker", production, metrics={"on_judgments": {"shop-judgments": {"ndcg@10": 0.9}}}
    )
    candidate = registry.register(
        "reranker",
        stack.data.reranker,
        metrics={"ndcg@10": 0.5, "judgments_sha256": "shop-judgments", "rerank50_p50_ms": 50.0},
        job="test",
    )
    return candidate.version


def test_a_refused_promotion_is_a_result_with_its_reasons(stack: Stack) -> None:
    settings = stack.settings()
    registry = stack.registry()
    production = registry.production_version("reranker")
    candidate = _worse_candidate(stack)

    status = wait_for(settings, submit_job(settings, "promote", {"version": candidate}))

    assert status["state"] == "SUCCESS", status
    result: dict[str, Any] = status["result"]
    assert result["promoted"] is False
    reasons = " ".join(result["reasons"])
    assert "NDCG@10 0.5000 < production 0.9000" in reasons
    assert "rerank-50 p50 50.0 ms > budget 1.0 ms" in reasons
    assert result["gate"]["passed"] is False
    assert registry.production_version("reranker") == production
    assert registry.get("reranker", candidate).manifest["gate"]["reasons"] == result["reasons"]


def test_bad_input_fails_at_once_without_retries(stack: Stack) -> None:
    settings = stack.settings()

    job_id = submit_job(settings, "evaluate", {"version": "v99"})
    status = wait_for(settings, job_id)

    assert status["state"] == "FAILURE"
    assert "VersionNotFoundError" in status["error"]
    assert "v99" in status["error"]
    assert f"Task shoprank.evaluate[{job_id}] retry" not in stack.processes[0].text()


def test_an_unreachable_opensearch_is_retried_with_backoff(stack: Stack) -> None:
    settings = stack.settings()

    job_id = submit_job(
        settings, "index", {"backend": "opensearch", "catalog": str(stack.data.catalog)}
    )
    status = wait_for(settings, job_id, timeout_s=120)

    assert status["state"] == "FAILURE"
    assert "TransientJobError" in status["error"]
    assert "unreachable" in status["error"] or "Connection" in status["error"]
    retries = stack.processes[0].text().count(f"Task shoprank.index[{job_id}] retry: Retry in")
    assert retries == int(stack.env["SHOPRANK_WORKERS__MAX_RETRIES"])


def _shoprank(stack: Stack, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ranker", *arguments],
        cwd=REPO,
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_jobs_commands(stack: Stack) -> None:
    submitted = _shoprank(
        stack, "jobs", "submit", "promote", "--param", "version=v1", "--param", "force=false"
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_for(stack.settings(), job_id)

    shown = _shoprank(stack, "jobs", "status", job_id)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["id"], status["kind"], status["state"]) == (job_id, "promote", "SUCCESS")
    assert status["result"]["already"] is True

    listed = _shoprank(stack, "jobs", "list")
    assert listed.returncode == 0, listed.stderr
    assert any(line.startswith(job_id) and "promote" in line for line in listed.stdout.splitlines())

    bad = _shoprank(stack, "jobs", "submit", "reindex-everything")
    assert bad.returncode == 2
    assert "unknown job kind 'reindex-everything'" in bad.stderr
