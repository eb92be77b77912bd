"""Training jobs with plain inputs, for the CLI now and Celery tasks later."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.catalog import (
    CatalogFile,
    CatalogInput,
    TextTemplate,
    catalog_file,
    load_products,
    sample_catalog_path,
    sample_judgments_path,
)
from ranker.errors import InputError
from ranker.evaluation.bootstrap import PairedDifference
from ranker.evaluation.judgment_files import JudgmentsInput
from ranker.evaluation.judgments import Judgments, load_judgments
from ranker.loading import uncompressed
from ranker.model_files import read_manifest
from ranker.registry import ModelVersion
from ranker.serving_models import trained_metrics
from ranker.settings import Settings
from ranker.training.artifacts import data_sha256, save_cross_encoder
from ranker.training.bi_encoder import BiEncoderConfig
from ranker.training.cross_encoder import CrossEncoderConfig, train_cross_encoder
from ranker.training.device import resolve_device
from ranker.training.reranker_pairs import PriorScores, Unjudged, dense_priors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    """Judgments, the text of every catalog product, and their hash; where they came from."""

    judgments: Judgments
    product_texts: dict[str, str]
    sha256: str
    """Of the judgments and the judged products' texts (see ``data_sha256``)."""
    catalog: CatalogFile | None = None
    """The catalog file the texts were read from, with its mapping."""
    catalog_sha256: str | None = None
    """Of that file's bytes."""


def load_training_data(
    settings: Settings,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
) -> TrainingData:
    """Judgments and the catalog's product texts rendered with the settings' template.

    None: the bundled sample judgments or catalog. A JudgmentsFile or CatalogFile brings
    the mapping it is read with.
    """
    loaded = load_judgments(judgments or sample_judgments_path(), gains=settings.label_gains)
    template = TextTemplate(settings.index.text_template)
    source = catalog_file(catalog if catalog is not None else sample_catalog_path())
    texts = {p.id: template.render(p) for p in load_products(source)}
    judged = sum(len(q) for q in loaded.qrels.values())
    missing = sum(1 for q in loaded.qrels.values() for pid in q if pid not in texts)
    if missing == judged:
        raise InputError(
            f"none of the {judged} judged products is in the catalog {source.describe()}: "
            "are the judgments' product_id column and the catalog's id field mapped to the "
            "same ids?"
        )
    if missing:
        logger.warning("%d judged products are not in the catalog; they are skipped", missing)
    rows = [
        (qid, loaded.queries[qid], pid, label)
        for qid, labels in loaded.labels.items()
        for pid, label in labels.items()
    ]
    return TrainingData(loaded, texts, data_sha256(rows, texts), source, file_sha256(source.path))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reranker_config(settings: Settings, overrides: Mapping[str, Any]) -> CrossEncoderConfig:
    """Training hyperparameters: defaults aligned with serving settings, then overrides."""
    return CrossEncoderConfig(
        max_length=settings.rerank.max_length,
        max_query_tokens=settings.api.max_query_tokens,
        seed=settings.seed,
        **dict(overrides),
    )


def bi_encoder_config(settings: Settings, overrides: Mapping[str, Any]) -> BiEncoderConfig:
    """The bi-encoder's training hyperparameters: defaults aligned with serving, then
    overrides."""
    return BiEncoderConfig(
        max_length=settings.embedder.max_length, seed=settings.seed, **dict(overrides)
    )


def prior_scores(
    settings: Settings,
    data: TrainingData,
    config: CrossEncoderConfig,
    unjudged: Unjudged | None = None,
) -> tuple[PriorScores | None, dict[str, Any] | None]:
    """The serving bi-encoder's cosine for every judged pair (and every ``unjudged``
    negative), and that bi-encoder's identity. Products the shop's index holds have their
    vectors read from it, as serving reads them."""
    if config.prior == "none":
        return None, None
    from ranker.loading import indexed_vectors, load_embedder

    embedder = load_embedder(settings)
    identity = {
        "model_id": embedder.identity.model_id,
        "weights_sha256": embedder.identity.weights_sha256,
        "dimension": embedder.identity.dimension,
    }
    stored = indexed_vectors(settings, embedder)
    priors = dense_priors(
        embedder,
        data.judgments,
        data.product_texts,
        unjudged,
        stored=stored,
        titles=config.title_cosine,
    )
    return priors, identity


def unjudged_negatives(
    settings: Settings, data: TrainingData, *, count: int, depth: int
) -> dict[str, list[str]] | None:
    """Up to ``count`` retrieved, unjudged products per judged query, drawn from the top
    ``depth`` of the shop's index (served retrieval, no reranker); None when ``count`` is 0.
    Needs `shoprank index` of the shop's catalog."""
    if count == 0:
        return None
    from ranker.loading import open_serving_pipeline
    from ranker.training.retrieved_negatives import retrieved_unjudged, sample_unjudged

    pipeline = open_serving_pipeline(settings, with_reranker=False)
    pools = retrieved_unjudged(pipeline, data.judgments, depth=depth, progress=True)
    sampled = sample_unjudged(pools, count=count, seed=settings.seed)
    logger.info(
        "%d unjudged negatives for %d queries from the top %d",
        sum(len(pids) for pids in sampled.values()),
        len(sampled),
        depth,
    )
    return sampled


def checkpoint_dir(settings: Settings, role: str) -> Path:
    """Where a training run of ``role`` keeps its checkpoints by default."""
    return settings.home / "checkpoints" / role


def train_reranker_job(
    settings: Settings,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    out: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    folds: int = 0,
    register: bool = True,
    job: str = "train",
    task_id: str | None = None,
    checkpoints: Path | None = None,
    resume: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Train the cross-encoder on all judged queries, save it with its manifest and register
    it as a candidate reranker (``summary["version"]``; it serves once promoted).

    ``checkpoints``: where the final training run saves its state every
    ``checkpoint_every`` steps; with ``resume`` it continues from there (the
    cross-validation folds, when asked for, run again). With ``unjudged_negatives`` in the
    overrides, retrieved unjudged products join the training pairs as weak negatives (see
    ``ranker.training.cross_encoder``); that needs the shop's index.

    Without ``out`` the model is written to a work directory that the registry then takes
    in; with ``out`` it stays there and the registry keeps a copy.

    With ``folds >= 2`` it first cross-validates the same recipe by query (both ESCI tasks,
    through the pipeline over the built index) and records the figures in the manifest.
    Both use the configured bi-encoder itself, not a compressed variant of it: the prior is
    fitted on the source model's cosine, which its exports serve in its place.
    """
    settings = uncompressed(settings)
    config = reranker_config(settings, overrides or {})
    resolve_device(config.device)  # no GPU where one was asked for: say so before the work
    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    unjudged = unjudged_negatives(
        settings, data, count=config.unjudged_negatives, depth=config.unjudged_depth
    )
    priors, prior_embedder = prior_scores(settings, data, config, unjudged)
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
            unjudged=unjudged,
        )
        cross_validation = {
            "folds": folds,
            "retrieval_weight": settings.rerank.retrieval_weight,
            **cv.summary(),
        }
    result = train_cross_encoder(
        data.judgments,
        data.product_texts,
        config,
        priors=priors,
        unjudged=unjudged,
        checkpoints=checkpoints,
        resume=resume,
    )
    path = out or _work_dir(settings, "reranker", task_id)
    metrics["validation_ndcg@10"] = result.best_validation_ndcg
    over_prior = over_prior_summary(result.over_prior)
    if over_prior is not None:
        metrics["validation_over_prior"] = over_prior
    save_cross_encoder(
        result,
        path,
        config=config,
        data_sha256=data.sha256,
        metrics=metrics,
        prior_embedder=prior_embedder,
        cross_validation=cross_validation,
    )
    summary: dict[str, Any] = {
        "validation_ndcg@10": result.best_validation_ndcg,
        "train_queries": len(result.train_queries),
        "validation_queries": len(result.validation_queries),
        "prior": result.prior,
        "cross_encoder_over_prior": over_prior,
        "unjudged_negatives": sum(len(pids) for pids in (unjudged or {}).values()),
        "cross_validation": cross_validation,
        "seconds": round(result.seconds, 1),
    }
    if register:
        version = _register(
            settings,
            "reranker",
            path,
            move=out is None,
            lineage={
                "source_model": config.base_model,
                "prior_embedder": prior_embedder,
                "data_sha256": data.sha256,
                "catalog": catalog_file(catalog or sample_catalog_path()).describe(),
                "recipe": config.model_dump(mode="json"),
            },
            metrics=trained_metrics(read_manifest(path) or {}),
            job=job,
            task_id=task_id,
        )
        summary["version"] = version.version
        path = version.path
    return path, summary


def over_prior_summary(difference: PairedDifference | None) -> dict[str, Any] | None:
    """What the summary and manifest say of a cross-encoder against its prior alone on the
    validation queries: the mean NDCG@10 difference, its 95 % interval and the queries."""
    if difference is None:
        return None
    return {
        "ndcg@10": round(difference.mean, 4),
        "interval": [round(bound, 4) for bound in difference.interval],
        "queries": difference.queries,
    }


def _work_dir(settings: Settings, role: str, task_id: str | None) -> Path:
    """A fresh directory for one job's model before the registry takes it in."""
    name = f"{role}-{task_id or time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return settings.home / "work" / name


def _register(
    settings: Settings,
    role: str,
    path: Path,
    *,
    move: bool,
    lineage: Mapping[str, Any],
    metrics: Mapping[str, Any],
    job: str,
    task_id: str | None,
) -> ModelVersion:
    from ranker.serving_models import open_registry

    version = open_registry(settings).register(
        role, path, lineage=lineage, metrics=metrics, job=job, task_id=task_id, move=move
    )
    logger.info("registered %s (candidate; `shoprank models promote` serves it)", version.ref)
    return version


def train_bi_encoder_job(
    settings: Settings,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    out: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    register: bool = True,
    job: str = "train",
    task_id: str | None = None,
    checkpoints: Path | None = None,
    resume: bool = False,
    folds: int = 0,
) -> tuple[Path, dict[str, Any]]:
    """Fine-tune the bi-encoder on the judgments and register it as a candidate embedder;
    with the ``margin-mse`` loss the served teacher reranker (uncompressed, its dense prior
    included) scores the pairs. A new bi-encoder changes the vectors: it serves after a
    reindex with it. ``unjudged_negatives`` in the overrides adds retrieved, unjudged hard
    negatives (needs the shop's index); ``checkpoints`` and ``resume`` as for the reranker.
    With ``folds >= 2`` it first cross-validates the recipe by query in the rerank task,
    under the reranker's prior, against the base model (see
    :mod:`ranker.training.bi_encoder_cv`), and records the figures in the manifest."""
    from ranker.loading import load_embedder, load_reranker
    from ranker.training.bi_encoder import save_bi_encoder, train_bi_encoder
    from ranker.training.bi_encoder_cv import (
        cross_validate_bi_encoder,
        gate_metrics,
        record_base_figure,
    )

    config = bi_encoder_config(settings, overrides or {})
    resolve_device(config.device)  # no GPU where one was asked for: say so before the work
    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    teacher = None
    if config.loss == "margin-mse":
        sources = uncompressed(settings)
        teacher = load_reranker(sources, embedder=load_embedder(sources)).score
    unjudged = unjudged_negatives(
        settings, data, count=config.unjudged_negatives, depth=config.unjudged_depth
    )
    cross_validation: dict[str, Any] | None = None
    if folds >= 2:
        cv = cross_validate_bi_encoder(
            data.judgments,
            data.product_texts,
            config,
            reranker_config(settings, {}),
            folds=folds,
            seed=settings.seed,
            teacher=teacher,
            unjudged=unjudged,
        )
        cross_validation = {"folds": folds, **cv.summary()}
    result = train_bi_encoder(
        data.judgments,
        data.product_texts,
        config,
        teacher=teacher,
        unjudged=unjudged,
        checkpoints=checkpoints,
        resume=resume,
    )
    path = out or _work_dir(settings, "embedder", task_id)
    save_bi_encoder(
        result, path, config=config, data_sha256=data.sha256, cross_validation=cross_validation
    )
    summary: dict[str, Any] = {
        "validation_ndcg@10": result.best_validation_ndcg,
        "cross_validation": cross_validation,
        "seconds": round(result.seconds, 1),
    }
    if register:
        version = _register(
            settings,
            "embedder",
            path,
            move=out is None,
            lineage={
                "source_model": config.base_model,
                "data_sha256": data.sha256,
                "recipe": config.model_dump(mode="json"),
            },
            metrics={
                "validation_ndcg@10": result.best_validation_ndcg,
                **(gate_metrics(cross_validation, data.sha256) if cross_validation else {}),
            },
            job=job,
            task_id=task_id,
        )
        summary["version"] = version.version
        path = version.path
        if cross_validation:
            from ranker.model_files import resolve_model_dir
            from ranker.serving_models import open_registry

            recorded = record_base_figure(
                open_registry(settings),
                resolve_model_dir(config.base_model),
                cross_validation,
                data.sha256,
            )
            if recorded is not None:
                summary["production_figure_recorded"] = recorded
    return path, summary
