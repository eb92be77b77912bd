"""Ranking metrics over the BEIR/Pyserini results contract ``{qid: {doc_id: score}}``.

Conventions (see ``shared/data/esci-subset/README.md``):

- A ranking is scores sorted descending, ties broken by doc id ascending (:func:`ranked_ids`),
  the same order the TREC writer uses.
- NDCG uses the gain itself (ESCI: E 1.0, S 0.1, C 0.01, I 0.0), not ``2**gain - 1``, with a
  ``log2(rank + 1)`` discount. Unjudged documents have gain 0.
- Recall and MRR call a document relevant when its gain is strictly greater than
  ``relevant_min_gain`` (default 0, so for ESCI: E, S and C), or, when
  ``relevant_at_least`` is given, when its gain is at least that (Home Depot: 1.33, i.e.
  relevance >= 2.33). A query with no relevant judged document has no recall or MRR and is
  left out of those means.
- Condensed NDCG (Sakai 2007, "Alternatives to Bpref") drops the unjudged documents from
  the ranking before computing NDCG, so it measures the order of the judged documents only;
  with sparse, pooled judgments it separates "ranks judged products well" from "retrieves
  products nobody judged".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

logger = logging.getLogger(__name__)

Run: TypeAlias = dict[str, dict[str, float]]
"""qid -> doc_id -> score (higher is better)."""
Qrels: TypeAlias = dict[str, dict[str, float]]
"""qid -> doc_id -> gain (judged documents only)."""

NDCG_AT_10 = "ndcg@10"
CONDENSED_NDCG_AT_10 = "condensed ndcg@10"
RECALL_AT_100 = "recall@100"
MRR = "mrr"

GAIN_TOLERANCE = 1e-9
"""Slack on ``relevant_at_least``: a grade of 2.33 minus a base of 1 is 1.3299999999999998."""


def ndcg_key(k: int) -> str:
    """The metric name of NDCG at ``k``: ``"ndcg@10"``."""
    return f"ndcg@{k}"


def condensed_ndcg_key(k: int) -> str:
    """The metric name of condensed NDCG at ``k``: ``"condensed ndcg@10"``."""
    return f"condensed {ndcg_key(k)}"


def recall_key(k: int) -> str:
    """The metric name of recall at ``k``: ``"recall@100"``."""
    return f"recall@{k}"


def ranked_ids(scores: Mapping[str, float]) -> list[str]:
    """Doc ids by score descending, then doc id ascending.

    Raises:
        ValueError: a score is NaN (it has no place in an order).
    """
    for doc_id, score in scores.items():
        if math.isnan(score):
            raise ValueError(f"score of {doc_id!r} is NaN")
    return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))


def dcg(ranked: Sequence[str], gains: Mapping[str, float], *, k: int) -> float:
    """Discounted cumulative gain of the top ``k``: sum of ``gain / log2(rank + 1)``.

    The gain is used directly (ESCI convention), not ``2**gain - 1``; unjudged docs score 0.

    Raises:
        ValueError: ``k`` < 1, or a doc id repeats within the top ``k``.
    """
    top = _top(ranked, k)
    return _discounted_sum([gains.get(doc_id, 0.0) for doc_id in top])


def ndcg_at_k(ranked: Sequence[str], gains: Mapping[str, float], *, k: int) -> float:
    """NDCG at ``k``: :func:`dcg` over the DCG of the ideal order of all judged gains.

    Linear gain and ``log2(rank + 1)`` discount, as in the ESCI paper. The ideal ranking
    sorts every judged gain of the query (non-negative gains assumed), whether or not the doc
    was retrieved. A query whose judged gains are all 0 scores 0.0.

    Raises:
        ValueError: ``k`` < 1, or a doc id repeats within the top ``k``.
    """
    actual = dcg(ranked, gains, k=k)
    ideal = _discounted_sum(sorted(gains.values(), reverse=True)[:k])
    if ideal <= 0.0:
        return 0.0
    return actual / ideal


def condensed(ranked: Sequence[str], gains: Mapping[str, float]) -> list[str]:
    """The ranking with its unjudged documents dropped (judged order kept)."""
    return [doc_id for doc_id in ranked if doc_id in gains]


def recall_at_k(
    ranked: Sequence[str],
    gains: Mapping[str, float],
    *,
    k: int,
    relevant_min_gain: float = 0.0,
    relevant_at_least: float | None = None,
) -> float | None:
    """Share of the relevant judged docs found in the top ``k``.

    Relevant means gain > ``relevant_min_gain`` (strictly; default 0, so ESCI E, S and C),
    or gain >= ``relevant_at_least`` when that is given.

    Returns:
        The recall, or None when the query has no relevant judged doc.

    Raises:
        ValueError: ``k`` < 1, or a doc id repeats within the top ``k``.
    """
    relevant = _relevant(gains, relevant_min_gain, relevant_at_least)
    top = _top(ranked, k)
    if not relevant:
        return None
    return sum(1 for doc_id in top if doc_id in relevant) / len(relevant)


def mrr(
    ranked: Sequence[str],
    gains: Mapping[str, float],
    *,
    relevant_min_gain: float = 0.0,
    relevant_at_least: float | None = None,
) -> float | None:
    """Reciprocal rank of the first relevant doc in the whole ranking; 0.0 if none is ranked.

    Relevant as for :func:`recall_at_k`.

    Returns:
        The reciprocal rank, or None when the query has no relevant judged doc.
    """
    relevant = _relevant(gains, relevant_min_gain, relevant_at_least)
    if not relevant:
        return None
    for rank, doc_id in enumerate(ranked, start=1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True)
class EvalResult:
    """Per-query metric values and their means over the judged queries."""

    means: dict[str, float]
    """Metric name -> mean over the queries that have the metric (see ``counts``)."""
    per_query: dict[str, dict[str, float]]
    """qid -> metric name -> value; recall and MRR are absent for queries with none relevant."""
    num_queries: int
    """Judged queries scored (those missing from the run included, at 0)."""
    primary_metric: str = NDCG_AT_10
    counts: dict[str, int] = field(default_factory=dict)
    """Metric name -> number of queries in its mean."""
    missing: tuple[str, ...] = ()
    """Judged qids the run has no results for."""

    @property
    def primary(self) -> float:
        """The mean of the primary metric."""
        return self.means[self.primary_metric]


def evaluate_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, float]],
    *,
    k_ndcg: int = 10,
    k_recall: int = 100,
    relevant_min_gain: float = 0.0,
    relevant_at_least: float | None = None,
) -> EvalResult:
    """Score a run against judgments: NDCG@k_ndcg (full: unjudged docs count 0), condensed
    NDCG@k_ndcg (unjudged docs dropped first), Recall@k_recall and MRR (relevant: see
    :func:`recall_at_k`).

    Only queries in ``qrels`` are scored; run queries without judgments are ignored. A judged
    query missing from the run scores 0 on every metric it has and counts in the means. A
    metric that no query has (recall when nothing is relevant) is left out of ``means``.

    Raises:
        ValueError: ``qrels`` is empty, a cutoff is < 1, or a run score is NaN.
    """
    if not qrels:
        raise ValueError("qrels is empty: nothing to evaluate")
    if k_ndcg < 1 or k_recall < 1:
        raise ValueError(f"cutoffs must be >= 1, got k_ndcg={k_ndcg}, k_recall={k_recall}")
    ndcg_name, recall_name = ndcg_key(k_ndcg), recall_key(k_recall)
    condensed_name = condensed_ndcg_key(k_ndcg)
    per_query: dict[str, dict[str, float]] = {}
    missing: list[str] = []
    for qid, gains in qrels.items():
        scores = run.get(qid)
        if scores is None:
            missing.append(qid)
        ranked = ranked_ids(scores) if scores else []
        values = {
            ndcg_name: ndcg_at_k(ranked, gains, k=k_ndcg),
            condensed_name: ndcg_at_k(condensed(ranked, gains), gains, k=k_ndcg),
        }
        recall = recall_at_k(
            ranked,
            gains,
            k=k_recall,
            relevant_min_gain=relevant_min_gain,
            relevant_at_least=relevant_at_least,
        )
        if recall is not None:
            values[recall_name] = recall
        reciprocal_rank = mrr(
            ranked,
            gains,
            relevant_min_gain=relevant_min_gain,
            relevant_at_least=relevant_at_least,
        )
        if reciprocal_rank is not None:
            values[MRR] = reciprocal_rank
        per_query[qid] = values

    means: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in (ndcg_name, condensed_name, recall_name, MRR):
        found = [values[name] for values in per_query.values() if name in values]
        if found:
            means[name] = math.fsum(found) / len(found)
            counts[name] = len(found)
    if missing:
        logger.warning(
            "%d of %d judged queries have no results in the run", len(missing), len(qrels)
        )
    unjudged = len(run.keys() - qrels.keys())
    if unjudged:
        logger.info("ignored %d run queries without judgments", unjudged)
    return EvalResult(
        means=means,
        per_query=per_query,
        num_queries=len(per_query),
        primary_metric=ndcg_name,
        counts=counts,
        missing=tuple(missing),
    )


def _top(ranked: Sequence[str], k: int) -> Sequence[str]:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top = ranked[:k]
    if len(set(top)) != len(top):
        raise ValueError("ranking repeats a doc id")
    return top


def _relevant(
    gains: Mapping[str, float], relevant_min_gain: float, relevant_at_least: float | None
) -> set[str]:
    if relevant_at_least is not None:
        floor = relevant_at_least - GAIN_TOLERANCE
        return {doc_id for doc_id, gain in gains.items() if gain >= floor}
    return {doc_id for doc_id, gain in gains.items() if gain > relevant_min_gain}


def _discounted_sum(gains_in_order: Sequence[float]) -> float:
    return math.fsum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains_in_order, 1))
