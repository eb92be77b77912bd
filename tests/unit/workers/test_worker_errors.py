"""Only failures that may pass on their own are retried."""

from __future__ import annotations

import errno

import pytest

from indexer.stores.base import StoreError, StoreUnavailableError
from ranker.registry import VersionNotFoundError
from workers.errors import TransientJobError, is_transient, transient_errors


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError("refused"),
        TimeoutError("slow"),
        OSError(errno.EBUSY, "Device or resource busy"),
        OSError(errno.ESTALE, "Stale file handle"),
        StoreUnavailableError("OpenSearch at http://x:9200 is unreachable"),
        TransientJobError("lock held"),
    ],
)
def test_transient_failures(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError(errno.ENOENT, "No such file", "judgments.csv"),
        PermissionError(errno.EACCES, "Permission denied"),
        OSError(errno.ENOSPC, "No space left on device"),
        ValueError("the catalog has no products"),
        StoreError("index built with another model"),
        VersionNotFoundError("no reranker version 'v9'"),
    ],
)
def test_bad_input_is_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_redis_and_opensearch_connection_errors_are_transient() -> None:
    import redis.exceptions

    assert is_transient(redis.exceptions.ConnectionError("Error 111 connecting"))
    opensearchpy = pytest.importorskip("opensearchpy")
    assert is_transient(opensearchpy.ConnectionError("N/A", "refused", Exception()))
    assert not is_transient(opensearchpy.TransportError(400, "mapper_parsing_exception", {}))


def test_the_guard_turns_transient_failures_into_retryable_ones() -> None:
    @transient_errors
    def busy() -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    @transient_errors
    def wrong() -> None:
        raise ValueError("bad judgments")

    with pytest.raises(TransientJobError, match=r"OSError: .*busy") as caught:
        busy()
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(ValueError, match="bad judgments"):
        wrong()
