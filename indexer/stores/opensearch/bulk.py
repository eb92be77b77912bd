"""Bulk writes through opensearch-py's ``streaming_bulk``, with a report for every document.

- Requests are cut by document count and by bytes (the helper's chunker).
- 429 rejections are retried by the helper, item by item, with capped exponential backoff.
- 5xx answers and transport failures (connection refused, time-outs) are retried here, for
  the failed items only, with the same backoff, up to ``max_retries`` rounds.
- Nothing is dropped silently: every document ends up in the report as written, as
  not found (deletes), or as a :class:`BulkFailure` with its status and reason; callers fail
  the job with :class:`BulkIndexingError`, which carries them all.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.progress import progress_bar
from indexer.stores.base import StoreError
from indexer.stores.opensearch.client import import_opensearch
from indexer.stores.opensearch.config import OpenSearchConfig

logger = logging.getLogger(__name__)

_FIELD = re.compile(r"field \[([^\]]+)\]|introduction of \[([^\]]+)\]")


@dataclass(frozen=True, slots=True)
class BulkOptions:
    """How bulk requests are cut and retried."""

    max_docs: int = 500
    max_bytes: int = 5 * 2**20
    max_retries: int = 5
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling, capped."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class BulkFailure:
    """One document the cluster did not accept, and why."""

    product_id: str
    op: str
    status: int | str | None
    error_type: str
    reason: str
    field: str | None = None

    def describe(self) -> str:
        """One line: id, operation, status, error type, field and reason."""
        where = f" field [{self.field}]" if self.field else ""
        return (
            f"{self.product_id}: {self.op} failed ({self.status} {self.error_type}){where}: "
            f"{self.reason}"
        )


@dataclass(slots=True)
class BulkReport:
    """The outcome of one bulk run, per document."""

    succeeded: int = 0
    not_found: int = 0
    retried: int = 0
    failures: list[BulkFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every document was written (or, for deletes, was already gone)."""
        return not self.failures

    def merge(self, other: BulkReport) -> None:
        """Add ``other``'s counts and failures to this report."""
        self.succeeded += other.succeeded
        self.not_found += other.not_found
        self.retried += other.retried
        self.failures.extend(other.failures)

    def raise_for_failures(self, what: str) -> None:
        """Raise :class:`BulkIndexingError` naming every failed document, if any failed."""
        if self.failures:
            raise BulkIndexingError(what, self.failures)


class BulkIndexingError(StoreError):
    """Documents the cluster rejected; ``failures`` lists every one with its reason."""

    def __init__(self, what: str, failures: Sequence[BulkFailure]) -> None:
        self.what = what
        self.failures = list(failures)
        lines = "\n".join(f"  {failure.describe()}" for failure in self.failures)
        super().__init__(f"{what}: {len(self.failures)} document(s) rejected:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.failures))


def _retryable(status: object) -> bool:
    """5xx answers and transport failures (no HTTP status) are retried; 4xx are final."""
    return not isinstance(status, int) or status >= 500


def _failure(op: str, info: Mapping[str, Any]) -> BulkFailure:
    error = info.get("error")
    if isinstance(error, Mapping):
        error_type = str(error.get("type", "error"))
        reason = str(error.get("reason", ""))
        caused_by = error.get("caused_by")
        if isinstance(caused_by, Mapping) and caused_by.get("reason"):
            reason = f"{reason} (caused by {caused_by.get('type')}: {caused_by['reason']})"
    else:
        exception = info.get("exception")
        error_type = type(exception).__name__ if exception is not None else "error"
        reason = str(error)
    match = _FIELD.search(reason)
    return BulkFailure(
        product_id=str(info.get("_id")),
        op=op,
        status=info.get("status"),
        error_type=error_type,
        reason=reason,
        field=next((group for group in match.groups() if group), None) if match else None,
    )


def run_bulk(
    client: Any,
    actions: Sequence[Mapping[str, Any]],
    *,
    options: BulkOptions,
    progress: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> BulkReport:
    """Send ``actions`` (helper-style dicts with ``_op_type``, ``_index``, ``_id``).

    Returns the per-document report; it raises only for errors outside the documents
    (a bad client, a programming error), never for rejected documents.
    """
    helpers = import_opensearch().helpers
    report = BulkReport()
    pending = list(actions)
    by_key = {(str(a.get("_op_type", "index")), str(a["_id"])): a for a in pending}
    bar = progress_bar(
        total=len(pending), unit="doc", desc="bulk", disable=not progress, leave=False
    )
    try:
        for attempt in range(options.max_retries + 1):
            retry: list[Mapping[str, Any]] = []
            results = helpers.streaming_bulk(
                client,
                pending,
                chunk_size=options.max_docs,
                max_chunk_bytes=options.max_bytes,
                raise_on_error=False,
                raise_on_exception=False,
                max_retries=options.max_retries,
                initial_backoff=options.initial_backoff_s,
                max_backoff=options.max_backoff_s,
                yield_ok=True,
            )
            for ok, item in results:
                op, info = next(iter(item.items()))
                status = info.get("status")
                if ok:
                    report.succeeded += 1
                elif op == "delete" and status == 404:
                    report.not_found += 1
                elif _retryable(status) and attempt < options.max_retries:
                    retry.append(by_key[(op, str(info.get("_id")))])
                    continue
                else:
                    report.failures.append(_failure(op, info))
                bar.update(1)
            if not retry:
                break
            report.retried += len(retry)
            wait = options.backoff(attempt + 1)
            logger.warning(
                "bulk: %d document(s) failed with 5xx or a transport error; retry %d of %d "
                "in %.1f s",
                len(retry),
                attempt + 1,
                options.max_retries,
                wait,
            )
            sleep(wait)
            pending = retry
    finally:
        bar.close()
    if report.failures:
        logger.error("bulk: %d document(s) rejected", len(report.failures))
    return report


def bulk_options(config: OpenSearchConfig) -> BulkOptions:
    """The bulk options a settings section gives."""
    return BulkOptions(
        max_docs=config.bulk_max_docs,
        max_bytes=config.bulk_max_bytes,
        max_retries=config.bulk_max_retries,
        initial_backoff_s=config.bulk_initial_backoff_s,
        max_backoff_s=config.bulk_max_backoff_s,
    )
