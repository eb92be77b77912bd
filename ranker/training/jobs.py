"""Training jobs with plain inputs, for the CLI now and Celery tasks later."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.catalog import TextTemplate, load_products, sample_catalog_path, sample_judgments_path
from ranker.evaluation.judgments import Judgments, load_judgments
from ranker.loading import TRAINED_RERANKER_DIR, uncompressed
from ranker.settings import Settings
from ranker.training.artifacts import data_sha256
from ranker.training.cross_encoder import (
    CrossEncoderConfig,
    PriorScores,
    dense_priors,
    save_cross_encoder,
    train_cross_encoder,
)

logger = logging.getLogger(__name__)

TRAINED_EMBEDDER_DIR = "embedder"


@dataclass(frozen=True)
class TrainingData:
    """Judgments, the text of every judged product, and their hash."""

    judgments: Judgments
    product_texts: dict[str, str]
    sha256: str


def load_training_data(
    settings: Settings, *, judgments: Path | None = None, catalog: Path | None = None
) -> TrainingData:
    """Judgments (the sample by default) and product texts rendered with the settings' template."""
    loaded = load_judgments(judgments or sample_judgments_path(), gains=settings.label_gains)
    template = TextTemplate(settings.index.text_template)
    texts = {p.id: template.render(p) for p in load_products(catalog or sample_catalog_path())}
    missing = sum(1 for q in loaded.qrels.values() for pid in q if pid not in texts)
    if missing:
        logger.warning("%d judged products are not in the catalog; they are skipped", missing)
    rows = [
        (qid, loaded.queries[qid], pid, label)
        for qid, labels in loaded.labels.items()
        for pid, label in labels.items()
    ]
    return TrainingData(loaded, texts, data_sha256(rows, texts))


def reranker_config(settings: Settings, overrides: Mapping[str, Any]) -> CrossEncoderConfig:
    """Training hyperparameters: defaults aligned with serving settings, then overrides."""
    return CrossEncoderConfig(
        max_length=settings.rerank.max_length,
        max_query_tokens=settings.api.max_query_tokens,
        seed=settings.seed,
        **dict(overrides),
    )


def prior_scores(
    settings: Settings, data: TrainingData, config: CrossEncoderConfig
) -> tuple[PriorScores | None, dict[str, Any] | None]:
    """The serving bi-encoder's cosine for every judged pair, and that bi-encoder's identity."""
    if config.prior == "none":
        return None, None
    from ranker.loading import load_embedder

    embedder = load_embedder(settings)
    identity = {
        "model_id": embedder.identity.model_id,
        "weights_sha256": embedder.identity.weights_sha256,
        "dimension": embedder.identity.dimension,
    }
    return dense_priors(embedder, data.judgments, data.product_texts), identity


def train_reranker_job(
    settings: Settings,
    *,
    judgments: Path | None = None,
    catalog: Path | None = None,
    out: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    folds: int = 0,
) -> tuple[Path, dict[str, Any]]:
    """Train the cross-encoder on all judged queries and save it with its manifest.

    With ``folds >= 2`` it first cross-validates the same recipe by query (both ESCI tasks,
    through the pipeline over the built index) and records the figures in the manifest.
    Both use the configured bi-encoder itself, not a compressed variant of it: the prior is
    fitted on the source model's cosine, which its exports serve in its place.
    """
    settings = uncompressed(settings)
    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    config = reranker_config(settings, overrides or {})
    priors, prior_embedder = prior_scores(settings, data, config)
    metrics: dict[str, Any] = {}
    cross_validation: dict[str, Any] | None = None
    if folds >= 2:
        from ranker.loading import open_serving_pipeline
        from ranker.training.cross_validation import cross_validate_reranker

        pipeline = open_serving_pipeline(settings, with_reranker=False)
        cv = cross_validate_reranker(
            pipeline,
            data,
            config,
            priors=priors,
            folds=folds,
            seed=settings.seed,
            runs_out=settings.home / "cv-runs",
            other_retrieval_weights=(0.0, 1.0),
        )
        cross_validation = {
            "folds": folds,
            "retrieval_weight": settings.rerank.retrieval_weight,
            **{task: r.means for task, r in cv.items()},
        }
    result = train_cross_encoder(data.judgments, data.product_texts, config, priors=priors)
    path = out or settings.models_path / TRAINED_RERANKER_DIR
    metrics["validation_ndcg@10"] = result.best_validation_ndcg
    save_cross_encoder(
        result,
        path,
        config=config,
        data_sha256=data.sha256,
        metrics=metrics,
        prior_embedder=prior_embedder,
        cross_validation=cross_validation,
    )
    summary = {
        "validation_ndcg@10": result.best_validation_ndcg,
        "train_queries": len(result.train_queries),
        "validation_queries": len(result.validation_queries),
        "prior": result.prior,
        "cross_validation": cross_validation,
        "seconds": round(result.seconds, 1),
    }
    return path, summary


def train_bi_encoder_job(
    settings: Settings,
    *,
    judgments: Path | None = None,
    catalog: Path | None = None,
    out: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Fine-tune the bi-encoder on the judgments; with the ``margin-mse`` loss the served
    teacher reranker (uncompressed, its dense prior included) scores the pairs."""
    from ranker.loading import load_embedder, load_reranker
    from ranker.training.bi_encoder import BiEncoderConfig, save_bi_encoder, train_bi_encoder

    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    config = BiEncoderConfig(
        max_length=settings.embedder.max_length, seed=settings.seed, **dict(overrides or {})
    )
    teacher = None
    if config.loss == "margin-mse":
        sources = uncompressed(settings)
        teacher = load_reranker(sources, embedder=load_embedder(sources)).score
    result = train_bi_encoder(data.judgments, data.product_texts, config, teacher=teacher)
    path = out or settings.models_path / TRAINED_EMBEDDER_DIR
    save_bi_encoder(result, path, config=config, data_sha256=data.sha256)
    summary = {
        "validation_ndcg@10": result.best_validation_ndcg,
        "seconds": round(result.seconds, 1),
    }
    return path, summary
