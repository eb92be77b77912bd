"""Fixtures for the worker tests: a Redis server for the session, stacks of Celery processes.

See ``workerstack`` for what a stack is. Every process a test starts is stopped by its PID
when the test ends.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from workerstack import RedisServer, Stack, WorkerData, build_worker_data, free_port, new_stack


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """``redis-server`` on 127.0.0.1 and a free port, nothing saved; stopped by its PID."""
    executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(executable).is_file():
        pytest.skip("redis-server is not installed (.ci/run installs it from Debian)")
    import redis

    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = (directory / "redis.log").open("wb")
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--databases",
            "64",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"redis-server did not start: {directory / 'redis.log'}"
                ) from None
            time.sleep(0.05)
    try:
        yield RedisServer(port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def worker_data(
    tmp_path_factory: pytest.TempPathFactory, tiny_embedder_dir: Path, tiny_reranker_dir: Path
) -> WorkerData:
    """The judgments, catalog subset and index every stack copies."""
    return build_worker_data(
        tmp_path_factory.mktemp("worker-data"), tiny_embedder_dir, tiny_reranker_dir
    )


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(
    redis_server: RedisServer, worker_data: WorkerData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StackFactory]:
    """Build stacks (a seeded home, a fresh Redis database); stops their processes after."""
    stacks: list[Stack] = []

    def make(**settings: str) -> Stack:
        stack = new_stack(redis_server, worker_data, tmp_path_factory.mktemp("stack"), **settings)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop_all()
