"""The Redis locks that keep two workers from building one thing, against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from workerstack import RedisServer

from workers.locks import LOCK_PREFIX, exclusive

pytestmark = pytest.mark.workers


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    import redis

    connection = redis.Redis.from_url(redis_server.url(63))
    connection.flushdb()
    yield connection
    connection.flushdb()


def test_one_holder_at_a_time_and_released_on_error(client: Any) -> None:
    def job() -> None:
        with exclusive(client, "k", timeout_s=5) as held:
            assert held
            with exclusive(client, "k", timeout_s=5) as other:
                assert not other
            raise RuntimeError("job failed")

    with pytest.raises(RuntimeError, match="job failed"):
        job()
    assert client.exists(LOCK_PREFIX + "k") == 0
    with exclusive(client, "k", timeout_s=5) as again:
        assert again


def test_a_live_holder_keeps_its_lock_past_the_timeout(client: Any) -> None:
    with exclusive(client, "long", timeout_s=0.6) as held:
        assert held
        time.sleep(1.5)
        assert client.pttl(LOCK_PREFIX + "long") > 0
        with exclusive(client, "long", timeout_s=0.6) as other:
            assert not other


def test_a_dead_holder_s_lock_lapses_and_a_waiter_takes_it(client: Any) -> None:
    dead = client.lock(LOCK_PREFIX + "dead", timeout=1.0)  # taken, never renewed
    assert dead.acquire(blocking=False)
    started = time.monotonic()
    with exclusive(client, "dead", timeout_s=1.0, wait_s=5) as held:
        assert held
    assert 0.5 < time.monotonic() - started < 4
