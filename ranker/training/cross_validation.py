"""k-fold cross-validation of the reranker, split by query, on both ESCI tasks.

Each fold trains a cross-encoder on the other folds' queries and scores its own queries
through the same pipeline code that serves; the folds' runs are merged, so every judged
query is scored by a model that never saw it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ranker.backends import ModelTask
from ranker.backends.no_cross_encoder import NoCrossEncoder
from ranker.backends.torch_backend import TorchBackend
from ranker.embedder import Embedder
from ranker.evaluation.judgments import kfold_query_splits
from ranker.evaluation.metrics import EvalResult, Run, evaluate_run
from ranker.evaluation.systems import PRIOR_ALONE, RERANKED_SYSTEM, system_run
from ranker.evaluation.trec import write_trec_run
from ranker.pipeline import SearchPipeline
from ranker.reranker import DensePrior, Reranker
from ranker.training.common import TrainingResult
from ranker.training.cross_encoder import CrossEncoderConfig, train_cross_encoder
from ranker.training.jobs import TrainingData
from ranker.training.reranker_pairs import PriorScores, Unjudged

logger = logging.getLogger(__name__)


@dataclass
class CrossValidation:
    """The merged folds' results, and the step each fold's early stopping kept."""

    results: dict[str, EvalResult]
    """``"rerank"``, ``"retrieval"``, and their variants (see :func:`cross_validate_reranker`)."""
    kept_steps: list[int | None] = field(default_factory=list)
    """Per fold: the training step kept; 0 means no step beat the untrained start (with a
    prior, the fold serves its prior alone, and the two systems score the same)."""

    @property
    def trained_folds(self) -> int:
        """Folds whose kept model is a trained one (a step after 0)."""
        return sum(1 for step in self.kept_steps if step)

    def summary(self) -> dict[str, object]:
        """What a manifest records: each task's means, and the kept steps."""
        return {
            **{task: result.means for task, result in self.results.items()},
            "kept_steps": self.kept_steps,
        }


def fold_reranker(
    trained: TrainingResult, config: CrossEncoderConfig, embedder: Embedder
) -> Reranker:
    """A serving Reranker around a model still in memory."""
    prior = None
    if trained.prior is not None:
        prior = DensePrior.from_parameters(trained.prior, embedder)
    return Reranker(
        tokenizer=trained.tokenizer,
        backend=(
            NoCrossEncoder()
            if trained.model is None
            else TorchBackend.from_model(trained.model, task=ModelTask.SCORE)
        ),
        model_id="cv-fold",
        weights_sha256="",
        max_query_tokens=config.max_query_tokens,
        prior=prior,
    )


def cross_validate_reranker(
    pipeline: SearchPipeline,
    data: TrainingData,
    config: CrossEncoderConfig,
    *,
    priors: PriorScores | None,
    folds: int,
    seed: int,
    retrieval_depth: int = 100,
    runs_out: Path | None = None,
    other_retrieval_weights: Sequence[float] = (),
    relevant_at_least: float | None = None,
    unjudged: Unjudged | None = None,
) -> CrossValidation:
    """Cross-validated hybrid + rerank results: ``{"rerank": ..., "retrieval": ...}``, with
    the step each fold kept.

    A recipe with a dense prior is also scored by each fold's prior alone, its
    cross-encoder dropped, under ``"rerank, prior alone"`` and ``"retrieval, prior alone"``:
    what the cross-encoder adds over the prior it was trained beside.

    With ``runs_out`` the merged runs are also written there as TREC files
    (``cv-rerank.trec``, ``cv-retrieval-retrieval_weight-0.trec``, ...).
    ``other_retrieval_weights`` also scores each fold's queries with those
    ``rerank.retrieval_weight`` settings, under keys such as ``"rerank, retrieval_weight 0"``.
    ``relevant_at_least``: as for :func:`~ranker.evaluation.metrics.evaluate_run`.
    ``unjudged``: each query's retrieved, unjudged negatives (used when the recipe asks).
    """
    judgments = data.judgments
    splits = kfold_query_splits(list(judgments.queries), folds=folds, seed=seed)
    settings = pipeline.rerank_settings
    variants = {"": settings} | {
        f", retrieval_weight {weight:g}": settings.model_copy(update={"retrieval_weight": weight})
        for weight in other_retrieval_weights
        if weight != settings.retrieval_weight
    }
    runs: dict[str, Run] = {f"{task}{v}": {} for v in variants for task in ("rerank", "retrieval")}
    kept_steps: list[int | None] = []
    for number, (train_qids, test_qids) in enumerate(splits, start=1):
        logger.info(
            "fold %d/%d: %d train, %d test queries", number, folds, len(train_qids), len(test_qids)
        )
        trained = train_cross_encoder(
            judgments,
            data.product_texts,
            config,
            priors=priors,
            train_qids=train_qids,
            progress=False,
            unjudged=unjudged,
        )
        kept_steps.append(trained.kept_step)
        logger.info(
            "fold %d/%d: kept step %s (validation NDCG@10 %s)",
            number,
            folds,
            trained.kept_step,
            trained.best_validation_ndcg,
        )
        reranker = fold_reranker(trained, config, pipeline.embedder)
        queries = {qid: judgments.queries[qid] for qid in test_qids}
        candidates = {qid: list(judgments.qrels[qid]) for qid in test_qids}
        scored = [(variant, reranker, rerank) for variant, rerank in variants.items()]
        if reranker.prior is not None and reranker.has_cross_encoder:
            scored.append((PRIOR_ALONE, reranker.prior_alone(), settings))
        for variant, scorer, rerank_settings in scored:
            runs.setdefault(f"rerank{variant}", {})
            runs.setdefault(f"retrieval{variant}", {})
            fold_pipeline = pipeline.with_reranker(scorer, rerank_settings)
            runs[f"rerank{variant}"].update(
                system_run(
                    fold_pipeline, RERANKED_SYSTEM, queries, task="rerank", candidates=candidates
                )
            )
            runs[f"retrieval{variant}"].update(
                system_run(
                    fold_pipeline,
                    RERANKED_SYSTEM,
                    queries,
                    task="retrieval",
                    depth=retrieval_depth,
                )
            )
    if runs_out is not None:
        for name, run in runs.items():
            stem = name.replace(", ", "-").replace(" ", "-")
            write_trec_run(run, runs_out / f"cv-{stem}.trec", tag=f"cv{folds}")
    results = {
        task: evaluate_run(run, judgments.qrels, relevant_at_least=relevant_at_least)
        for task, run in runs.items()
    }
    return CrossValidation(results, kept_steps)
