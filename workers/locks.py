"""Redis locks that keep two workers from building the same thing, and the Redis client.

A lock has a short timeout and a thread that renews it while its holder works, so a long
job keeps it and a worker that dies (SIGKILL) loses it within ``timeout_s``. It is released
in ``finally``, whatever the job raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ranker.settings import Settings

if TYPE_CHECKING:
    import redis
    from redis.lock import Lock

logger = logging.getLogger(__name__)

LOCK_PREFIX = "shoprank:lock:"
CONNECT_TIMEOUT_S = 2.0


def redis_client(settings: Settings) -> redis.Redis:
    """A client for the broker's Redis (the workers' locks and job records live there)."""
    import redis

    return redis.Redis.from_url(
        settings.workers.broker_url.get_secret_value(),
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=10.0,
        health_check_interval=30,
    )


def _renew(lock: Lock, stop: threading.Event, every_s: float) -> None:
    """Reset the lock's time to live every ``every_s`` until ``stop``; log if it was lost."""
    from redis.exceptions import LockError, RedisError

    while not stop.wait(every_s):
        try:
            lock.reacquire()
        except LockError:
            logger.warning("lost lock %s: it lapsed before it was renewed", lock.name)
            return
        except RedisError as exc:
            logger.warning("could not renew lock %s (will retry): %s", lock.name, exc)


@contextlib.contextmanager
def exclusive(
    client: redis.Redis, name: str, *, timeout_s: float, wait_s: float = 0.0
) -> Iterator[bool]:
    """Hold the lock ``shoprank:lock:<name>`` for the block; yields whether it was taken.

    ``wait_s``: how long to wait for another holder to finish (0: not at all). The lock is
    renewed every third of ``timeout_s`` while the block runs and released when it ends.
    """
    from redis.exceptions import LockError

    lock = client.lock(
        LOCK_PREFIX + name,
        timeout=timeout_s,
        blocking=wait_s > 0,
        blocking_timeout=wait_s if wait_s > 0 else None,
        thread_local=False,
    )
    if not lock.acquire():
        yield False
        return
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(lock, stop, timeout_s / 3), name=f"renew {name}", daemon=True
    )
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(LockError):
            lock.release()
