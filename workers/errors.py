"""The workers' errors, and which failures are worth a retry.

A task retries only a :class:`TransientJobError`; :func:`transient_errors` turns the
failures that may pass on their own into one (a lost connection, a busy file system, an
OpenSearch cluster that is unreachable or overloaded). Bad input fails at once.
"""

from __future__ import annotations

import errno
import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ranker.errors import ShoprankError

P = ParamSpec("P")
R = TypeVar("R")

BUSY_ERRNOS = frozenset(
    {
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ETXTBSY,
        errno.EMFILE,
        errno.ENFILE,
    }
)
"""``OSError`` numbers of a file system that is busy now rather than wrong."""


class TransientJobError(ShoprankError):
    """A failure that may pass on its own; the task is retried with backoff."""


class BrokerUnavailableError(ShoprankError):
    """The broker or result backend (Redis) cannot be reached."""


class UnknownJobKindError(ShoprankError):
    """A job kind the workers do not run, or parameters it does not take."""


class JobNotFoundError(ShoprankError):
    """No job with that id was submitted (or its record expired)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` may pass on its own: connections, time-outs, a busy file system, an
    unreachable or overloaded OpenSearch. Bad input (a missing file, a bad value) is not."""
    if isinstance(exc, TransientJobError | ConnectionError | TimeoutError):
        return True
    stores = sys.modules.get("indexer.stores.base")
    if stores is not None and isinstance(exc, stores.StoreUnavailableError):
        return True
    if isinstance(exc, OSError) and exc.errno in BUSY_ERRNOS:
        return True
    redis = sys.modules.get("redis.exceptions")
    if redis is not None and isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    kombu = sys.modules.get("kombu.exceptions")
    if kombu is not None and isinstance(exc, kombu.OperationalError):
        return True
    if "opensearchpy" in sys.modules:
        from indexer.stores.opensearch.client import is_unavailable

        return is_unavailable(exc)
    return False


def transient_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Re-raise the transient failures of ``function`` as :class:`TransientJobError`."""

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except TransientJobError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise TransientJobError(f"{type(exc).__name__}: {exc}") from exc
            raise

    return guarded
