"""The registration step: the variant a compression gate chose becomes a candidate version
in the model registry, with its lineage and metrics; promotion then runs the registry's gate.

The registered directory is the chosen variant with the compression gate's verdict in its
manifest (``shoprank.json``: ``gate``, and ``serving`` with the input length it was judged
at, which loading reads). A run keyed by the hash of its inputs (``key``) registers at most
one version per role: the registry hands back the version those inputs built.

Production's NDCG@10 on the job's judgments is what a candidate is promoted against. When
production is the model this job compressed (the teacher, or the bi-encoder's source) and no
figure for those judgments is recorded yet, the one the job measured for it in the same run
is recorded (``metrics.on_judgments``), so the comparison is like for like.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ranker.compress.embedder import EmbedderReport, read_embedder_report
from ranker.compress.export import install_gated
from ranker.compress.records import CompressConfig, CompressionReport, read_json
from ranker.model_files import read_manifest
from ranker.promotion import (
    BASIS,
    NDCG,
    ON_JUDGMENTS,
    GateDecision,
    PromotionRefusedError,
    production_figure,
    promote_gated,
)
from ranker.registry import ModelVersion, Registry, VersionState
from ranker.settings import Settings

logger = logging.getLogger(__name__)

JOB = "compress"
EMBEDDER_BASIS = "dense retrieval over the catalog (exact inner product), judged queries"


def open_registry(settings: Settings) -> Registry:
    """The model registry (seeded on first use)."""
    from ranker.serving_models import open_registry as open_seeded

    return open_seeded(settings)


def built_before(settings: Settings, role: str, key: str | None) -> ModelVersion | None:
    """The version a run with inputs hashed to ``key`` registered, if any."""
    return open_registry(settings).find_by_key(role, key) if key is not None else None


def register_student(
    settings: Settings,
    config: CompressConfig,
    *,
    gate: Path,
    teacher: Path,
    key: str | None = None,
    task_id: str | None = None,
) -> str | None:
    """Register the student the gate step chose (``gate.json``) as a candidate reranker;
    its version (``v3``), or None when no student passed. ``teacher``: the teacher step's
    summary."""
    report = CompressionReport.from_dict(read_json(gate))
    chosen = report.chosen
    if chosen is None or chosen.path is None:
        return None
    summary = read_json(teacher)
    staging = gate.parent / "gated-reranker"
    install_gated(
        Path(chosen.path),
        staging,
        {
            "variant": chosen.name,
            "cv_ndcg@10": chosen.cv_ndcg,
            "teacher": report.teacher,
            "teacher_ndcg@10": report.teacher_cv_ndcg,
            "gate_ndcg@10": report.gate_value,
            "gate_basis": report.gate_basis,
            "p50_ms": chosen.p50_ms,
        },
    )
    hyperparameters = (read_manifest(staging) or {}).get("hyperparameters") or {}
    lineage: dict[str, Any] = {
        "teacher": summary["ref"],
        "teacher_weights_sha256": summary["weights_sha256"],
        "data_sha256": summary["data_sha256"],
        "catalog_sha256": summary["catalog_sha256"],
        "catalog": summary["catalog"],
        "judgments": summary["judgments"],
        "variant": chosen.name,
        "quantization": chosen.precision,
        "recipe": {
            **hyperparameters,
            "layers": chosen.layers,
            "max_length": chosen.max_length,
            "folds": config.folds,
            "pseudo_queries": config.pseudo_queries,
            "judged_query_depth": config.judged_query_depth,
            "pseudo_query_depth": config.pseudo_query_depth,
        },
    }
    if summary["version"] is not None:
        lineage["derived_from"] = summary["version"]
    metrics = {
        NDCG: chosen.cv_ndcg,
        "ndcg_basis": f"{report.folds}-fold cross-validation by query, rerank task",
        "judgments_sha256": summary["data_sha256"],
        "rerank50_p50_ms": chosen.p50_ms,
        "rerank50_p99_ms": chosen.p99_ms,
        "teacher_ndcg@10": report.teacher_cv_ndcg,
        "gate_ndcg@10": report.gate_value,
        "gate_basis": report.gate_basis,
    }
    registry = open_registry(settings)
    version = _register(registry, "reranker", staging, lineage, metrics, key, task_id)
    _record_production_figure(
        registry,
        "reranker",
        summary["version"],
        judgments_sha256=summary["data_sha256"],
        figure=report.gate_value,
        basis=f"the teacher, rerank task: {report.gate_basis}",
    )
    return version.version


def register_embedder(
    settings: Settings,
    *,
    report: Path,
    key: str | None = None,
    task_id: str | None = None,
) -> str | None:
    """Register the bi-encoder variant the embedder step chose (``embedder.json``) as a
    candidate embedder derived from its source; its version, or None when none passed."""
    measured = read_embedder_report(report)
    chosen = measured.chosen
    if chosen is None or chosen.path is None:
        return None
    source = measured.variants[0]
    staging = report.parent / "gated-embedder"
    install_gated(
        Path(chosen.path),
        staging,
        {
            "variant": chosen.name,
            "recall@100": chosen.recall_at_100,
            "ndcg@10": chosen.ndcg_at_10,
            "source_recall@100": source.recall_at_100,
            "source_ndcg@10": source.ndcg_at_10,
            "mean_cosine": chosen.mean_cosine,
            "max_drop": measured.max_recall_drop,
        },
        serving={"max_length": chosen.max_length},
    )
    lineage: dict[str, Any] = {
        "source_model": measured.source,
        "source_path": measured.source_path,
        "data_sha256": measured.data_sha256,
        "catalog_sha256": measured.catalog_sha256,
        "variant": chosen.name,
        "quantization": Path(chosen.path).name,
        "recipe": {"max_length": chosen.max_length},
    }
    if measured.source_version is not None:
        lineage["derived_from"] = measured.source_version
    metrics = {
        "recall@100": chosen.recall_at_100,
        NDCG: chosen.ndcg_at_10,
        "mean_cosine": chosen.mean_cosine,
        "ndcg_basis": EMBEDDER_BASIS,
        "judgments_sha256": measured.data_sha256,
        "source_recall@100": source.recall_at_100,
        "source_ndcg@10": source.ndcg_at_10,
        "query_p50_ms": chosen.query_p50_ms,
        "docs_per_s": chosen.docs_per_s,
    }
    registry = open_registry(settings)
    version = _register(registry, "embedder", staging, lineage, metrics, key, task_id)
    if source.ndcg_at_10 is not None:
        _record_production_figure(
            registry,
            "embedder",
            measured.source_version,
            judgments_sha256=measured.data_sha256,
            figure=source.ndcg_at_10,
            basis=EMBEDDER_BASIS,
        )
    return version.version


def promote_candidate(settings: Settings, role: str, version: str) -> GateDecision:
    """The registry's promotion gate for ``role/version``; production moves when it passes.

    A refusal is logged and returned (``passed`` false, with the reasons), not raised.
    """
    registry = open_registry(settings)
    try:
        return promote_gated(registry, role, version, settings.registry, actor=JOB)
    except PromotionRefusedError as exc:
        logger.warning("%s/%s registered, not promoted: %s", role, version, exc.message)
        return exc.decision


def apply_registration(
    report: CompressionReport | EmbedderReport,
    settings: Settings,
    role: str,
    version: str | None,
    *,
    promote: bool,
) -> None:
    """Record ``version`` in ``report`` and, with ``promote``, promote it through the gate
    (a version that is already production, or was retired, is left as it is)."""
    if version is None:
        return
    found = open_registry(settings).get(role, version)
    report.registered, report.served_path = found.ref, str(found.path)
    report.promoted = found.state is VersionState.PRODUCTION
    report.promotion_note = ""
    if report.promoted:
        return
    if not promote:
        report.promotion_note = "promotion not asked (`shoprank models promote` serves it)"
    elif found.state is VersionState.RETIRED:
        report.promotion_note = f"{found.ref} was retired; promote it by hand"
    else:
        decision = promote_candidate(settings, role, version)
        report.promoted = decision.passed
        report.promotion_note = "" if decision.passed else "; ".join(decision.failures)


def _register(
    registry: Registry,
    role: str,
    staging: Path,
    lineage: Mapping[str, Any],
    metrics: Mapping[str, Any],
    key: str | None,
    task_id: str | None,
) -> ModelVersion:
    version = registry.register(
        role,
        staging,
        lineage=lineage,
        metrics=metrics,
        job=JOB,
        task_id=task_id,
        key=key,
        move=True,
    )
    shutil.rmtree(staging, ignore_errors=True)  # left when the key found an earlier version
    logger.info("registered %s (candidate) from the compression gate's choice", version.ref)
    return version


def _record_production_figure(
    registry: Registry,
    role: str,
    version: str | None,
    *,
    judgments_sha256: str,
    figure: float,
    basis: str,
) -> None:
    """Record ``figure`` as production's NDCG@10 on these judgments when production is
    ``version`` (the model this job measured) and no figure for them is known yet."""
    production = registry.production(role)
    if version is None or production is None or production.version != version:
        return
    if production_figure(production, judgments_sha256) is not None:
        return
    recorded = dict(production.metrics.get(ON_JUDGMENTS) or {})
    recorded[judgments_sha256] = {NDCG: figure, BASIS: basis, "job": JOB}
    registry.update(role, version, metrics={**production.metrics, ON_JUDGMENTS: recorded})
    logger.info(
        "%s: NDCG@10 %.4f on judgments %s… recorded (%s)",
        production.ref,
        figure,
        judgments_sha256[:12],
        basis,
    )
