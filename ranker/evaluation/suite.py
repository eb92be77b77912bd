"""`shoprank eval`: every system on both ESCI tasks, one table, a report and a chart.

Each measured system is reported three ways on the retrieval task: full NDCG@10 (unjudged
products count 0), condensed NDCG@10 (unjudged products dropped first) and Recall@100 of
the judged-relevant products, each with a 95 % bootstrap interval over queries.

Untrained systems (BM25, dense, hybrid) are scored on every judged query. The trained
reranker is reported two ways, each beside its prior alone (the cross-encoder dropped) and
with a paired bootstrap of the difference, since the cross-encoder must earn its cost:

- cross-validated: k models, each trained without the queries it scores, which estimates
  quality on unseen queries. Computed here with ``folds >= 2``, else taken from the served
  model's manifest, where `shoprank train --folds` recorded it;
- the served model itself: if it was trained on these very judgments its figure is
  in-sample, and the table says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from indexer.catalog import CatalogInput, sample_judgments_path
from ranker.evaluation.bootstrap import metric_intervals, paired_difference
from ranker.evaluation.judgment_files import JudgmentsFile, JudgmentsInput, judgments_file
from ranker.evaluation.judgments import Judgments, load_judgments
from ranker.evaluation.metrics import NDCG_AT_10, EvalResult, evaluate_run
from ranker.evaluation.report import Comparison, SystemResult, write_report
from ranker.evaluation.systems import (
    BASELINE_SYSTEMS,
    PRIOR_ALONE,
    PRIOR_ALONE_SYSTEM,
    RERANKED_SYSTEM,
    System,
    Task,
    system_run,
)
from ranker.loading import open_serving_pipeline, reranker_dir, teacher_dir
from ranker.model_files import read_manifest
from ranker.pipeline import SearchPipeline
from ranker.settings import Settings

logger = logging.getLogger(__name__)

TASKS: tuple[Task, ...] = ("rerank", "retrieval")


@dataclass(frozen=True)
class Evaluation:
    """What `shoprank eval` measured and where it wrote the report."""

    results: list[SystemResult]
    comparisons: list[Comparison]
    report: Path
    chart: Path


def evaluate_system(
    pipeline: SearchPipeline,
    system: System,
    judgments: Judgments,
    *,
    relevant_at_least: float | None = None,
) -> dict[str, EvalResult]:
    """Both tasks for one system over every judged query; ``relevant_at_least``: the gain
    Recall@100 and MRR count as relevant (None: any gain above 0)."""
    candidates = {qid: list(judged) for qid, judged in judgments.qrels.items()}
    return {
        task: evaluate_run(
            system_run(pipeline, system, judgments.queries, task=task, candidates=candidates),
            judgments.qrels,
            relevant_at_least=relevant_at_least,
        )
        for task in TASKS
    }


def _rows(name: str, results: dict[str, EvalResult], note: str) -> list[SystemResult]:
    return [
        SystemResult(name, task, r.means, note, intervals=metric_intervals(r))
        for task, r in results.items()
    ]


def _against_prior(
    with_cross_encoder: dict[str, EvalResult],
    prior_alone: dict[str, EvalResult],
    *,
    system: str,
    baseline: str,
    note: str,
) -> list[Comparison]:
    """The cross-encoder's gain over its prior alone, per task, as paired differences."""
    return [
        Comparison(
            system,
            baseline,
            task,
            NDCG_AT_10,
            paired_difference(with_cross_encoder[task], prior_alone[task]),
            note,
        )
        for task in TASKS
        if task in with_cross_encoder and task in prior_alone
    ]


def _cross_validated(
    settings: Settings,
    pipeline: SearchPipeline,
    judgments: JudgmentsFile,
    catalog: CatalogInput | None,
    folds: int,
    relevant_at_least: float | None,
) -> tuple[list[SystemResult], list[Comparison]]:
    from ranker.training.cross_validation import cross_validate_reranker
    from ranker.training.jobs import load_training_data, prior_scores, reranker_config

    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    config = reranker_config(settings, {})
    priors, _ = prior_scores(settings, data, config)
    cv = cross_validate_reranker(
        pipeline,
        data,
        config,
        priors=priors,
        folds=folds,
        seed=settings.seed,
        relevant_at_least=relevant_at_least,
    )
    note = f"{folds}-fold CV by query, trained here"
    if any(task + PRIOR_ALONE in cv.results for task in TASKS):
        note += (
            f"; {cv.trained_folds} of {folds} folds kept a trained cross-encoder (early "
            "stopping kept the prior alone in the others)"
        )
    reranked: dict[str, EvalResult] = {task: cv.results[task] for task in TASKS}
    prior: dict[str, EvalResult] = {
        task: cv.results[key] for task in TASKS if (key := task + PRIOR_ALONE) in cv.results
    }
    rows = _rows(RERANKED_SYSTEM.name, reranked, note)
    if prior:
        rows += _rows(PRIOR_ALONE_SYSTEM.name, prior, note + "; each fold's prior alone")
    comparisons = _against_prior(
        reranked, prior, system=RERANKED_SYSTEM.name, baseline=PRIOR_ALONE_SYSTEM.name, note=note
    )
    return rows, comparisons


def _from_manifest(
    manifest: dict[str, object], *, source: str = "from the model's manifest"
) -> list[SystemResult]:
    stored = manifest.get("cross_validation")
    if not isinstance(stored, dict):
        return []
    note = f"{stored.get('folds', '?')}-fold CV by query ({source})"
    return [
        SystemResult(name, task, {k: float(v) for k, v in stored[key].items()}, note)
        for name, suffix in ((RERANKED_SYSTEM.name, ""), (PRIOR_ALONE_SYSTEM.name, PRIOR_ALONE))
        for task in TASKS
        if isinstance(stored.get(key := task + suffix), dict)
    ]


def measured_on(manifest: dict[str, object], judgments: Judgments) -> bool:
    """Whether a model's stored cross-validated figures belong with these judgments: it
    was trained on some of these queries, or its manifest does not list its queries. A
    model trained on another shop's queries (the shipped ESCI reranker on Home Depot's)
    has figures from that shop, which a report of this one must not show."""
    trained = manifest.get("train_query_ids")
    if not isinstance(trained, list):
        return True
    if {str(qid) for qid in trained} & set(judgments.queries):
        return True
    logger.info("the model's stored cross-validated figures are from other queries; left out")
    return False


def run_evaluation(
    settings: Settings,
    *,
    judgments_path: JudgmentsInput | None,
    folds: int,
    out: Path,
    catalog: CatalogInput | None = None,
    relevant_at_least: float | None = None,
) -> Evaluation:
    """Evaluate every system; writes ``report.md`` and ``ndcg.png`` into ``out``.

    ``judgments_path``: None, the sample judgments. ``catalog``: where cross-validation
    (``folds >= 2``) reads the judged products' texts; None, the sample catalog.
    ``relevant_at_least``: the gain from which Recall@100 and MRR count a product as
    relevant (Home Depot: 1.33); None: any gain above 0."""
    source = judgments_file(judgments_path or sample_judgments_path())
    judgments = load_judgments(source, gains=settings.label_gains)
    pipeline = open_serving_pipeline(settings, with_reranker=True)
    results: list[SystemResult] = []
    comparisons: list[Comparison] = []
    embedder_note = f"embedder {pipeline.embedder.identity.model_id}"
    fusion = pipeline.retrieval
    fusion_note = (
        f"RRF k {fusion.rrf_k:g}, dense {fusion.dense_weight:g}, lexical {fusion.lexical_weight:g}"
    )
    for system in BASELINE_SYSTEMS:
        logger.info("evaluating %s", system.name)
        note = "no training" if system.mode == "lexical" else embedder_note
        if system.mode == "hybrid":
            note += f"; {fusion_note}"
        measured = evaluate_system(pipeline, system, judgments, relevant_at_least=relevant_at_least)
        results += _rows(system.name, measured, note)
    served_dir = reranker_dir(settings)
    manifest = read_manifest(served_dir) or {}
    if folds >= 2:
        rows, cv_comparisons = _cross_validated(
            settings, pipeline, source, catalog, folds, relevant_at_least
        )
        results += rows
        comparisons += cv_comparisons
    elif manifest.get("distilled_from"):
        # A distilled student serves: the cross-validated figures are its teacher's recipe's,
        # and the student passed a gate against that teacher (see `shoprank compress`).
        teacher = read_manifest(teacher_dir(settings)) or {}
        if measured_on(teacher, judgments):
            results += _from_manifest(
                teacher, source="the teacher's manifest; a student distilled from it serves"
            )
    elif measured_on(manifest, judgments):
        results += _from_manifest(manifest)
    trained_on = {str(q) for q in manifest.get("train_query_ids", [])}
    seen = sorted(trained_on & set(judgments.queries))
    note = (
        f"served model; in-sample: it was trained on {len(seen)} of these queries"
        if seen
        else "served model"
    )
    served = evaluate_system(
        pipeline, RERANKED_SYSTEM, judgments, relevant_at_least=relevant_at_least
    )
    served_name = f"{RERANKED_SYSTEM.name} (served)"
    results += _rows(served_name, served, note)
    reranker = pipeline.reranker
    if reranker is not None and reranker.prior is not None and reranker.has_cross_encoder:
        prior_name = f"{PRIOR_ALONE_SYSTEM.name} (served)"
        prior = evaluate_system(
            pipeline.with_reranker(reranker.prior_alone()),
            PRIOR_ALONE_SYSTEM,
            judgments,
            relevant_at_least=relevant_at_least,
        )
        results += _rows(prior_name, prior, note + "; its prior alone")
        comparisons += _against_prior(
            served, prior, system=served_name, baseline=prior_name, note=note
        )
    preamble = (
        f"{len(judgments.queries)} judged queries from `{source.describe()}`. Reranker: "
        f"`{served_dir}` ({manifest.get('model_id', 'untracked')}). "
        f"{_gains_note(source, relevant_at_least)} {THREE_WAYS_NOTE} "
        f"{_spelling_note(pipeline, judgments)}"
    )
    report, chart = write_report(
        results, out, title="shoprank evaluation", preamble=preamble, comparisons=comparisons
    )
    return Evaluation(results, comparisons, report, chart)


THREE_WAYS_NOTE = (
    "Retrieval is reported three ways: NDCG@10 counts unjudged products as 0; condensed "
    "NDCG@10 drops them from the ranking first; Recall@100 is the share of the judged-relevant "
    "products in the top 100. Brackets: 95 % bootstrap intervals over queries."
)


def _spelling_note(pipeline: SearchPipeline, judgments: Judgments) -> str:
    """How many queries retrieval searched with their spelling corrected."""
    if pipeline.speller is None:
        return "Retrieval searches the queries as typed (no spelling correction)."
    corrected = sum(1 for query in judgments.queries.values() if pipeline.spelled(query))
    return (
        f"Retrieval corrects misspelled query words against the catalog's words first "
        f"({corrected} of {len(judgments.queries)} queries); the rerank task reads them as "
        "typed."
    )


def _gains_note(source: JudgmentsFile, relevant_at_least: float | None = None) -> str:
    mapping = source.mapping
    relevant = (
        f"every gain of at least {relevant_at_least:g}"
        if relevant_at_least is not None
        else "every gain above 0"
    )
    if mapping.gains is None and not mapping.gain_base and "gain" not in mapping.fields:
        if relevant_at_least is None:
            relevant = "E, S and C"
        return (
            f"NDCG@10 uses ESCI gains E 1, S 0.1, C 0.01, I 0; Recall@100 and MRR count "
            f"{relevant} as relevant."
        )
    grades = ", ".join(f"{label} {gain:g}" for label, gain in (mapping.gains or {}).items())
    numeric = f"a numeric grade's gain is grade - {mapping.gain_base:g}"
    return (
        f"NDCG@10 gains: {grades + '; ' if grades else ''}{numeric}; Recall@100 and MRR count "
        f"{relevant} as relevant."
    )
