"""`shoprank eval`: every system on both ESCI tasks, one table, a report and a chart.

Untrained systems (BM25, dense, hybrid) are scored on every judged query. The trained
reranker is reported two ways:

- cross-validated (``folds >= 2``): k models, each trained without the queries it scores,
  which estimates quality on unseen queries;
- the served model: if it was trained on these very judgments, its figure is in-sample and
  labelled so; the cross-validated figures stored in its manifest are shown beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from indexer.catalog import sample_judgments_path
from ranker.evaluation.judgments import load_judgments
from ranker.evaluation.metrics import EvalResult, evaluate_run
from ranker.evaluation.report import SystemResult, write_report
from ranker.evaluation.systems import BASELINE_SYSTEMS, RERANKED_SYSTEM, System, system_run
from ranker.loading import open_serving_pipeline, reranker_dir
from ranker.model_files import read_manifest
from ranker.pipeline import SearchPipeline
from ranker.settings import Settings

logger = logging.getLogger(__name__)

CV_RESULTS_FILE = "cv.json"


def _evaluate_system(
    pipeline: SearchPipeline, system: System, judgments_path: Path, settings: Settings
) -> dict[str, EvalResult]:
    judgments = load_judgments(judgments_path, gains=settings.label_gains)
    candidates = {qid: list(judged) for qid, judged in judgments.qrels.items()}
    return {
        task: evaluate_run(
            system_run(
                pipeline,
                system,
                judgments.queries,
                task=task,
                candidates=candidates,
                depth=100,
            ),
            judgments.qrels,
        )
        for task in ("rerank", "retrieval")
    }


def _system_results(name: str, results: dict[str, EvalResult], note: str) -> list[SystemResult]:
    return [
        SystemResult(name=name, task=task, means=result.means, note=note)  # type: ignore[arg-type]
        for task, result in results.items()
    ]


def run_evaluation(
    settings: Settings,
    *,
    judgments_path: Path | None,
    folds: int,
    out: Path,
) -> tuple[list[SystemResult], tuple[Path, Path]]:
    """Evaluate every system; writes ``report.md`` and ``ndcg.png`` into ``out``."""
    judgments_path = judgments_path or sample_judgments_path()
    pipeline = open_serving_pipeline(settings, with_reranker=True)
    results: list[SystemResult] = []
    for system in BASELINE_SYSTEMS:
        logger.info("evaluating %s", system.name)
        results += _system_results(
            system.name, _evaluate_system(pipeline, system, judgments_path, settings), "no training"
        )
    served_dir = reranker_dir(settings)
    manifest = read_manifest(served_dir) or {}
    if folds >= 2:
        from ranker.training.cross_validation import cross_validate_reranker
        from ranker.training.jobs import load_training_data, reranker_config

        data = load_training_data(settings, judgments=judgments_path)
        config = reranker_config(settings, {})
        cv = cross_validate_reranker(pipeline, data, config, folds=folds, seed=settings.seed)
        results += _system_results(
            RERANKED_SYSTEM.name, cv, f"{folds}-fold CV by query (models trained here)"
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / CV_RESULTS_FILE).write_text(
            json.dumps({task: r.means for task, r in cv.items()}, indent=2) + "\n"
        )
    elif isinstance(manifest.get("cross_validation"), dict):
        stored: dict[str, Any] = manifest["cross_validation"]
        results += [
            SystemResult(
                name=RERANKED_SYSTEM.name,
                task=task,  # type: ignore[arg-type]
                means={k: float(v) for k, v in stored[task].items()},
                note=f"{stored.get('folds', '?')}-fold CV by query, from the model's manifest",
            )
            for task in ("rerank", "retrieval")
            if task in stored
        ]
    served = _evaluate_system(pipeline, RERANKED_SYSTEM, judgments_path, settings)
    from ranker.training.jobs import load_training_data

    in_sample = manifest.get("data_sha256") == load_training_data(
        settings, judgments=judgments_path
    ).sha256
    note = (
        "served model, in-sample: trained on these queries"
        if in_sample
        else "served model"
    )
    results += _system_results(f"{RERANKED_SYSTEM.name} (served)", served, note)
    preamble = (
        f"Judgments: `{judgments_path}`. Reranker: `{served_dir}` "
        f"({manifest.get('model_id', 'untracked')}). NDCG@10 with ESCI gains E 1, S 0.1, "
        "C 0.01, I 0; Recall@100 and MRR count E, S and C as relevant."
    )
    paths = write_report(results, out, title="shoprank evaluation", preamble=preamble)
    return results, paths
