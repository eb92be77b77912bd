"""The served reranker's cost model, measured at warm-up, and ``rerank_depth: "auto"``.

At warm-up (start-up, and each hot swap) :func:`measure_cost_model` times the reranker's
``infer`` stage on dummy pairs of a few sizes and fits, by least squares, a linear model of
one call's milliseconds::

    ms = fixed_ms + per_pair_ms * pairs + per_token_ms * pairs * tokens_per_pair

The model travels with the serving snapshot, so a hot-swapped reranker brings its own.
:func:`choose_depth` then picks, for a request with a latency budget, the deepest rerank
depth whose predicted inference, after the time the request has spent and the wait
predicted by the reranker's scheduler queue, still fits the budget. When not even one pair
fits, the depth is 0: the request is answered in retrieval order, unreranked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ranker.batching import Infer
from ranker.stages import PreparedTokens

logger = logging.getLogger(__name__)

WARMUP_PAIRS = (1, 16, 48)
"""Pairs per timed call at warm-up."""
WARMUP_SHORTEST = 16
"""The shorter of the two pair lengths timed (the longer one is the model's max_length)."""
WARMUP_REPEATS = 3
"""Timed calls per size; the fastest counts (the others carry the machine's noise)."""
WARMUP_ID = 101
"""The token id of the dummy pairs (``[CLS]``)."""

TimeCall = Callable[[int, int], float]
"""Seconds one ``infer`` call takes on ``(pairs, tokens_per_pair)``."""


@dataclass(frozen=True, slots=True)
class CostSample:
    """One timed call: its shape and its milliseconds."""

    pairs: int
    tokens_per_pair: int
    ms: float


@dataclass(frozen=True, slots=True)
class RerankCostModel:
    """Predicted milliseconds of one reranker ``infer`` call; every term is at least 0."""

    fixed_ms: float
    per_pair_ms: float
    per_token_ms: float
    samples: int
    """How many timed calls it was fitted on."""

    def predict_ms(self, pairs: int, tokens_per_pair: int) -> float:
        """The predicted milliseconds of scoring ``pairs`` pairs of ``tokens_per_pair``."""
        if pairs <= 0:
            return 0.0
        return (
            self.fixed_ms + self.per_pair_ms * pairs + self.per_token_ms * pairs * tokens_per_pair
        )

    def as_dict(self) -> dict[str, float]:
        """The terms, rounded, for ``/healthz`` and logs."""
        return {
            "fixed_ms": round(self.fixed_ms, 4),
            "per_pair_ms": round(self.per_pair_ms, 5),
            "per_token_ms": round(self.per_token_ms, 6),
            "samples": float(self.samples),
        }


def fit_cost_model(samples: Sequence[CostSample]) -> RerankCostModel:
    """The least-squares fit of ``fixed + per_pair * pairs + per_token * tokens`` to
    ``samples``, with no term below 0.

    A term the unconstrained fit makes negative (timing noise) is dropped and the others are
    fitted again, until every term left is at least 0. Raises ValueError for no samples.
    """
    if not samples:
        raise ValueError("no timings to fit a cost model on")
    pairs = np.asarray([s.pairs for s in samples], dtype=np.float64)
    tokens = pairs * np.asarray([s.tokens_per_pair for s in samples], dtype=np.float64)
    design = np.column_stack([np.ones_like(pairs), pairs, tokens])
    target = np.asarray([s.ms for s in samples], dtype=np.float64)
    kept = [0, 1, 2]
    terms = np.zeros(3)
    while kept:
        solution, *_ = np.linalg.lstsq(design[:, kept], target, rcond=None)
        if (solution >= 0).all():
            terms[kept] = solution
            break
        kept = [column for column, value in zip(kept, solution, strict=True) if value >= 0]
    return RerankCostModel(
        fixed_ms=float(terms[0]),
        per_pair_ms=float(terms[1]),
        per_token_ms=float(terms[2]),
        samples=len(samples),
    )


def warmup_sizes(max_length: int) -> list[tuple[int, int]]:
    """The ``(pairs, tokens_per_pair)`` timed at warm-up: a few pair counts, short and full
    length."""
    lengths = sorted({min(WARMUP_SHORTEST, max_length), max_length})
    return [(pairs, length) for pairs in WARMUP_PAIRS for length in lengths]


def time_samples(
    time_call: TimeCall, sizes: Sequence[tuple[int, int]], *, repeats: int = WARMUP_REPEATS
) -> list[CostSample]:
    """One sample per size: the fastest of ``repeats`` calls of ``time_call``."""
    return [
        CostSample(pairs, length, 1e3 * min(time_call(pairs, length) for _ in range(repeats)))
        for pairs, length in sizes
    ]


def infer_timer(infer: Infer) -> TimeCall:
    """Times ``infer`` (a reranker's stage) on ``pairs`` dummy pairs of ``tokens_per_pair``
    tokens."""

    def time_call(pairs: int, tokens_per_pair: int) -> float:
        row = np.full(tokens_per_pair, WARMUP_ID, dtype=np.int64)
        types = np.zeros(tokens_per_pair, dtype=np.int64)
        prepared = PreparedTokens(ids=(row,) * pairs, type_ids=(types,) * pairs, pad_id=0)
        start = time.perf_counter()
        infer([prepared])
        return time.perf_counter() - start

    return time_call


def measure_cost_model(infer: Infer, *, max_length: int) -> RerankCostModel | None:
    """Time a reranker's ``infer`` stage at :func:`warmup_sizes` (pairs up to
    ``max_length`` tokens) and fit its cost model; None (logged) when it fails to run, so a
    model that cannot be timed still serves (``auto`` then uses the default depth)."""
    start = time.perf_counter()
    try:
        samples = time_samples(infer_timer(infer), warmup_sizes(max_length))
    except Exception:  # a backend's own errors: measuring must never refuse a model
        logger.exception("the reranker's cost model could not be measured")
        return None
    fitted = fit_cost_model(samples)
    logger.info(
        "reranker cost model (measured in %.1f s): %.3f ms + %.4f ms/pair + %.6f ms/token",
        time.perf_counter() - start,
        fitted.fixed_ms,
        fitted.per_pair_ms,
        fitted.per_token_ms,
    )
    return fitted


@dataclass(frozen=True, slots=True)
class DepthChoice:
    """The depth ``auto`` chose and what it predicted for it."""

    depth: int
    predicted_ms: float | None
    """The predicted inference of that depth (0 for depth 0); None without a cost model."""
    available_ms: float | None
    """The budget left after the time spent and the predicted queue wait (None: not
    predicted)."""


def choose_depth(
    cost: RerankCostModel,
    *,
    budget_ms: float,
    spent_ms: float,
    queue_wait_ms: float,
    candidates: int,
    max_depth: int,
    tokens_per_pair: int,
) -> DepthChoice:
    """The deepest depth up to ``min(max_depth, candidates)`` whose predicted inference fits
    what is left of ``budget_ms`` after ``spent_ms`` and ``queue_wait_ms``; 0 when none does.

    The predicted cost grows with the depth, so the deepest fit is found by bisection.
    """
    available = budget_ms - spent_ms - queue_wait_ms
    low, high = 0, max(0, min(max_depth, candidates))
    while low < high:
        middle = (low + high + 1) // 2
        if cost.predict_ms(middle, tokens_per_pair) <= available:
            low = middle
        else:
            high = middle - 1
    return DepthChoice(low, cost.predict_ms(low, tokens_per_pair), available)
