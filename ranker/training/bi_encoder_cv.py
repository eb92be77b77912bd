"""k-fold cross-validation of the bi-encoder's recipe, split by query, in the rerank task.

The bi-encoder serves twice: in retrieval, and as the cosine in the reranker's prior. This
scores the second, which needs no index per fold. Each fold fine-tunes the bi-encoder on the
other folds' queries, fits the reranker's linear prior (cosine and lexical features, as
reranker training fits it before its cross-encoder trains) over that model's cosines on the
same queries, and orders its own queries' judged products by that prior. The base model,
under a prior fitted the same way, is scored beside it, so every judged query is scored by
two rankers that never saw it: zero-shot and fine-tuned.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.stores.base import ModelIdentity
from ranker.backends import ModelTask
from ranker.backends.torch_backend import TorchBackend
from ranker.embedder import Embedder
from ranker.evaluation.bootstrap import bootstrap_interval, paired_values_difference
from ranker.evaluation.judgments import Judgments, kfold_query_splits
from ranker.model_files import weights_sha256
from ranker.promotion import BASIS, JUDGMENTS, NDCG, ON_JUDGMENTS, production_figure
from ranker.registry import Registry
from ranker.training.bi_encoder import BiEncoderConfig, TeacherScores, train_bi_encoder
from ranker.training.common import TrainingResult, rerank_ndcg_by_query
from ranker.training.cross_encoder import CrossEncoderConfig
from ranker.training.reranker_pairs import PriorScores, Unjudged, dense_priors
from ranker.training.trainable_prior import fit_prior_alone, prior_alone_scorer

logger = logging.getLogger(__name__)


@dataclass
class BiEncoderCrossValidation:
    """Rerank-task NDCG@10 per query under each bi-encoder's prior, and each fold's kept step."""

    base: dict[str, float]
    """qid -> NDCG@10 of the prior over the base (zero-shot) model, fitted on the other folds."""
    fine_tuned: dict[str, float]
    """qid -> NDCG@10 of the prior over the model fine-tuned on the other folds."""
    kept_steps: list[int | None] = field(default_factory=list)
    """Per fold: the training step early stopping kept (0: no step beat the base model)."""

    def summary(self) -> dict[str, Any]:
        """What the job's summary and the manifest record: both means with their 95 %
        intervals, the paired difference, and the kept steps."""
        difference = paired_values_difference(self.fine_tuned, self.base)
        return {
            "task": "rerank",
            "zero_shot": _mean_with_interval(self.base),
            "fine_tuned": _mean_with_interval(self.fine_tuned),
            "fine_tuned_over_zero_shot": {
                "ndcg@10": round(difference.mean, 4),
                "interval": [round(bound, 4) for bound in difference.interval],
                "queries": difference.queries,
            },
            "kept_steps": self.kept_steps,
        }


def gate_metrics(cross_validation: Mapping[str, Any], judgments_sha256: str) -> dict[str, Any]:
    """The fine-tuned arm's cross-validated figure as the promotion gate reads a candidate's
    (``ndcg@10`` with its basis and judgments)."""
    return {
        NDCG: cross_validation["fine_tuned"]["ndcg@10"],
        BASIS: _basis(cross_validation),
        JUDGMENTS: judgments_sha256,
    }


def record_base_figure(
    registry: Registry,
    base_model_dir: Path,
    cross_validation: Mapping[str, Any],
    judgments_sha256: str,
) -> str | None:
    """Give the production bi-encoder the zero-shot arm's figure on these judgments, when it
    is the base model the folds started from (the same weights) and has no figure on them
    yet, so the gate compares the two arms of one cross-validation. Returns its ref, or None
    when nothing was recorded."""
    production = registry.production("embedder")
    if production is None or production_figure(production, judgments_sha256) is not None:
        return None
    if weights_sha256(production.path) != weights_sha256(base_model_dir):
        return None
    metrics = dict(production.metrics)
    metrics[ON_JUDGMENTS] = {
        **(metrics.get(ON_JUDGMENTS) or {}),
        judgments_sha256: {
            NDCG: cross_validation["zero_shot"]["ndcg@10"],
            BASIS: _basis(cross_validation),
        },
    }
    registry.update("embedder", production.version, metrics=metrics)
    return production.ref


def _basis(cross_validation: Mapping[str, Any]) -> str:
    return (
        f"{cross_validation['folds']}-fold cross-validation by query, rerank task under the "
        "reranker's prior"
    )


def cross_validate_bi_encoder(
    judgments: Judgments,
    product_texts: Mapping[str, str],
    config: BiEncoderConfig,
    prior: CrossEncoderConfig,
    *,
    folds: int,
    seed: int,
    teacher: TeacherScores | None = None,
    unjudged: Unjudged | None = None,
) -> BiEncoderCrossValidation:
    """Cross-validate ``config``'s fine-tuning by query (see the module docstring); the
    prior is fitted with ``prior``'s targets, lexical features and L2. ``unjudged``: each
    query's retrieved, unjudged products, used as the recipe asks (hard negatives, and weak
    negatives in the prior's fit when the reranker's recipe has them). ``teacher``: the
    ``margin-mse`` loss's reranker; one trained on every judged query has seen the test
    folds' queries too, so its figures flatter that loss."""
    base_embedder = Embedder.load(config.base_model, backend="torch", max_length=config.max_length)
    titles = prior.title_cosine
    base_cosines = dense_priors(base_embedder, judgments, product_texts, unjudged, titles=titles)
    splits = kfold_query_splits(list(judgments.queries), folds=folds, seed=seed)
    result = BiEncoderCrossValidation(base={}, fine_tuned={})
    for number, (train_qids, test_qids) in enumerate(splits, start=1):
        logger.info(
            "fold %d/%d: %d train, %d test queries", number, folds, len(train_qids), len(test_qids)
        )
        trained = train_bi_encoder(
            judgments,
            product_texts,
            config,
            train_qids=train_qids,
            progress=False,
            teacher=teacher,
            unjudged=unjudged,
        )
        result.kept_steps.append(trained.kept_step)
        cosines = dense_priors(
            _fold_embedder(trained), judgments, product_texts, unjudged, titles=titles
        )
        for scores, priors in ((result.base, base_cosines), (result.fine_tuned, cosines)):
            scores.update(
                _prior_ndcg(
                    judgments, product_texts, priors, prior, train_qids, test_qids, unjudged
                )
            )
        logger.info(
            "fold %d/%d: kept step %s; NDCG@10 under the prior %.4f zero-shot, %.4f fine-tuned",
            number,
            folds,
            trained.kept_step,
            np.mean([result.base[qid] for qid in test_qids]),
            np.mean([result.fine_tuned[qid] for qid in test_qids]),
        )
    return result


def _fold_embedder(trained: TrainingResult) -> Embedder:
    """A serving Embedder around a fold's model still in memory."""
    dimension = int(trained.model.config.hidden_size)
    return Embedder(
        tokenizer=trained.tokenizer,
        backend=TorchBackend.from_model(trained.model, task=ModelTask.EMBED),
        identity=ModelIdentity(model_id="cv-fold", weights_sha256="", dimension=dimension),
    )


def _prior_ndcg(
    judgments: Judgments,
    product_texts: Mapping[str, str],
    priors: PriorScores,
    config: CrossEncoderConfig,
    train_qids: Sequence[str],
    test_qids: Sequence[str],
    unjudged: Unjudged | None,
) -> dict[str, float]:
    """NDCG@10 of ``test_qids`` ordered by the prior fitted on ``train_qids``."""
    fitted = fit_prior_alone(
        judgments, train_qids, product_texts, config, priors, unjudged=unjudged
    )
    score = prior_alone_scorer(fitted, judgments, product_texts, priors)
    return rerank_ndcg_by_query(score, judgments, test_qids, product_texts)


def _mean_with_interval(values: Mapping[str, float]) -> dict[str, Any]:
    """The mean NDCG@10 and its 95 % bootstrap interval, rounded as reports show them."""
    low, high = bootstrap_interval(list(values.values()))
    return {
        "ndcg@10": round(float(np.mean(list(values.values()))), 4),
        "interval": [
            round(low, 4),
            round(high, 4),
        ],
    }
