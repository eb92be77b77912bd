"""Request counters and latency sums, exposed in the Prometheus text format."""

from __future__ import annotations

import threading
from collections import defaultdict

REQUESTS_TOTAL = "shoprank_requests_total"
REQUEST_SECONDS_SUM = "shoprank_request_seconds_sum"
STAGE_SECONDS_SUM = "shoprank_stage_seconds_sum"
BATCHED_REQUESTS_TOTAL = "shoprank_batched_requests_total"
BATCH_REQUESTS_SUM = "shoprank_batch_requests_sum"
BATCH_PADDED_TOKENS_SUM = "shoprank_batch_padded_tokens_sum"
QUEUE_TOKENS = "shoprank_queue_tokens"


class Metrics:
    """Thread-safe counters; cheap enough for every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = defaultdict(int)
        self._seconds: dict[str, float] = defaultdict(float)
        self._stages: dict[str, float] = defaultdict(float)
        self._batches: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self._queued: dict[str, int] = {}

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one request and its wall time."""
        with self._lock:
            self._requests[(path, status)] += 1
            self._seconds[path] += seconds

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        """Add per-stage times (tokenize, retrieve, rerank ...) of one request."""
        with self._lock:
            for stage, milliseconds in timings_ms.items():
                self._stages[stage] += milliseconds / 1e3

    def observe_batch(
        self, model: str, *, requests: int, padded_tokens: int, queued_tokens: int
    ) -> None:
        """One request's batch on ``model`` (how many requests and padded tokens it held)
        and the model's queue depth in padded tokens after it."""
        with self._lock:
            counts = self._batches[model]
            counts[0] += 1
            counts[1] += requests
            counts[2] += padded_tokens
            self._queued[model] = queued_tokens

    def render(self) -> str:
        """The Prometheus exposition text."""
        lines = [f"# TYPE {REQUESTS_TOTAL} counter"]
        with self._lock:
            for (path, status), count in sorted(self._requests.items()):
                lines.append(f'{REQUESTS_TOTAL}{{path="{path}",status="{status}"}} {count}')
            lines.append(f"# TYPE {REQUEST_SECONDS_SUM} counter")
            for path, seconds in sorted(self._seconds.items()):
                lines.append(f'{REQUEST_SECONDS_SUM}{{path="{path}"}} {seconds:.6f}')
            lines.append(f"# TYPE {STAGE_SECONDS_SUM} counter")
            for stage, seconds in sorted(self._stages.items()):
                lines.append(f'{STAGE_SECONDS_SUM}{{stage="{stage}"}} {seconds:.6f}')
            for name, kind, column in (
                (BATCHED_REQUESTS_TOTAL, "counter", 0),
                (BATCH_REQUESTS_SUM, "counter", 1),
                (BATCH_PADDED_TOKENS_SUM, "counter", 2),
            ):
                lines.append(f"# TYPE {name} {kind}")
                for model, counts in sorted(self._batches.items()):
                    lines.append(f'{name}{{model="{model}"}} {counts[column]}')
            lines.append(f"# TYPE {QUEUE_TOKENS} gauge")
            for model, tokens in sorted(self._queued.items()):
                lines.append(f'{QUEUE_TOKENS}{{model="{model}"}} {tokens}')
        return "\n".join(lines) + "\n"
