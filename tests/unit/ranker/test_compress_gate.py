"""The compression gate: which variants pass, and which one serves."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from ranker.compress.gate import (
    TEACHER_CROSS_VALIDATED,
    TEACHER_IN_SAMPLE,
    GateReference,
    choose_student,
    gate_reference,
)
from ranker.compress.job import TEACHER, Variant, apply_gate, stored_cv_ndcg
from ranker.compress.records import CompressionReport, read_json, write_json
from ranker.registry import ModelVersion


def _variant(name: str, ndcg: float | None, p50_ms: float) -> Variant:
    return Variant(
        name, f"/models/{name}", layers=2, precision="onnx-int8", p50_ms=p50_ms, cv_ndcg=ndcg
    )


def test_the_fastest_variant_within_the_allowed_drop_serves() -> None:
    variants = [
        _variant(TEACHER, 0.70, 500.0),
        _variant("slow but good", 0.705, 80.0),
        _variant("fast, just inside", 0.6901, 20.0),
        _variant("fastest, too lossy", 0.689, 10.0),
    ]
    best = apply_gate(variants, teacher_ndcg=0.70, max_ndcg_drop=0.01)
    assert best is not None
    assert best.name == "fast, just inside"
    assert [v.passes for v in variants] == [True, True, True, False]


def test_the_boundary_passes_and_a_missing_figure_fails() -> None:
    on_the_line = _variant("on the line", 0.69, 30.0)
    unmeasured = _variant("unmeasured", None, 5.0)
    best = apply_gate([on_the_line, unmeasured], teacher_ndcg=0.70, max_ndcg_drop=0.01)
    assert best is on_the_line
    assert not unmeasured.passes


def test_no_student_passing_leaves_the_teacher_serving() -> None:
    variants = [_variant(TEACHER, 0.70, 500.0), _variant("lossy", 0.60, 10.0)]
    assert apply_gate(variants, teacher_ndcg=0.70, max_ndcg_drop=0.01) is None
    assert variants[0].passes  # the teacher meets its own bar, but never wins


def test_the_gate_reads_the_teachers_cross_validated_figure_when_its_manifest_has_one() -> None:
    manifest = {"cross_validation": {"folds": 5, "rerank": {"ndcg@10": 0.7189, "mrr": 0.98}}}

    assert stored_cv_ndcg(manifest) == 0.7189
    assert stored_cv_ndcg({"cross_validation": None}) is None
    assert stored_cv_ndcg({}) is None
    assert stored_cv_ndcg({"cross_validation": {"rerank": {"ndcg@10": "n/a"}}}) is None


def test_the_teachers_figure_counts_only_on_the_data_it_was_measured_on() -> None:
    manifest = {"data_sha256": "a" * 64, "cross_validation": {"rerank": {"ndcg@10": 0.7189}}}

    assert stored_cv_ndcg(manifest, data_sha256="a" * 64) == 0.7189
    assert stored_cv_ndcg(manifest, data_sha256="b" * 64) is None


DATA = "a" * 64
OTHER = "b" * 64
TEACHER_CV = {"data_sha256": DATA, "cross_validation": {"rerank": {"ndcg@10": 0.7189}}}
TRAINED_WITHOUT_FOLDS = {"data_sha256": DATA, "cross_validation": None}


def _production(**metrics: Any) -> ModelVersion:
    return ModelVersion("reranker", "v2", Path("/registry/reranker/v2/model"), {"metrics": metrics})


CROSS_VALIDATED_ON_DATA = _production(
    **{
        "ndcg@10": 0.7189,
        "ndcg_basis": "3-fold cross-validation by query, rerank task",
        "judgments_sha256": DATA,
    }
)


def test_the_teachers_own_cross_validated_figure_wins() -> None:
    production = _production(
        **{"ndcg@10": 0.80, "ndcg_basis": "cross-validated by query", "judgments_sha256": DATA}
    )
    reference = gate_reference(TEACHER_CV, data_sha256=DATA, production=production)
    assert reference == GateReference(0.7189, TEACHER_CROSS_VALIDATED)


def test_without_the_teachers_figure_production_cross_validated_on_the_same_data_counts() -> None:
    reference = gate_reference(
        TRAINED_WITHOUT_FOLDS, data_sha256=DATA, production=CROSS_VALIDATED_ON_DATA
    )
    assert reference.ndcg == 0.7189
    assert "production reranker/v2's cross-validated figure" in reference.basis
    # A figure compression recorded for production from its teacher's manifest counts too.
    recorded = _production(
        on_judgments={
            DATA: {
                "ndcg@10": 0.71,
                "ndcg_basis": f"the teacher, rerank task: {TEACHER_CROSS_VALIDATED}",
            }
        }
    )
    assert gate_reference({}, data_sha256=DATA, production=recorded).ndcg == 0.71


@pytest.mark.parametrize(
    "production",
    [
        pytest.param(None, id="no production"),
        pytest.param(
            _production(
                **{"ndcg@10": 0.7189, "ndcg_basis": "cross-validated", "judgments_sha256": OTHER}
            ),
            id="other judgments",
        ),
        pytest.param(_production(**{"ndcg@10": 0.7189, "judgments_sha256": DATA}), id="no basis"),
        pytest.param(
            _production(
                on_judgments={
                    DATA: {
                        "ndcg@10": 0.74,
                        "ndcg_basis": "scored as it serves (rerank task), not cross-validated",
                    }
                }
            ),
            id="evaluate's in-sample figure",
        ),
        pytest.param(
            _production(
                on_judgments={
                    DATA: {
                        "ndcg@10": 0.74,
                        "basis": "scored as it serves (rerank task), not cross-validated",
                    }
                }
            ),
            id="evaluate's in-sample figure, older key",
        ),
        pytest.param(
            _production(
                on_judgments={
                    DATA: {
                        "ndcg@10": 0.74,
                        "ndcg_basis": f"the teacher, rerank task: {TEACHER_IN_SAMPLE}",
                    }
                }
            ),
            id="compression's in-sample teacher figure",
        ),
    ],
)
def test_otherwise_the_teacher_is_held_to_its_figure_on_the_same_queries(
    production: ModelVersion | None,
) -> None:
    reference = gate_reference(TRAINED_WITHOUT_FOLDS, data_sha256=DATA, production=production)
    assert reference == GateReference(None, TEACHER_IN_SAMPLE)


def test_a_student_the_promotion_gate_would_take_passes_compressions_gate(tmp_path: Path) -> None:
    """The retrain chain's case: a teacher fine-tuned without folds (0.7339 in-sample),
    production cross-validated at 0.7189, a student cross-validated at 0.7175."""
    reference = gate_reference(
        TRAINED_WITHOUT_FOLDS, data_sha256=DATA, production=CROSS_VALIDATED_ON_DATA
    )
    teacher_row = _variant(TEACHER, 0.7339, 500.0)
    summary = write_json(
        tmp_path / "teacher.json",
        {
            "teacher": "fine-tuned",
            "teacher_ndcg": 0.7339,
            "folds": 3,
            "gate_ndcg": reference.ndcg,
            "gate_basis": reference.basis,
            "row": asdict(teacher_row),
        },
    )
    students = write_json(
        tmp_path / "student-l1-t40.json",
        {"variants": [asdict(_variant("student", 0.7175, 30.0))]},
    )
    gate = choose_student(teacher=summary, students=[students], max_ndcg_drop=0.01, out=tmp_path)
    report = CompressionReport.from_dict(read_json(gate))
    assert report.served == "student"
    assert report.gate_value == 0.7189
    assert report.gate_basis == reference.basis
