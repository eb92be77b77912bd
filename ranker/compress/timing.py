"""Wall-time percentiles of repeated calls, for benchmarks and the compression report."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall times of repeated calls, in milliseconds."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int


def time_calls(fn: Callable[[int], object], *, repeats: int, warmup: int = 2) -> Timing:
    """Call ``fn(i)`` ``warmup`` times untimed, then ``repeats`` times timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(1e3 * (time.perf_counter() - start))
    times.sort()
    p99_index = min(len(times) - 1, round(0.99 * (len(times) - 1)))
    return Timing(
        p50_ms=statistics.median(times),
        p99_ms=times[p99_index],
        mean_ms=statistics.fmean(times),
        calls=repeats,
    )
