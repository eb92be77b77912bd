"""Ranking metrics, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from ranker.evaluation.metrics import (
    CONDENSED_NDCG_AT_10,
    MRR,
    NDCG_AT_10,
    RECALL_AT_100,
    condensed,
    dcg,
    evaluate_run,
    mrr,
    ndcg_at_k,
    ranked_ids,
    recall_at_k,
)

LOG2_3 = math.log2(3)  # 1.5849625...
LOG2_5 = math.log2(5)  # 2.3219281...

# Docs a, b, c, d at ranks 1..4 with gains [1, 0.1, 0, 1]; the ideal order is [1, 1, 0.1, 0].
GAINS = {"a": 1.0, "b": 0.1, "c": 0.0, "d": 1.0}
RANKED = ["a", "b", "c", "d"]


def test_ranked_ids_sorts_by_score_then_doc_id() -> None:
    scores = {"d2": 0.5, "d10": 0.5, "d1": 0.9, "d3": -1.0}
    # d1 first; the 0.5 tie goes to the smaller id as a string ("d10" < "d2"); d3 last.
    assert ranked_ids(scores) == ["d1", "d10", "d2", "d3"]


def test_ranked_ids_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        ranked_ids({"a": math.nan})


def test_dcg_uses_linear_gain_and_log2_discount() -> None:
    # DCG@4 = 1/log2(2) + 0.1/log2(3) + 0/log2(4) + 1/log2(5)
    #       = 1 + 0.1/1.5849625 + 0 + 1/2.3219281
    #       = 1 + 0.0630930 + 0 + 0.4306766 = 1.4937696
    assert dcg(RANKED, GAINS, k=4) == pytest.approx(1 + 0.1 / LOG2_3 + 1 / LOG2_5)
    assert dcg(RANKED, GAINS, k=4) == pytest.approx(1.4937696, abs=1e-7)


def test_ndcg_hand_computed() -> None:
    # IDCG@4 = 1/log2(2) + 1/log2(3) + 0.1/log2(4) + 0/log2(5)
    #        = 1 + 0.6309298 + 0.05 + 0 = 1.6809298
    # NDCG@4 = 1.4937696 / 1.6809298 = 0.8886567
    ideal = 1 + 1 / LOG2_3 + 0.1 / 2
    assert ndcg_at_k(RANKED, GAINS, k=4) == pytest.approx((1 + 0.1 / LOG2_3 + 1 / LOG2_5) / ideal)
    assert ndcg_at_k(RANKED, GAINS, k=4) == pytest.approx(0.8886567, abs=1e-7)


def test_ndcg_cutoff_and_ideal_from_all_judged() -> None:
    # k=2: DCG = 1 + 0.1/log2(3) = 1.0630930; IDCG = 1 + 1/log2(3) = 1.6309298
    # NDCG@2 = 1.0630930 / 1.6309298 = 0.6518325
    assert ndcg_at_k(RANKED, GAINS, k=2) == pytest.approx(0.6518325, abs=1e-7)
    # Only "b" retrieved; the ideal still counts both unretrieved 1.0 docs:
    # DCG = 0.1; IDCG@10 = 1.6809298 (as above); NDCG = 0.1 / 1.6809298 = 0.0594909
    assert ndcg_at_k(["b"], GAINS, k=10) == pytest.approx(0.0594909, abs=1e-7)


def test_ndcg_k_larger_than_list() -> None:
    # k=100 over four docs equals k=4: no doc beyond rank 4 on either side.
    assert ndcg_at_k(RANKED, GAINS, k=100) == pytest.approx(ndcg_at_k(RANKED, GAINS, k=4))


def test_ndcg_perfect_order_is_one() -> None:
    assert ndcg_at_k(["a", "d", "b", "c"], GAINS, k=10) == pytest.approx(1.0)


def test_ndcg_ties_use_ranked_ids_order() -> None:
    # Equal scores: ranked_ids puts "x" before "y", so the 1.0 doc is at rank 2.
    # DCG = 0/1 + 1/log2(3) = 0.6309298; IDCG = 1; NDCG = 0.6309298
    gains = {"x": 0.0, "y": 1.0}
    ranked = ranked_ids({"y": 0.7, "x": 0.7})
    assert ranked == ["x", "y"]
    assert ndcg_at_k(ranked, gains, k=10) == pytest.approx(1 / LOG2_3)


def test_ndcg_all_zero_gains_is_zero() -> None:
    assert ndcg_at_k(["a", "b"], {"a": 0.0, "b": 0.0}, k=10) == 0.0
    assert ndcg_at_k(["a"], {}, k=10) == 0.0


def test_ndcg_unjudged_docs_count_as_zero() -> None:
    # "u1" and "u2" are unjudged: gains [0, 0, 1] at ranks 1..3.
    # DCG = 1/log2(4) = 0.5; IDCG = 1; NDCG = 0.5
    assert ndcg_at_k(["u1", "u2", "a"], {"a": 1.0}, k=10) == pytest.approx(0.5)


def test_ndcg_esci_gains() -> None:
    # ESCI gains S=0.1, C=0.01, E=1.0 at ranks 1..3:
    # DCG = 0.1 + 0.01/log2(3) + 1/log2(4) = 0.1 + 0.0063093 + 0.5 = 0.6063093
    # IDCG = 1 + 0.1/log2(3) + 0.01/2 = 1 + 0.0630930 + 0.005 = 1.0680930
    # NDCG = 0.6063093 / 1.0680930 = 0.5676559
    gains = {"s": 0.1, "c": 0.01, "e": 1.0}
    assert ndcg_at_k(["s", "c", "e"], gains, k=10) == pytest.approx(0.5676559, abs=1e-7)


@pytest.mark.parametrize("k", [0, -1])
def test_bad_cutoff_raises(k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(RANKED, GAINS, k=k)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(RANKED, GAINS, k=k)


def test_repeated_doc_raises() -> None:
    with pytest.raises(ValueError, match="repeats"):
        ndcg_at_k(["a", "a"], GAINS, k=10)


def test_recall_counts_gain_above_threshold() -> None:
    # Relevant (gain > 0): a, b, d. Top 2 = a, b -> 2/3. Top 4 -> 3/3.
    assert recall_at_k(RANKED, GAINS, k=2) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, GAINS, k=4) == pytest.approx(1.0)
    # Relevant (gain > 0.5): a, d. Top 2 holds only a -> 1/2.
    assert recall_at_k(RANKED, GAINS, k=2, relevant_min_gain=0.5) == pytest.approx(0.5)


def test_recall_none_without_relevant_docs() -> None:
    assert recall_at_k(["a"], {"a": 0.0}, k=10) is None


def test_mrr() -> None:
    # First relevant (gain > 0) is "a" at rank 1.
    assert mrr(RANKED, GAINS) == 1.0
    # c (0), b (0.1): first relevant at rank 2 -> 0.5.
    assert mrr(["c", "b"], GAINS) == 0.5
    # With gain > 0.5 relevant, b is not: c, b, d -> d at rank 3.
    assert mrr(["c", "b", "d"], GAINS, relevant_min_gain=0.5) == pytest.approx(1 / 3)
    # No relevant doc ranked -> 0; no relevant doc judged -> None.
    assert mrr(["c", "zz"], GAINS) == 0.0
    assert mrr(["a"], {"a": 0.0}) is None


def test_evaluate_run_means_and_missing_queries() -> None:
    qrels = {
        "q1": {"a": 1.0, "b": 0.0},
        "q2": {"c": 1.0},
        "q3": {"d": 0.0},  # nothing relevant: NDCG 0, no recall or MRR
    }
    run = {
        "q1": {"b": 0.9, "a": 0.1},  # 1.0 doc at rank 2: NDCG = 1/log2(3), MRR 0.5
        # q2 missing: scores 0 on everything and counts
        "q3": {"d": 1.0},
        "q9": {"x": 1.0},  # not judged: ignored
    }
    result = evaluate_run(run, qrels)
    assert result.num_queries == 3
    assert result.missing == ("q2",)
    assert result.primary_metric == NDCG_AT_10
    assert result.per_query["q1"] == {
        NDCG_AT_10: pytest.approx(1 / LOG2_3),
        CONDENSED_NDCG_AT_10: pytest.approx(1 / LOG2_3),
        RECALL_AT_100: 1.0,
        MRR: 0.5,
    }
    assert result.per_query["q2"] == {
        NDCG_AT_10: 0.0,
        CONDENSED_NDCG_AT_10: 0.0,
        RECALL_AT_100: 0.0,
        MRR: 0.0,
    }
    assert result.per_query["q3"] == {NDCG_AT_10: 0.0, CONDENSED_NDCG_AT_10: 0.0}
    # NDCG over 3 queries: (0.6309298 + 0 + 0) / 3; recall and MRR over q1, q2 only.
    assert result.means[NDCG_AT_10] == pytest.approx((1 / LOG2_3) / 3)
    assert result.means[RECALL_AT_100] == pytest.approx(0.5)
    assert result.means[MRR] == pytest.approx(0.25)
    assert result.counts == {NDCG_AT_10: 3, CONDENSED_NDCG_AT_10: 3, RECALL_AT_100: 2, MRR: 2}
    assert result.primary == result.means[NDCG_AT_10]


def test_evaluate_run_custom_cutoffs_name_metrics() -> None:
    result = evaluate_run({"q": {"a": 1.0}}, {"q": {"a": 1.0}}, k_ndcg=5, k_recall=20)
    assert set(result.means) == {"ndcg@5", "condensed ndcg@5", "recall@20", MRR}
    assert result.primary_metric == "ndcg@5"


def test_evaluate_run_rejects_empty_qrels_and_bad_cutoffs() -> None:
    with pytest.raises(ValueError, match="empty"):
        evaluate_run({}, {})
    with pytest.raises(ValueError, match="cutoffs"):
        evaluate_run({}, {"q": {"a": 1.0}}, k_ndcg=0)


def test_condensed_drops_unjudged_docs_and_keeps_the_order() -> None:
    assert condensed(["x", "a", "y", "c", "b"], {"a": 1.0, "b": 0.0, "c": 0.1}) == ["a", "c", "b"]


def test_full_and_condensed_ndcg_part_on_unjudged_docs() -> None:
    # Pooled judgments: "a" (gain 2) and "b" (gain 1) judged; the run ranks two unjudged
    # products above them. Full NDCG counts x and y as 0 (a, b at ranks 3, 4); condensed
    # NDCG ranks a, b alone (ranks 1, 2: the ideal order).
    qrels = {"q": {"a": 2.0, "b": 1.0}}
    run = {"q": {"x": 4.0, "y": 3.0, "a": 2.0, "b": 1.0}}
    result = evaluate_run(run, qrels)
    ideal = 2.0 + 1.0 / LOG2_3
    assert result.means[NDCG_AT_10] == pytest.approx((2.0 / 2.0 + 1.0 / LOG2_5) / ideal)
    assert result.means[CONDENSED_NDCG_AT_10] == pytest.approx(1.0)


def test_condensed_ndcg_still_sees_a_bad_judged_order() -> None:
    # Condensed: [b, a], so a (gain 2) at rank 2 over the ideal 2 at rank 1. Full: a at 3.
    qrels = {"q": {"a": 2.0, "b": 0.0}}
    run = {"q": {"x": 3.0, "b": 2.0, "a": 1.0}}
    result = evaluate_run(run, qrels)
    assert result.means[CONDENSED_NDCG_AT_10] == pytest.approx((2.0 / LOG2_3) / 2.0)
    assert result.means[NDCG_AT_10] == pytest.approx((2.0 / 2.0) / 2.0)


def test_recall_at_least_a_gain_threshold() -> None:
    # Home Depot: relevance 2.33 - 1 may come out just below 1.33 in floating point; it counts.
    # At least 1.33: a and c (c is not retrieved), so recall 1/2.
    gains = {"a": 2.33 - 1.0, "b": 1.0, "c": 2.0, "d": 0.0}
    ranked = ["b", "a", "d", "x"]
    assert recall_at_k(ranked, gains, k=100, relevant_at_least=1.33) == pytest.approx(0.5)
    assert recall_at_k(ranked, gains, k=100) == pytest.approx(2 / 3)  # a, b of a, b, c
    assert mrr(ranked, gains, relevant_at_least=1.33) == pytest.approx(0.5)
    result = evaluate_run({"q": dict.fromkeys(ranked, 1.0)}, {"q": gains}, relevant_at_least=1.33)
    assert result.means[RECALL_AT_100] == pytest.approx(0.5)
    # A query with nothing at or above the threshold has no recall.
    none = evaluate_run({"q": {"b": 1.0}}, {"q": {"b": 1.0}}, relevant_at_least=1.33)
    assert RECALL_AT_100 not in none.means
