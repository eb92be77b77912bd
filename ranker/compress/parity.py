"""Parity checks: does a converted model score and rank like its reference?

Both models see the same real inputs, the sample catalog's judged queries with their judged
products, and are compared on raw outputs (max abs difference, cosine), on scores (Pearson)
and on each query's ranking (Spearman, Kendall, top-10 overlap, NDCG@10 with ESCI gains).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ranker.backends.base import FloatArray
from ranker.evaluation.judgments import Judgments

logger = logging.getLogger(__name__)

ScoreFn = Callable[[str, Sequence[str]], FloatArray]
"""(query, documents) -> one score per document."""
EmbedFn = Callable[[Sequence[str]], FloatArray]
"""texts -> ``(len(texts), dim)`` raw (not normalized) vectors."""


class ParityError(ValueError):
    """A converted model that disagrees with its reference beyond the thresholds."""

    def __init__(self, message: str, agreement: Agreement) -> None:
        super().__init__(message, agreement)
        self.message = message
        self.agreement = agreement

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class ParityGroup:
    """One query with the products judged for it and their gains."""

    query: str
    documents: tuple[str, ...]
    gains: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Agreement:
    """How closely a candidate model follows its reference on a set of groups."""

    groups: int
    max_abs_diff: float
    """Largest difference of raw outputs (logits, or unnormalized vectors)."""
    pearson: float
    """Correlation of all raw scores (logits, or cosines), pooled over groups."""
    spearman: float
    """Mean over groups of the rank correlation of each query's scores (for a reranker with
    a dense prior, this and the other ranking figures are on the served scores)."""
    kendall: float
    """Mean over groups of Kendall's tau-b of each query's scores."""
    top10_overlap: float
    """Mean share of the reference's top 10 that the candidate also ranks in its top 10."""
    ndcg10_reference: float
    """Mean NDCG@10 (ESCI gains) of the reference's rankings."""
    ndcg10_candidate: float
    min_cosine: float | None = None
    """Embeddings only: the least cosine between a text's two vectors."""
    mean_cosine: float | None = None

    @property
    def ndcg10_drop(self) -> float:
        """How much NDCG@10 the candidate loses against the reference (negative: gains)."""
        return self.ndcg10_reference - self.ndcg10_candidate

    def as_dict(self) -> dict[str, Any]:
        """Plain values for a manifest, with the NDCG drop."""
        return {**dataclasses.asdict(self), "ndcg10_drop": self.ndcg10_drop}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Bounds an agreement must meet; None leaves a metric unchecked."""

    max_abs_diff: float | None = None
    min_cosine: float | None = None
    min_mean_cosine: float | None = None
    min_pearson: float | None = None
    min_spearman: float | None = None
    min_kendall: float | None = None
    max_ndcg10_drop: float | None = None

    def failures(self, agreement: Agreement) -> list[str]:
        """One line per bound the agreement misses; empty when it passes."""
        checks: list[tuple[str, float | None, float | None, bool]] = [
            ("max abs diff", agreement.max_abs_diff, self.max_abs_diff, False),
            ("min cosine", agreement.min_cosine, self.min_cosine, True),
            ("mean cosine", agreement.mean_cosine, self.min_mean_cosine, True),
            ("score pearson", agreement.pearson, self.min_pearson, True),
            ("mean spearman", agreement.spearman, self.min_spearman, True),
            ("mean kendall tau", agreement.kendall, self.min_kendall, True),
            ("NDCG@10 drop", agreement.ndcg10_drop, self.max_ndcg10_drop, False),
        ]
        failed = []
        for name, value, bound, at_least in checks:
            if bound is None:
                continue
            if value is None or not np.isfinite(value):
                failed.append(f"{name} not measured")
            elif (value < bound) if at_least else (value > bound):
                relation = ">=" if at_least else "<="
                failed.append(f"{name} {value:.6g}, needs {relation} {bound:g}")
        return failed

    def as_dict(self) -> dict[str, float]:
        """The bounds that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


SERVED_SCORE_PARITY = Thresholds(min_spearman=0.95, min_kendall=0.85, max_ndcg10_drop=0.01)
"""What an int8 variant must keep of fp32 when judged on served scores: each query's ranking
(mean Spearman and Kendall over queries) and NDCG@10. For a reranker with a dense prior the
raw logits are not compared: a student whose logits barely vary around its prior has a low
raw Pearson however well its served ranking holds."""


def check(agreement: Agreement, thresholds: Thresholds, *, what: str) -> None:
    """Raise :class:`ParityError` naming every bound ``agreement`` misses."""
    failed = thresholds.failures(agreement)
    if failed:
        raise ParityError(f"{what} refused: {'; '.join(failed)}", agreement)
    logger.info("%s passes parity: %s", what, agreement.as_dict())


def judged_groups(
    judgments: Judgments, texts: Mapping[str, str], *, queries: int = 20
) -> list[ParityGroup]:
    """The first ``queries`` judged queries, each with its judged products' texts."""
    groups = []
    for qid in list(judgments.queries)[:queries]:
        judged = [(pid, gain) for pid, gain in judgments.qrels[qid].items() if pid in texts]
        groups.append(
            ParityGroup(
                query=judgments.queries[qid],
                documents=tuple(texts[pid] for pid, _ in judged),
                gains=tuple(gain for _, gain in judged),
            )
        )
    return groups


def catalog_groups(*, queries: int = 20, text_template: str | None = None) -> list[ParityGroup]:
    """The first ``queries`` judged queries of the sample data, with their products' texts."""
    return list(_sample_groups(queries, text_template))


@functools.cache
def _sample_groups(queries: int, text_template: str | None) -> tuple[ParityGroup, ...]:
    from indexer.catalog import (
        TextTemplate,
        load_products,
        sample_catalog_path,
        sample_judgments_path,
    )
    from ranker.evaluation.judgments import load_judgments
    from ranker.settings import IndexSettings

    judgments = load_judgments(sample_judgments_path())
    template = TextTemplate(text_template or IndexSettings().text_template)
    texts = {p.id: template.render(p) for p in load_products(sample_catalog_path())}
    return tuple(judged_groups(judgments, texts, queries=queries))


def score_agreement(
    groups: Sequence[ParityGroup],
    *,
    reference: ScoreFn,
    candidate: ScoreFn,
    prior: ScoreFn | None = None,
) -> Agreement:
    """Compare two scorers (cross-encoders) on each group's (query, product) pairs.

    ``prior``: the terms both models' served scores add to their logits (a dense prior).
    The raw outputs (max abs difference, Pearson) are compared as the graphs give them; the
    rankings (rank correlations, top-10 overlap, NDCG@10) as served, prior added, since that
    is the order users see. Without the prior, a model whose logits barely vary within a
    query would be judged on reshuffles its served ranking does not show.
    """
    ref = [np.asarray(reference(g.query, g.documents), dtype=np.float64) for g in groups]
    cand = [np.asarray(candidate(g.query, g.documents), dtype=np.float64) for g in groups]
    max_diff = max(float(np.max(np.abs(r - c))) for r, c in zip(ref, cand, strict=True))
    pearson = _pearson(np.concatenate(ref), np.concatenate(cand))
    if prior is not None:
        offsets = [np.asarray(prior(g.query, g.documents), dtype=np.float64) for g in groups]
        ref = [r + o for r, o in zip(ref, offsets, strict=True)]
        cand = [c + o for c, o in zip(cand, offsets, strict=True)]
    agreement = _ranking_agreement(groups, ref, cand, max_abs_diff=max_diff)
    return dataclasses.replace(agreement, pearson=pearson)


def embedding_agreement(
    groups: Sequence[ParityGroup], *, reference: EmbedFn, candidate: EmbedFn
) -> Agreement:
    """Compare two bi-encoders on every text and on each query's cosine ranking."""
    texts = [text for g in groups for text in (g.query, *g.documents)]
    ref_vectors = np.asarray(reference(texts), dtype=np.float64)
    cand_vectors = np.asarray(candidate(texts), dtype=np.float64)
    max_diff = float(np.max(np.abs(ref_vectors - cand_vectors)))
    ref_unit = _unit(ref_vectors)
    cand_unit = _unit(cand_vectors)
    cosines = np.sum(ref_unit * cand_unit, axis=1)
    ref_scores, cand_scores = [], []
    start = 0
    for group in groups:
        end = start + 1 + len(group.documents)
        ref_scores.append(ref_unit[start + 1 : end] @ ref_unit[start])
        cand_scores.append(cand_unit[start + 1 : end] @ cand_unit[start])
        start = end
    agreement = _ranking_agreement(groups, ref_scores, cand_scores, max_abs_diff=max_diff)
    return dataclasses.replace(
        agreement, min_cosine=float(cosines.min()), mean_cosine=float(cosines.mean())
    )


def _unit(vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    unit: npt.NDArray[np.float64] = vectors / norms
    return unit


def _ranking_agreement(
    groups: Sequence[ParityGroup],
    reference: Sequence[npt.NDArray[np.float64]],
    candidate: Sequence[npt.NDArray[np.float64]],
    *,
    max_abs_diff: float,
) -> Agreement:
    if not groups:
        raise ValueError("parity needs at least one group")
    pooled_ref = np.concatenate(reference)
    pooled_cand = np.concatenate(candidate)
    pairs = list(zip(reference, candidate, strict=True))
    return Agreement(
        groups=len(groups),
        max_abs_diff=max_abs_diff,
        pearson=_pearson(pooled_ref, pooled_cand),
        spearman=float(np.mean([_spearman(r, c) for r, c in pairs])),
        kendall=float(np.mean([kendall_tau(r, c) for r, c in pairs])),
        top10_overlap=float(np.mean([_top_overlap(r, c, 10) for r, c in pairs])),
        ndcg10_reference=float(
            np.mean([ndcg10(r, g.gains) for r, g in zip(reference, groups, strict=True)])
        ),
        ndcg10_candidate=float(
            np.mean([ndcg10(c, g.gains) for c, g in zip(candidate, groups, strict=True)])
        ),
    )


def _pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Ranks from 0, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def _spearman(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return _pearson(_ranks(a), _ranks(b))


def kendall_tau(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Kendall's tau-b of two score lists (1: same order, -1: reversed)."""
    if len(a) < 2:
        return 1.0
    upper = np.triu_indices(len(a), k=1)
    da = np.sign(a[:, None] - a[None, :])[upper]
    db = np.sign(b[:, None] - b[None, :])[upper]
    denominator = np.sqrt(np.count_nonzero(da) * np.count_nonzero(db))
    if denominator == 0:
        return 1.0 if np.array_equal(da, db) else 0.0
    return float(np.sum(da * db) / denominator)


def _top_overlap(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], k: int) -> float:
    k = min(k, len(a))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k if k else 1.0


def ndcg10(scores: npt.NDArray[np.float64], gains: Sequence[float]) -> float:
    """NDCG@10 of the order ``scores`` gives, with linear gains (ties: input order)."""
    gain = np.asarray(gains, dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, 12, dtype=np.float64))
    ranked = gain[np.argsort(-scores, kind="stable")][:10]
    ideal = np.sort(gain)[::-1][:10]
    ideal_dcg = float(ideal @ discounts[: len(ideal)])
    return float(ranked @ discounts[: len(ranked)]) / ideal_dcg if ideal_dcg > 0 else 0.0
