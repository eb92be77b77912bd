"""`shoprank compress`: the bi-encoder, then the reranker, each a short chain of steps.

Every step is a module-level function with plain inputs and outputs (settings, paths, ids;
each writes its result as JSON in the work directory), so a Celery task can wrap each one
and a canvas can run the same chain:

1. the bi-encoder: ``measure_embedder`` (export, quantize, gate; ``embedder/embedder.json``),
   then ``register_embedder`` (a candidate embedder version);
2. ``score_with_teacher``: the teacher's scores (``teacher-pairs.jsonl``, cached) and
   summary (``teacher.json``);
3. ``train_students``, once per shape: cross-validated, trained, exported, quantized and
   timed (``student-<shape>.json`` and the variants' directories); for 0 layers,
   ``train_prior_student`` (the prior alone, with a miss embedder for texts the index does
   not hold: ``student-l0.json``);
4. ``choose_student``: the gate (``gate.json``);
5. ``register_student``: the chosen student as a candidate reranker version;
6. ``promote_candidate`` for each registered version when ``promote`` (the registry's gate:
   see ``ranker.promotion``);
7. ``write_report``: ``report.md``, ``report.png`` and ``report.json``.

The students are judged and timed with the bi-encoder that serves once step 1 is done. A
run keyed by the hash of its inputs (``key``, see ``ranker.compress.inputs``) whose reranker
was registered before does nothing again: it reports that version (and promotes it, when
asked and it is still a candidate).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

from indexer.catalog import CatalogInput
from ranker.compress.embedder import EmbedderReport, measure_embedder, read_embedder_report
from ranker.compress.gate import apply_gate, choose_student, stored_cv_ndcg
from ranker.compress.prior_student import train_prior_student
from ranker.compress.records import TEACHER, CompressConfig, CompressionReport, Variant, read_json
from ranker.compress.register import (
    apply_registration,
    built_before,
    register_embedder,
    register_student,
)
from ranker.compress.report import write_report
from ranker.compress.students import train_students
from ranker.compress.teacher import score_with_teacher, teacher_model
from ranker.evaluation.judgment_files import JudgmentsInput
from ranker.loading import uncompressed
from ranker.registry import ModelVersion
from ranker.settings import Settings

__all__ = [
    "TEACHER",
    "CompressConfig",
    "CompressionReport",
    "Variant",
    "apply_gate",
    "compress_bi_encoder",
    "compress_models",
    "compress_reranker",
    "stored_cv_ndcg",
    "write_report",
]

logger = logging.getLogger(__name__)


def compress_models(
    settings: Settings,
    config: CompressConfig,
    *,
    work_dir: Path,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    key: str | None = None,
    task_id: str | None = None,
    promote: bool = True,
    teacher: str | None = None,
) -> tuple[EmbedderReport, CompressionReport]:
    """The bi-encoder, then the reranker: each variant gated, the winners registered (and
    promoted through the registry's gate with ``promote``), one report (``report.md``,
    ``.png``, ``.json`` in ``work_dir``).

    ``judgments``, ``catalog``: the shop's files (None: the bundled samples); ``key``: the
    caller's hash of the inputs; ``teacher``: the reranker version to distil (None: the
    production reranker's source).
    """
    built = built_before(settings, "reranker", key)
    if built is not None:
        logger.info("compression inputs %s… already built %s; skipped", str(key)[:12], built.ref)
        return _reused(settings, config, built, key=key, promote=promote)
    teacher_model(uncompressed(settings), teacher)  # a prior-only one is refused before any work
    embedder_report = compress_bi_encoder(
        settings,
        config,
        work_dir=work_dir / "embedder",
        judgments=judgments,
        catalog=catalog,
        key=key,
        task_id=task_id,
        promote=promote,
    )
    report = compress_reranker(
        settings,
        config,
        work_dir=work_dir,
        judgments=judgments,
        catalog=catalog,
        key=key,
        task_id=task_id,
        promote=promote,
        teacher=teacher,
        embedder_report=embedder_report,
    )
    return embedder_report, report


def compress_bi_encoder(
    settings: Settings,
    config: CompressConfig,
    *,
    work_dir: Path,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    key: str | None = None,
    task_id: str | None = None,
    promote: bool = True,
) -> EmbedderReport:
    """Steps 1 and 6 for the bi-encoder: measure and gate, register, promote."""
    built = built_before(settings, "embedder", key)
    if built is not None:
        report = _reused_embedder(built)
        version: str | None = built.version
    else:
        path = measure_embedder(
            settings,
            work_dir=work_dir,
            judgments=judgments,
            catalog=catalog,
            shorter_lengths=config.embedder_max_lengths,
        )
        report = read_embedder_report(path)
        version = register_embedder(settings, report=path, key=key, task_id=task_id)
    apply_registration(report, settings, "embedder", version, promote=promote)
    return report


def compress_reranker(
    settings: Settings,
    config: CompressConfig,
    *,
    work_dir: Path,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    key: str | None = None,
    task_id: str | None = None,
    promote: bool = True,
    teacher: str | None = None,
    embedder_report: EmbedderReport | None = None,
) -> CompressionReport:
    """Steps 2 to 7 for the reranker; ``embedder_report`` is added to the written report."""
    started = time.perf_counter()
    summary = score_with_teacher(
        settings, config, work_dir=work_dir, judgments=judgments, catalog=catalog, teacher=teacher
    )
    students = [
        train_students(
            settings,
            config,
            teacher=summary,
            layers=layers,
            max_length=max_length,
            work_dir=work_dir,
            judgments=judgments,
            catalog=catalog,
        )
        for layers, max_length in itertools.product(config.layers, config.max_lengths)
        if layers > 0
    ]
    if 0 in config.layers:
        students.append(
            train_prior_student(
                settings,
                config,
                teacher=summary,
                work_dir=work_dir,
                judgments=judgments,
                catalog=catalog,
            )
        )
    gate = choose_student(
        teacher=summary, students=students, max_ndcg_drop=config.max_ndcg_drop, out=work_dir
    )
    version = register_student(
        settings, config, gate=gate, teacher=summary, key=key, task_id=task_id
    )
    report = CompressionReport.from_dict(read_json(gate))
    apply_registration(report, settings, "reranker", version, promote=promote)
    report.seconds = time.perf_counter() - started
    write_report(report, work_dir, max_ndcg_drop=config.max_ndcg_drop, embedder=embedder_report)
    return report


def _reused(
    settings: Settings,
    config: CompressConfig,
    built: ModelVersion,
    *,
    key: str | None,
    promote: bool,
) -> tuple[EmbedderReport, CompressionReport]:
    """The reports of a run whose inputs were built before, from the registry's records."""
    embedder_built = built_before(settings, "embedder", key)
    if embedder_built is not None:
        embedder_report = _reused_embedder(embedder_built)
        apply_registration(
            embedder_report, settings, "embedder", embedder_built.version, promote=promote
        )
    else:
        embedder_report = EmbedderReport(source=settings.embedder.model, documents=0, queries=0)
    gate_ndcg = built.metrics.get("gate_ndcg@10")
    report = CompressionReport(
        teacher=str(built.lineage.get("teacher", "")),
        teacher_cv_ndcg=float(built.metrics.get("teacher_ndcg@10") or 0.0),
        folds=config.folds,
        gate_ndcg=float(gate_ndcg) if isinstance(gate_ndcg, int | float) else None,
        gate_basis=str(built.metrics.get("gate_basis") or f"as {built.ref} recorded it"),
        served=str(built.lineage.get("variant") or built.ref),
        reused=True,
    )
    apply_registration(report, settings, "reranker", built.version, promote=promote)
    return embedder_report, report


def _reused_embedder(built: ModelVersion) -> EmbedderReport:
    return EmbedderReport(
        source=str(built.lineage.get("source_model", "")),
        documents=0,
        queries=0,
        served=str(built.lineage.get("variant") or built.ref),
        reused=True,
    )
