"""Bootstrap confidence intervals of per-query metric means.

Queries are resampled with replacement (Efron and Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13: the percentile interval); the interval is the spread of the
resampled means. It says how much a mean would move on another draw of queries like these,
not how far the system is from any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ranker.evaluation.metrics import NDCG_AT_10, EvalResult

DRAWS = 10_000
CONFIDENCE = 0.95
_CHUNK = 1_000
"""Resamples drawn at once (bounds memory at ``_CHUNK * queries`` indices)."""

Interval = tuple[float, float]


def bootstrap_interval(
    values: Sequence[float],
    *,
    draws: int = DRAWS,
    confidence: float = CONFIDENCE,
    seed: int = 13,
) -> Interval:
    """The percentile interval of the mean of ``values`` over ``draws`` resamples.

    Raises:
        ValueError: ``values`` is empty, ``draws`` < 1, or ``confidence`` not in (0, 1).
    """
    if not values:
        raise ValueError("no values to resample")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    data = np.asarray(values, dtype=np.float64)
    generator = np.random.default_rng(seed)
    means = np.empty(draws, dtype=np.float64)
    for start in range(0, draws, _CHUNK):
        count = min(_CHUNK, draws - start)
        rows = generator.integers(0, len(data), size=(count, len(data)))
        means[start : start + count] = data[rows].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def metric_intervals(
    result: EvalResult, *, draws: int = DRAWS, confidence: float = CONFIDENCE, seed: int = 13
) -> dict[str, Interval]:
    """Metric name -> bootstrap interval of its mean, over the queries that have it."""
    intervals: dict[str, Interval] = {}
    for name in result.means:
        values = [row[name] for row in result.per_query.values() if name in row]
        intervals[name] = bootstrap_interval(values, draws=draws, confidence=confidence, seed=seed)
    return intervals


@dataclass(frozen=True)
class PairedDifference:
    """The mean per-query difference of one metric between two systems, with its interval."""

    mean: float
    interval: Interval
    queries: int
    """Queries both systems have the metric for."""


def paired_difference(
    system: EvalResult,
    baseline: EvalResult,
    *,
    metric: str = NDCG_AT_10,
    draws: int = DRAWS,
    confidence: float = CONFIDENCE,
    seed: int = 13,
) -> PairedDifference:
    """``system`` minus ``baseline`` per query, over the queries both have, and the
    percentile interval of its mean: the way to compare two systems scored on the same
    queries (their own intervals overlap long after the difference is clear).

    Raises:
        ValueError: no query has the metric in both results.
    """

    def values(result: EvalResult) -> dict[str, float]:
        return {qid: row[metric] for qid, row in result.per_query.items() if metric in row}

    try:
        return paired_values_difference(
            values(system), values(baseline), draws=draws, confidence=confidence, seed=seed
        )
    except ValueError:
        raise ValueError(f"no query has {metric} in both results") from None


def paired_values_difference(
    system: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    draws: int = DRAWS,
    confidence: float = CONFIDENCE,
    seed: int = 13,
) -> PairedDifference:
    """``system`` minus ``baseline`` per query id, over the ids both have, with the
    percentile interval of its mean.

    Raises:
        ValueError: no query id is in both.
    """
    differences = [system[qid] - baseline[qid] for qid in system if qid in baseline]
    if not differences:
        raise ValueError("no query is in both")
    interval = bootstrap_interval(differences, draws=draws, confidence=confidence, seed=seed)
    return PairedDifference(float(np.mean(differences)), interval, len(differences))
