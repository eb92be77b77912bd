"""The reranker's cost model and the depth ``rerank_depth: "auto"`` chooses, on injected
timings (no clock, no model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ranker.api.rerank_budget import (
    WARMUP_PAIRS,
    CostSample,
    RerankCostModel,
    choose_depth,
    fit_cost_model,
    infer_timer,
    measure_cost_model,
    time_samples,
    warmup_sizes,
)
from ranker.stages import PreparedTokens


def exact_samples(fixed: float, per_pair: float, per_token: float) -> list[CostSample]:
    """Noise-free timings of the warm-up sizes for a model with these terms."""
    return [
        CostSample(pairs, length, fixed + per_pair * pairs + per_token * pairs * length)
        for pairs, length in warmup_sizes(96)
    ]


def test_the_fit_recovers_the_terms_of_exact_timings() -> None:
    fitted = fit_cost_model(exact_samples(2.0, 0.05, 0.004))

    assert fitted.fixed_ms == pytest.approx(2.0)
    assert fitted.per_pair_ms == pytest.approx(0.05)
    assert fitted.per_token_ms == pytest.approx(0.004)
    assert fitted.samples == len(warmup_sizes(96))
    assert fitted.predict_ms(50, 96) == pytest.approx(2.0 + 0.05 * 50 + 0.004 * 50 * 96)


def test_a_term_noise_makes_negative_is_dropped_and_the_rest_refitted() -> None:
    # No fixed cost and a little noise: the free fit's intercept goes below 0.
    samples = exact_samples(0.0, 0.0, 0.01)
    noisy = [
        CostSample(s.pairs, s.tokens_per_pair, s.ms + (-0.3 if s.pairs == 1 else 0.3))
        for s in samples
    ]
    free, *_ = np.linalg.lstsq(
        np.array([[1, s.pairs, s.pairs * s.tokens_per_pair] for s in noisy], dtype=float),
        np.array([s.ms for s in noisy]),
        rcond=None,
    )
    assert free.min() < 0  # the case under test

    fitted = fit_cost_model(noisy)

    assert min(fitted.fixed_ms, fitted.per_pair_ms, fitted.per_token_ms) >= 0
    assert fitted.per_token_ms == pytest.approx(0.01, rel=0.1)


def test_no_samples_cannot_be_fitted() -> None:
    with pytest.raises(ValueError, match="no timings"):
        fit_cost_model([])


def test_no_pairs_cost_nothing() -> None:
    assert RerankCostModel(5.0, 1.0, 0.1, samples=6).predict_ms(0, 96) == 0.0


def test_warmup_times_short_and_full_length_pairs() -> None:
    assert warmup_sizes(96) == [(pairs, length) for pairs in WARMUP_PAIRS for length in (16, 96)]
    assert warmup_sizes(12) == [(pairs, 12) for pairs in WARMUP_PAIRS]


def test_each_size_keeps_its_fastest_call() -> None:
    calls: list[tuple[int, int]] = []
    seconds = iter([0.030, 0.010, 0.020, 0.005, 0.007, 0.006])

    def timer(pairs: int, length: int) -> float:
        calls.append((pairs, length))
        return next(seconds)

    samples = time_samples(timer, [(1, 16), (8, 96)], repeats=3)

    assert calls == [(1, 16)] * 3 + [(8, 96)] * 3
    assert samples == [
        CostSample(1, 16, pytest.approx(10.0)),
        CostSample(8, 96, pytest.approx(5.0)),
    ]


def test_the_timer_runs_infer_on_pairs_of_the_asked_shape() -> None:
    shapes: list[tuple[int, int]] = []

    def infer(inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        shapes.extend(tokens.padded_shape for tokens in inputs)
        return [np.zeros(tokens.rows, dtype=np.float32) for tokens in inputs]

    elapsed = infer_timer(infer)(7, 33)

    assert shapes == [(7, 33)]
    assert elapsed >= 0


def test_measuring_fits_every_warmup_size_and_survives_a_failing_model() -> None:
    seen: list[tuple[int, int]] = []

    def infer(inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        seen.extend(tokens.padded_shape for tokens in inputs)
        return [np.zeros(tokens.rows, dtype=np.float32) for tokens in inputs]

    def broken(inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        raise RuntimeError("out of memory")

    measured = measure_cost_model(infer, max_length=64)

    assert measured is not None
    assert measured.samples == len(warmup_sizes(64))
    assert set(seen) == set(warmup_sizes(64))
    assert measure_cost_model(broken, max_length=64) is None


# ----------------------------------------------------------------------------- choose_depth

COST = RerankCostModel(fixed_ms=5.0, per_pair_ms=1.0, per_token_ms=0.0, samples=6)
"""5 ms a call plus 1 ms a pair: depth d costs 5 + d ms."""


def choose(
    *,
    budget_ms: float,
    spent_ms: float = 0.0,
    queue_wait_ms: float = 0.0,
    candidates: int = 100,
    max_depth: int = 100,
) -> int:
    return choose_depth(
        COST,
        budget_ms=budget_ms,
        spent_ms=spent_ms,
        queue_wait_ms=queue_wait_ms,
        candidates=candidates,
        max_depth=max_depth,
        tokens_per_pair=96,
    ).depth


def test_the_deepest_depth_that_fits_is_chosen() -> None:
    assert choose(budget_ms=45.0) == 40
    assert choose(budget_ms=44.9) == 39
    assert choose(budget_ms=6.0) == 1


def test_time_spent_and_the_queue_wait_come_off_the_budget() -> None:
    assert choose(budget_ms=45.0, spent_ms=10.0) == 30
    assert choose(budget_ms=45.0, spent_ms=10.0, queue_wait_ms=20.0) == 10


def test_the_depth_is_capped_by_the_candidates_and_the_maximum() -> None:
    assert choose(budget_ms=1e6, candidates=37) == 37
    assert choose(budget_ms=1e6, max_depth=20) == 20
    assert choose(budget_ms=1e6, candidates=0) == 0


def test_a_budget_too_small_for_one_pair_reranks_nothing() -> None:
    choice = choose_depth(
        COST,
        budget_ms=5.5,
        spent_ms=0.0,
        queue_wait_ms=0.0,
        candidates=50,
        max_depth=50,
        tokens_per_pair=96,
    )

    assert choice.depth == 0
    assert choice.predicted_ms == 0.0
    assert choice.available_ms == pytest.approx(5.5)
    assert choose(budget_ms=100.0, spent_ms=120.0) == 0
