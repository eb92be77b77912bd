"""The compression gate: which student variants keep the teacher's quality, and which one wins.

A variant passes when its cross-validated NDCG@10 (the rerank task) is at least a reference
figure minus ``max_ndcg_drop``; the fastest that passes is chosen. Students' figures are
estimates for queries they never saw, so the reference is one too when there is one
(:func:`gate_reference`): the teacher's own cross-validated NDCG@10 when its manifest records
one for the same data (``shoprank train --folds``); else the production reranker's
cross-validated figure on the same judgments, when the registry records one (what the
promotion gate will hold the student to); else the teacher's NDCG on the same queries,
in-sample for a teacher trained on them, which favours the teacher.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ranker.compress.records import (
    TEACHER,
    CompressionReport,
    Variant,
    read_json,
    variant_from_dict,
    write_json,
)
from ranker.promotion import production_figure
from ranker.registry import ModelVersion

logger = logging.getLogger(__name__)

GATE_FILE = "gate.json"
TEACHER_IN_SAMPLE = "the teacher on the same queries"
TEACHER_CROSS_VALIDATED = "the teacher's own cross-validated figure (its manifest)"


@dataclass(frozen=True)
class GateReference:
    """The NDCG@10 the gate holds students to (before ``max_ndcg_drop``), and what it is."""

    ndcg: float | None
    """None: the teacher's NDCG on the same queries, which the teacher step measures."""
    basis: str


def stored_cv_ndcg(manifest: Mapping[str, Any], *, data_sha256: str | None = None) -> float | None:
    """The rerank task's cross-validated NDCG@10 a trained model's manifest records.

    With ``data_sha256``, only a figure measured on that data counts (the manifest's own
    ``data_sha256`` must match): a figure on other judgments compares nothing.
    """
    if data_sha256 is not None and manifest.get("data_sha256") != data_sha256:
        return None
    stored = (manifest.get("cross_validation") or {}).get("rerank")
    if isinstance(stored, Mapping) and isinstance(stored.get("ndcg@10"), int | float):
        return float(stored["ndcg@10"])
    return None


def gate_reference(
    teacher_manifest: Mapping[str, Any], *, data_sha256: str, production: ModelVersion | None
) -> GateReference:
    """The figure students are held to on the judgments hashed to ``data_sha256``.

    The teacher's cross-validated NDCG@10 (its manifest); else ``production``'s (the
    production reranker's registry version) cross-validated NDCG@10 on the same judgments;
    else the teacher's in-sample figure (``ndcg`` None).
    """
    teacher = stored_cv_ndcg(teacher_manifest, data_sha256=data_sha256)
    if teacher is not None:
        return GateReference(teacher, TEACHER_CROSS_VALIDATED)
    if production is not None:
        figure = production_figure(production, data_sha256, cross_validated=True)
        if figure is not None:
            return GateReference(
                figure,
                f"production {production.ref}'s cross-validated figure on the same "
                "judgments; the teacher has none",
            )
    return GateReference(None, TEACHER_IN_SAMPLE)


def apply_gate(
    variants: Sequence[Variant], teacher_ndcg: float, max_ndcg_drop: float
) -> Variant | None:
    """Mark each variant as passing or not; the fastest passing student, if any.

    A variant passes when its cross-validated NDCG@10 is at least ``teacher_ndcg`` minus
    ``max_ndcg_drop``; one without a figure fails. The teacher is never the winner.
    """
    floor = teacher_ndcg - max_ndcg_drop
    for variant in variants:
        variant.passes = variant.cv_ndcg is not None and variant.cv_ndcg >= floor
    passing = [v for v in variants if v.passes and v.name != TEACHER]
    return min(passing, key=lambda v: v.p50_ms) if passing else None


def choose_student(
    *, teacher: Path, students: Sequence[Path], max_ndcg_drop: float, out: Path
) -> Path:
    """The gate step: the teacher's summary (``teacher.json``) and each shape's variants
    (``student-*.json``) in, the gated report (``gate.json`` in ``out``) out.

    The report lists the teacher's row, then every student variant in the order given, each
    marked passing or not, and names the chosen one (``served``) when one passed.
    """
    summary = read_json(teacher)
    report = CompressionReport(
        teacher=summary["teacher"],
        teacher_cv_ndcg=summary["teacher_ndcg"],
        folds=summary["folds"],
        gate_ndcg=summary["gate_ndcg"],
        gate_basis=summary["gate_basis"],
    )
    report.variants.append(variant_from_dict(summary["row"]))
    for path in students:
        report.variants.extend(variant_from_dict(row) for row in read_json(path)["variants"])
    best = apply_gate(report.variants, report.gate_value, max_ndcg_drop)
    if best is None:
        logger.warning("no student passed the gate; none is registered")
    else:
        report.served = best.name
    return write_json(out / GATE_FILE, report.as_dict())
