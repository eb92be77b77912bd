"""Fusion tuned per shop: the RRF constant, the dense/lexical weights and the rerank depth,
chosen by k-fold cross-validation by query on the shop's own judgments.

Each query's dense and lexical hits are retrieved once; every grid point fuses them again in
memory (:func:`~ranker.fusion.reciprocal_rank_fusion`, the serving code) and is scored by
NDCG@10 per query. In each fold the point with the best mean on the other folds' queries is
chosen and scored on the fold's own queries, so the cross-validated figure estimates what
tuning gains on queries it did not see; the point written for serving is the best over all
queries. The rerank depth is tuned the same way after the fusion point: each query's head is
scored by the reranker once at the deepest depth, and shallower depths reorder its prefix
(the reranker scores each product on its own, so the scores do not depend on the depth).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from indexer.progress import progress_bar
from indexer.stores.base import Hit
from ranker.evaluation.judgments import Judgments, kfold_query_splits
from ranker.evaluation.metrics import NDCG_AT_10, Run, evaluate_run
from ranker.fusion import reciprocal_rank_fusion
from ranker.fusion_settings import TunedFusion
from ranker.pipeline import SearchPipeline

logger = logging.getLogger(__name__)

RUN_DEPTH = 100
"""Results per query in a fused run (NDCG@10 reads the top 10)."""


@dataclass(frozen=True, order=True)
class GridPoint:
    """One fusion setting: ``score = dense_weight / (rrf_k + rank_dense) + lexical_weight /
    (rrf_k + rank_lexical)``."""

    rrf_k: float
    dense_weight: float
    lexical_weight: float = 1.0

    def label(self) -> str:
        """``"k 60, dense 1, lexical 1"``."""
        return f"k {self.rrf_k:g}, dense {self.dense_weight:g}, lexical {self.lexical_weight:g}"


@dataclass(frozen=True)
class GridResult:
    """Per-query NDCG@10 of each grid option, and the k-fold choice among them."""

    options: list[str]
    """Option labels, in grid order (ties go to the earlier one)."""
    per_query: dict[str, dict[str, float]]
    """Option label -> qid -> NDCG@10."""
    chosen: str
    """The best option over all queries: what serving gets."""
    fold_choices: list[str]
    """The option chosen on each fold's training queries."""
    fold_test_means: list[float]
    """Each fold's chosen option's mean NDCG@10 on the fold's own queries."""
    cross_validated: float
    """Mean NDCG@10 over every query, each scored by the option chosen without it."""
    seed: int = 13
    """Of the fold split."""

    def mean(self, option: str) -> float:
        """Mean NDCG@10 of ``option`` over all queries."""
        values = self.per_query[option].values()
        return math.fsum(values) / len(values)


def choose_by_cross_validation(
    per_query: Mapping[str, Mapping[str, float]], *, folds: int, seed: int
) -> GridResult:
    """Choose among options (label -> qid -> score) by k-fold CV by query.

    Raises:
        ValueError: no options, options scored on different queries, or ``folds`` out of
            range for the number of queries (see ``kfold_query_splits``).
    """
    options = list(per_query)
    if not options:
        raise ValueError("no options to choose from")
    qids = list(per_query[options[0]])
    if any(set(per_query[option]) != set(qids) for option in options):
        raise ValueError("every option must be scored on the same queries")

    def best(on: Sequence[str]) -> str:
        means = {o: math.fsum(per_query[o][q] for q in on) / len(on) for o in options}
        return max(options, key=lambda option: (means[option], -options.index(option)))

    fold_choices: list[str] = []
    fold_test_means: list[float] = []
    held_out: list[float] = []
    for train, test in kfold_query_splits(qids, folds=folds, seed=seed):
        choice = best(train)
        scores = [per_query[choice][qid] for qid in test]
        fold_choices.append(choice)
        fold_test_means.append(math.fsum(scores) / len(scores))
        held_out += scores
    return GridResult(
        options=options,
        per_query={option: dict(per_query[option]) for option in options},
        chosen=best(qids),
        fold_choices=fold_choices,
        fold_test_means=fold_test_means,
        cross_validated=math.fsum(held_out) / len(held_out),
        seed=seed,
    )


@dataclass(frozen=True)
class RetrievedLists:
    """Each query's dense and lexical hits, best first, retrieved once."""

    dense: dict[str, list[Hit]]
    lexical: dict[str, list[Hit]]


def retrieve_lists(
    pipeline: SearchPipeline, queries: Mapping[str, str], *, progress: bool = False
) -> RetrievedLists:
    """Dense and lexical hits for every query, ``retrieval.candidates`` deep (as serving)."""
    depth = pipeline.retrieval.candidates
    dense: dict[str, list[Hit]] = {}
    lexical: dict[str, list[Hit]] = {}
    for qid, query in progress_bar(
        queries.items(), desc="retrieving", disable=not progress, total=len(queries)
    ):
        dense[qid] = pipeline.retrieve(query, k=depth, mode="dense")
        lexical[qid] = pipeline.retrieve(query, k=depth, mode="lexical")
    return RetrievedLists(dense, lexical)


def fused_run(lists: RetrievedLists, point: GridPoint, *, depth: int = RUN_DEPTH) -> Run:
    """The hybrid run at one grid point."""
    return {
        qid: {
            hit.product_id: hit.score
            for hit in reciprocal_rank_fusion(
                [lists.dense[qid], lists.lexical[qid]],
                weights=[point.dense_weight, point.lexical_weight],
                k=point.rrf_k,
                limit=depth,
            )
        }
        for qid in lists.dense
    }


def per_query_ndcg(run: Run, judgments: Judgments) -> dict[str, float]:
    """NDCG@10 of each judged query (unjudged products count 0)."""
    result = evaluate_run(run, judgments.qrels)
    return {qid: values[NDCG_AT_10] for qid, values in result.per_query.items()}


def tune_fusion_grid(
    lists: RetrievedLists,
    judgments: Judgments,
    grid: Sequence[GridPoint],
    *,
    folds: int,
    seed: int,
) -> tuple[GridResult, dict[str, GridPoint]]:
    """Score every grid point and choose one by CV; also returns label -> point."""
    if not grid:
        raise ValueError("the fusion grid is empty")
    points = {point.label(): point for point in grid}
    scores = {label: per_query_ndcg(fused_run(lists, p), judgments) for label, p in points.items()}
    return choose_by_cross_validation(scores, folds=folds, seed=seed), points


def depth_label(depth: int) -> str:
    """``"depth 20"``, or ``"no rerank"`` for 0."""
    return f"depth {depth}" if depth else "no rerank"


def tune_rerank_depth(
    pipeline: SearchPipeline,
    judgments: Judgments,
    depths: Sequence[int],
    *,
    folds: int,
    seed: int,
    progress: bool = False,
) -> GridResult:
    """Choose the rerank depth among ``depths`` (each >= 1) by CV; "no rerank" is scored
    beside them for reference but never chosen.

    Raises:
        ValueError: no depths, a depth below 1, or the pipeline has no reranker.
    """
    if not depths or min(depths) < 1:
        raise ValueError(f"rerank depths must be >= 1, got {list(depths)}")
    if pipeline.reranker is None:
        raise ValueError("tuning the rerank depth needs a reranker")
    deepest = max(depths)
    runs: dict[int, Run] = {depth: {} for depth in (0, *depths)}
    for qid, query in progress_bar(
        judgments.queries.items(),
        desc="reranking",
        disable=not progress,
        total=len(judgments.queries),
    ):
        head = pipeline.candidates(query, k=RUN_DEPTH, rerank=True, rerank_depth=deepest)
        scores = [float(s) for s in pipeline.score(head)] if head.texts else []
        for depth in runs:
            cut = replace(head, texts=head.texts[:depth])
            outcome = pipeline.ranked(cut, scores[:depth] if cut.texts else None)
            runs[depth][qid] = {r.product.id: r.score for r in outcome.results}
    per_depth = {depth_label(depth): per_query_ndcg(run, judgments) for depth, run in runs.items()}
    chosen = choose_by_cross_validation(
        {label: values for label, values in per_depth.items() if label != depth_label(0)},
        folds=folds,
        seed=seed,
    )
    reference = per_depth[depth_label(0)]
    return replace(
        chosen,
        options=[depth_label(0), *chosen.options],
        per_query={depth_label(0): reference, **chosen.per_query},
    )


@dataclass(frozen=True)
class FusionTuning:
    """What `shoprank tune-fusion` found: the fusion grid, the depth grid, the settings."""

    fusion: GridResult
    points: dict[str, GridPoint]
    default: GridPoint
    tuned: TunedFusion
    depth: GridResult | None = None
    depths: dict[str, int] = field(default_factory=dict)


def tune(
    pipeline: SearchPipeline,
    judgments: Judgments,
    grid: Sequence[GridPoint],
    *,
    depths: Sequence[int] = (),
    folds: int = 5,
    seed: int = 13,
    progress: bool = False,
) -> FusionTuning:
    """Tune the fusion point, then (with ``depths`` and a reranker) the rerank depth.

    The pipeline's own fusion setting (the one serving now) is always scored too, as the
    reference.
    """
    retrieval = pipeline.retrieval
    default = GridPoint(retrieval.rrf_k, retrieval.dense_weight, retrieval.lexical_weight)
    grid = list(dict.fromkeys([*grid, default]))
    lists = retrieve_lists(pipeline, judgments.queries, progress=progress)
    fusion, points = tune_fusion_grid(lists, judgments, grid, folds=folds, seed=seed)
    best = points[fusion.chosen]
    logger.info(
        "fusion: %s chosen (NDCG@10 %.4f; %d-fold CV of the tuning %.4f; served %s %.4f)",
        best.label(),
        fusion.mean(fusion.chosen),
        folds,
        fusion.cross_validated,
        default.label(),
        fusion.mean(default.label()),
    )
    tuning: dict[str, object] = {
        "folds": folds,
        "seed": seed,
        "queries": len(judgments.queries),
        "metric": "retrieval NDCG@10, unjudged = 0",
        "fusion_cv": fusion.cross_validated,
        "fusion_all_queries": fusion.mean(fusion.chosen),
        "served": default.label(),
        "served_all_queries": fusion.mean(default.label()),
    }
    depth_result = None
    depth_values: dict[str, int] = {}
    rerank_depth = None
    if depths and pipeline.reranker is not None:
        tuned_pipeline = pipeline.with_retrieval(
            retrieval.model_copy(
                update={
                    "rrf_k": best.rrf_k,
                    "dense_weight": best.dense_weight,
                    "lexical_weight": best.lexical_weight,
                }
            )
        )
        depth_result = tune_rerank_depth(
            tuned_pipeline, judgments, depths, folds=folds, seed=seed, progress=progress
        )
        depth_values = {depth_label(d): d for d in (0, *depths)}
        rerank_depth = depth_values[depth_result.chosen]
        tuning |= {
            "rerank_depth_cv": depth_result.cross_validated,
            "rerank_depth_all_queries": depth_result.mean(depth_result.chosen),
            "no_rerank_all_queries": depth_result.mean(depth_label(0)),
        }
    elif depths:
        logger.warning("no reranker serves: the rerank depth is not tuned")
    tuned = TunedFusion(
        rrf_k=best.rrf_k,
        dense_weight=best.dense_weight,
        lexical_weight=best.lexical_weight,
        rerank_depth=rerank_depth,
        tuning=tuning,
    )
    return FusionTuning(fusion, points, default, tuned, depth_result, depth_values)


def tuning_report(tuning: FusionTuning) -> str:
    """Markdown: every grid option's NDCG@10 per fold and overall, what each fold chose,
    and the cross-validated figure of the tuning against the served setting."""
    sections = [_grid_table("Fusion", tuning.fusion, default=tuning.default.label())]
    if tuning.depth is not None:
        sections.append(_grid_table("Rerank depth", tuning.depth, default=depth_label(0)))
    tuned = tuning.tuned
    depth = f", rerank depth {tuned.rerank_depth}" if tuned.rerank_depth else ""
    sections.append(
        f"Written: RRF k {tuned.rrf_k:g}, dense weight {tuned.dense_weight:g}, lexical weight "
        f"{tuned.lexical_weight:g}{depth}."
    )
    return "\n\n".join(sections) + "\n"


def _grid_table(title: str, result: GridResult, *, default: str) -> str:
    folds = len(result.fold_choices)
    header = ["option", "NDCG@10 (all queries)"] + [f"fold {i + 1}" for i in range(folds)]
    lines = [
        "| " + " | ".join([*header, "chosen in folds"]) + " |",
        "|" + "---|" * (len(header) + 1),
    ]
    splits = _fold_means(result)
    for option in result.options:
        marks = [
            "**" if option == result.chosen else "",
            " (served)" if option == default else "",
        ]
        chosen_in = sum(1 for choice in result.fold_choices if choice == option)
        cells = [
            f"{marks[0]}{option}{marks[0]}{marks[1]}",
            f"{result.mean(option):.4f}",
            *(f"{value:.4f}" for value in splits[option]),
            str(chosen_in),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    summary = (
        f"{title}, {folds}-fold CV by query: the option chosen on the other folds scores "
        f"**{result.cross_validated:.4f}** NDCG@10 on each fold's own queries "
        f"(fold means: {', '.join(f'{m:.4f}' for m in result.fold_test_means)}); "
        f"the served setting ({default}) scores {result.mean(default):.4f} over all queries. "
        f"Fold columns: each option's mean on that fold's queries."
    )
    return f"## {title}\n\n" + "\n".join(lines) + "\n\n" + summary


def _fold_means(result: GridResult) -> dict[str, list[float]]:
    """Option -> its mean on each fold's test queries (the folds of the CV)."""
    qids = list(result.per_query[result.options[0]])
    folds = len(result.fold_choices)
    splits = kfold_query_splits(qids, folds=folds, seed=result.seed)
    return {
        option: [
            math.fsum(result.per_query[option][q] for q in test) / len(test) for _, test in splits
        ]
        for option in result.options
    }
