"""The compression gate: which variants pass, and which one serves."""

from __future__ import annotations

from ranker.compress.job import TEACHER, Variant, apply_gate, stored_cv_ndcg


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
