"""The real components the worker tests run: Redis, Celery worker and beat processes, homes.

A stack is one home and one Redis database: a registry whose production models are the
tiny random BERTs, an index of a catalog subset built with the tiny bi-encoder, and the
first judged queries as its judgments. Worker and beat processes are ``python -m celery -A
workers.app worker|beat`` with ``SHOPRANK_*`` pointing at that home; each leads its own
process group and is stopped by its PID (the group it leads).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from ranker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
JUDGED_QUERIES = 5
OTHER_PRODUCTS = 60
TINY_COMPRESS: dict[str, Any] = {
    "layers": [1],
    "max_lengths": [32],
    "embedder_max_lengths": [],
    "folds": 2,
    "pseudo_queries": 4,
    "judged_query_depth": 3,
    "pseudo_query_depth": 2,
    "latency_repeats": 2,
    "max_ndcg_drop": 1.0,
    "student": {"epochs": 0.05, "evals_per_epoch": 1, "batch_size": 64},
}
"""A compression that only exercises the mechanics (seconds on tiny models)."""
TINY_TRAINING: dict[str, Any] = {
    "epochs": 0.2,
    "batch_size": 16,
    "evals_per_epoch": 1,
    "save_dtype": "float32",
}
"""Fine-tuning overrides for a tiny reranker: a few steps."""
DONE = ("SUCCESS", "FAILURE", "REVOKED")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class RedisServer:
    port: int
    pid: int

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


@dataclass(frozen=True)
class WorkerData:
    """The files every stack uses: judgments for a few queries, a catalog subset, an index."""

    judgments: Path
    catalog: Path
    home: Path
    """A seeded home (registry and index) each stack copies."""
    embedder: Path
    reranker: Path


def build_worker_data(root: Path, tiny_embedder_dir: Path, tiny_reranker_dir: Path) -> WorkerData:
    """The first judged queries, their products plus a fixed draw of others, indexed."""
    from indexer.catalog import (
        TextTemplate,
        load_products,
        sample_catalog_path,
        sample_judgments_path,
    )
    from indexer.jobs import build_index
    from ranker.embedder import Embedder

    with sample_judgments_path().open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    qids = list(dict.fromkeys(row["query_id"] for row in rows))[:JUDGED_QUERIES]
    kept = [row for row in rows if row["query_id"] in qids]
    judgments = root / "judgments.csv"
    with judgments.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    products = load_products(sample_catalog_path())
    judged = {row["product_id"] for row in kept}
    others = sorted(p.id for p in products if p.id not in judged)
    drawn = set(random.Random(7).sample(others, OTHER_PRODUCTS))
    subset = [p for p in products if p.id in judged or p.id in drawn]
    catalog = root / "products.jsonl"
    with catalog.open("w", encoding="utf-8") as handle:
        for product in subset:
            record = product.model_dump(mode="json", exclude={"attributes"})
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    from ranker.registry import Registry

    home = root / "home"
    registry = Registry(home / "registry")
    embedder = registry.register("embedder", tiny_embedder_dir, job="test-seed")
    registry.promote("embedder", embedder.version, actor="test")
    reranker = registry.register("reranker", tiny_reranker_dir, job="test-seed")
    registry.promote("reranker", reranker.version, actor="test")
    build_index(
        subset,
        home / "index",
        embedder=Embedder.load(embedder.path, backend="torch", batch_size=32),
        template=TextTemplate(Settings().index.text_template),
        source=str(catalog),
        hnsw_threshold=100_000,
        progress=False,
    )
    return WorkerData(judgments, catalog, home, tiny_embedder_dir, tiny_reranker_dir)


_databases = itertools.count(1)


@dataclass
class Stack:
    """One home, one Redis database, the env its processes get and its settings."""

    home: Path
    env: dict[str, str]
    data: WorkerData
    processes: list[CeleryProcess] = field(default_factory=list)

    def settings(self) -> Settings:
        """Settings exactly as a worker reads them from its environment."""
        with mock.patch.dict(os.environ, self.env):
            return Settings()

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.env["SHOPRANK_WORKERS__BROKER_URL"])

    def registry(self) -> Any:
        from ranker.registry import Registry

        return Registry(self.home / "registry")

    def start(
        self,
        name: str,
        *,
        beat: bool = False,
        concurrency: int = 1,
        env: Mapping[str, str] | None = None,
        include: str | None = None,
    ) -> CeleryProcess:
        """A worker (or beat) process for this stack, ready to take tasks; ``include``: a
        module beside this one that the worker imports too (``faults``)."""
        if beat:
            arguments = ["beat", "--loglevel=INFO"]
        else:
            arguments = [
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--pool=prefork",
                f"--hostname={name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        environment = {**self.env, **(env or {})}
        if include is not None:
            arguments.append(f"--include={include}")
            paths = [str(Path(__file__).parent), environment.get("PYTHONPATH", "")]
            environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        process = CeleryProcess.start(arguments, env=environment, log=self.home / f"{name}.log")
        self.processes.append(process)
        process.wait_ready("Starting..." if beat else " ready.")
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@dataclass
class CeleryProcess:
    """``python -m celery -A workers.app …`` leading its own process group."""

    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, arguments: list[str], *, env: Mapping[str, str], log: Path) -> CeleryProcess:
        handle = log.open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", *arguments],
            cwd=REPO,
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        return cls(popen, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, marker: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while marker not in self.text():
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"celery exited ({self.popen.returncode}):\n{self.text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery not ready after {timeout_s} s:\n{self.text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the process and its pool children (the group it leads)."""
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._reap_group()

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), SIGKILL after 20 s."""
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._reap_group()

    def _reap_group(self) -> None:
        """Pool children outlive their parent briefly; end what is left of the group."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return


def seed_home(home: Path, data: WorkerData) -> None:
    """A copy of the seeded home: production models are the tiny ones, the index is built
    with the production bi-encoder."""
    shutil.copytree(data.home, home, dirs_exist_ok=True)


def new_stack(
    redis_server: RedisServer,
    data: WorkerData,
    home: Path,
    **settings: str,
) -> Stack:
    """A seeded home and a fresh Redis database; ``settings``: extra ``SHOPRANK_`` values."""
    seed_home(home, data)
    database = next(_databases)
    import redis

    redis.Redis.from_url(redis_server.url(database)).flushdb()
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("SHOPRANK_")},
        "SHOPRANK_HOME": str(home),
        "SHOPRANK_WORKERS__BROKER_URL": redis_server.url(database),
        "SHOPRANK_WORKERS__JUDGMENTS": str(data.judgments),
        "SHOPRANK_WORKERS__CATALOG": str(data.catalog),
        "SHOPRANK_WORKERS__COMPRESS": json.dumps(TINY_COMPRESS),
        "SHOPRANK_WORKERS__COMPRESS_EVERY_S": "0",
        "SHOPRANK_WORKERS__LOCK_TIMEOUT_S": "3",
        "SHOPRANK_WORKERS__MAX_RETRIES": "2",
        "SHOPRANK_WORKERS__RETRY_BACKOFF_MAX_S": "2",
        "SHOPRANK_WORKERS__VISIBILITY_TIMEOUT_S": "900",
        "SHOPRANK_REGISTRY__MAX_NDCG_DROP": "1.0",
        "SHOPRANK_REGISTRY__MAX_RERANK_P50_MS": "100000",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    env.update({f"SHOPRANK_{name.upper()}": value for name, value in settings.items()})
    return Stack(home=home, env=env, data=data)


def wait_for(
    settings: Settings, job_id: str, *, timeout_s: float = 240, states: tuple[str, ...] = DONE
) -> dict[str, Any]:
    """Poll ``job_status`` until the job reaches one of ``states``."""
    from workers.client import job_status

    deadline = time.monotonic() + timeout_s
    while True:
        status = job_status(settings, job_id)
        if status["state"] in states:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {status['state']} after {timeout_s} s")
        time.sleep(0.2)
