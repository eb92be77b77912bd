"""Bootstrap intervals of per-query means."""

from __future__ import annotations

import numpy as np
import pytest

from ranker.evaluation.bootstrap import bootstrap_interval, metric_intervals, paired_difference
from ranker.evaluation.metrics import NDCG_AT_10, RECALL_AT_100, evaluate_run


def test_constant_values_have_a_point_interval() -> None:
    assert bootstrap_interval([0.4] * 50, draws=200) == pytest.approx((0.4, 0.4))


def test_interval_covers_the_mean_and_matches_the_standard_error() -> None:
    values = np.random.default_rng(0).random(400).tolist()
    low, high = bootstrap_interval(values, draws=4000, seed=1)
    mean = float(np.mean(values))
    assert low < mean < high
    # For a mean of n draws the 95 % interval is about +-1.96 standard errors.
    half_width = 1.96 * float(np.std(values)) / np.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)


def test_more_queries_narrow_the_interval() -> None:
    generator = np.random.default_rng(2)
    few = generator.random(25).tolist()
    many = generator.random(2500).tolist()
    few_low, few_high = bootstrap_interval(few, draws=2000)
    many_low, many_high = bootstrap_interval(many, draws=2000)
    assert many_high - many_low < (few_high - few_low) / 5


def test_same_seed_same_interval() -> None:
    values = [0.1, 0.9, 0.5, 0.3, 0.7]
    assert bootstrap_interval(values, seed=5) == bootstrap_interval(values, seed=5)


@pytest.mark.parametrize(
    ("values", "options", "message"),
    [([], {}, "no values"), ([1.0], {"draws": 0}, "draws"), ([1.0], {"confidence": 1.0}, "conf")],
)
def test_bad_input(values: list[float], options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_interval(values, **options)  # type: ignore[arg-type]


def test_metric_intervals_use_only_queries_that_have_the_metric() -> None:
    qrels = {"q1": {"a": 1.0}, "q2": {"b": 1.0}, "q3": {"c": 0.0}}
    run = {"q1": {"a": 1.0}, "q2": {"x": 1.0}, "q3": {"c": 1.0}}
    result = evaluate_run(run, qrels)
    intervals = metric_intervals(result, draws=500)
    assert set(intervals) == set(result.means)
    # Recall over q1 (1.0) and q2 (0.0) only: resampled means lie in [0, 1].
    low, high = intervals[RECALL_AT_100]
    assert 0.0 <= low <= result.means[RECALL_AT_100] <= high <= 1.0
    assert intervals[NDCG_AT_10][0] <= result.means[NDCG_AT_10] <= intervals[NDCG_AT_10][1]


def test_paired_difference_is_narrower_than_either_systems_own_interval() -> None:
    # Two systems that differ by a small, steady amount on queries of very different
    # difficulty: their own intervals overlap, the paired one excludes 0.
    qrels = {f"q{i}": {"a": 1.0, "b": 0.5} for i in range(200)}
    difficulty = np.random.default_rng(3).random(200)
    better = {
        f"q{i}": {"a": 1.0, "b": 0.9} if d > 0.5 else {"x": 1.0} for i, d in enumerate(difficulty)
    }
    worse = {
        f"q{i}": {"b": 1.0, "a": 0.9} if d > 0.5 else {"x": 1.0} for i, d in enumerate(difficulty)
    }
    system, baseline = evaluate_run(better, qrels), evaluate_run(worse, qrels)

    difference = paired_difference(system, baseline, draws=2000)

    assert difference.queries == 200
    assert difference.mean == pytest.approx(system.means[NDCG_AT_10] - baseline.means[NDCG_AT_10])
    assert 0.0 < difference.interval[0] <= difference.mean <= difference.interval[1]
    own_low, _ = metric_intervals(system, draws=2000)[NDCG_AT_10]
    _, base_high = metric_intervals(baseline, draws=2000)[NDCG_AT_10]
    assert own_low < base_high


def test_paired_difference_uses_the_queries_both_have() -> None:
    qrels = {"q1": {"a": 1.0}, "q2": {"a": 1.0}}
    system = evaluate_run({"q1": {"a": 1.0}, "q2": {"a": 1.0}}, qrels)
    baseline = evaluate_run({"q1": {"x": 1.0}}, {"q1": {"a": 1.0}})
    difference = paired_difference(system, baseline, draws=100)
    assert difference.queries == 1
    assert difference.mean == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no query"):
        paired_difference(system, evaluate_run({}, {"q3": {"a": 1.0}}), draws=100)
