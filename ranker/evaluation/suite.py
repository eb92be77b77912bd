"""`shoprank eval`: every system on both ESCI tasks, one table, a report and a chart.

Untrained systems (BM25, dense, hybrid) are scored on every judged query. The trained
reranker is reported two ways:

- cross-validated: k models, each trained without the queries it scores, which estimates
  quality on unseen queries. Computed here with ``folds >= 2``, else taken from the served
  model's manifest, where `shoprank train --folds` recorded it;
- the served model itself: if it was trained on these very judgments its figure is
  in-sample, and the table says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

from indexer.catalog import CatalogInput, sample_judgments_path
from ranker.evaluation.judgment_files import JudgmentsFile, JudgmentsInput, judgments_file
from ranker.evaluation.judgments import Judgments, load_judgments
from ranker.evaluation.metrics import EvalResult, evaluate_run
from ranker.evaluation.report import SystemResult, write_report
from ranker.evaluation.systems import (
    BASELINE_SYSTEMS,
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


def evaluate_system(
    pipeline: SearchPipeline, system: System, judgments: Judgments
) -> dict[str, EvalResult]:
    """Both tasks for one system over every judged query."""
    candidates = {qid: list(judged) for qid, judged in judgments.qrels.items()}
    return {
        task: evaluate_run(
            system_run(pipeline, system, judgments.queries, task=task, candidates=candidates),
            judgments.qrels,
        )
        for task in TASKS
    }


def _rows(name: str, results: dict[str, EvalResult], note: str) -> list[SystemResult]:
    return [SystemResult(name, task, r.means, note) for task, r in results.items()]


def _cross_validated(
    settings: Settings,
    pipeline: SearchPipeline,
    judgments: JudgmentsFile,
    catalog: CatalogInput | None,
    folds: int,
) -> list[SystemResult]:
    from ranker.training.cross_validation import cross_validate_reranker
    from ranker.training.jobs import load_training_data, prior_scores, reranker_config

    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    config = reranker_config(settings, {})
    priors, _ = prior_scores(settings, data, config)
    cv = cross_validate_reranker(
        pipeline, data, config, priors=priors, folds=folds, seed=settings.seed
    )
    return _rows(RERANKED_SYSTEM.name, cv, f"{folds}-fold CV by query, trained here")


def _from_manifest(
    manifest: dict[str, object], *, source: str = "from the model's manifest"
) -> list[SystemResult]:
    stored = manifest.get("cross_validation")
    if not isinstance(stored, dict):
        return []
    note = f"{stored.get('folds', '?')}-fold CV by query ({source})"
    return [
        SystemResult(
            RERANKED_SYSTEM.name, task, {k: float(v) for k, v in stored[task].items()}, note
        )
        for task in TASKS
        if isinstance(stored.get(task), dict)
    ]


def run_evaluation(
    settings: Settings,
    *,
    judgments_path: JudgmentsInput | None,
    folds: int,
    out: Path,
    catalog: CatalogInput | None = None,
) -> tuple[list[SystemResult], tuple[Path, Path]]:
    """Evaluate every system; writes ``report.md`` and ``ndcg.png`` into ``out``.

    ``judgments_path``: None, the sample judgments. ``catalog``: where cross-validation
    (``folds >= 2``) reads the judged products' texts; None, the sample catalog."""
    source = judgments_file(judgments_path or sample_judgments_path())
    judgments = load_judgments(source, gains=settings.label_gains)
    pipeline = open_serving_pipeline(settings, with_reranker=True)
    results: list[SystemResult] = []
    embedder_note = f"embedder {pipeline.embedder.identity.model_id}"
    for system in BASELINE_SYSTEMS:
        logger.info("evaluating %s", system.name)
        note = "no training" if system.mode == "lexical" else embedder_note
        results += _rows(system.name, evaluate_system(pipeline, system, judgments), note)
    served_dir = reranker_dir(settings)
    manifest = read_manifest(served_dir) or {}
    if folds >= 2:
        results += _cross_validated(settings, pipeline, source, catalog, folds)
    elif manifest.get("distilled_from"):
        # A distilled student serves: the cross-validated figures are its teacher's recipe's,
        # and the student passed a gate against that teacher (see `shoprank compress`).
        results += _from_manifest(
            read_manifest(teacher_dir(settings)) or {},
            source="the teacher's manifest; a student distilled from it serves",
        )
    else:
        results += _from_manifest(manifest)
    trained_on = {str(q) for q in manifest.get("train_query_ids", [])}
    seen = sorted(trained_on & set(judgments.queries))
    note = (
        f"served model; in-sample: it was trained on {len(seen)} of these queries"
        if seen
        else "served model"
    )
    served = evaluate_system(pipeline, RERANKED_SYSTEM, judgments)
    results += _rows(f"{RERANKED_SYSTEM.name} (served)", served, note)
    preamble = (
        f"{len(judgments.queries)} judged queries from `{source.describe()}`. Reranker: "
        f"`{served_dir}` ({manifest.get('model_id', 'untracked')}). {_gains_note(source)}"
    )
    paths = write_report(results, out, title="shoprank evaluation", preamble=preamble)
    return results, paths


def _gains_note(source: JudgmentsFile) -> str:
    mapping = source.mapping
    if mapping.gains is None and not mapping.gain_base and "gain" not in mapping.fields:
        return (
            "NDCG@10 uses ESCI gains E 1, S 0.1, C 0.01, I 0; Recall@100 and MRR count E, S "
            "and C as relevant."
        )
    grades = ", ".join(f"{label} {gain:g}" for label, gain in (mapping.gains or {}).items())
    numeric = f"a numeric grade's gain is grade - {mapping.gain_base:g}"
    return (
        f"NDCG@10 gains: {grades + '; ' if grades else ''}{numeric}; Recall@100 and MRR count "
        "every gain above 0 as relevant."
    )
