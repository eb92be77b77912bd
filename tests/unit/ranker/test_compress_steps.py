"""The compression steps on tiny inputs: gate, registration (lineage, metrics, promotion),
report, the key short-circuit, and the shop's catalog reaching distillation."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from indexer.stores.base import Hit
from ranker.compress import job
from ranker.compress.embedder import EmbedderReport, EmbedderVariant
from ranker.compress.gate import GATE_FILE, choose_student
from ranker.compress.records import TEACHER, CompressConfig, CompressionReport, Variant, read_json
from ranker.compress.register import apply_registration, register_embedder, register_student
from ranker.compress.report import report_step
from ranker.compress.teacher import distillation_queries
from ranker.evaluation.judgments import load_judgments
from ranker.model_files import MANIFEST_NAME, read_manifest, shipped_model_dir, weights_sha256
from ranker.registry import Registry
from ranker.serving_models import open_registry
from ranker.settings import Settings

SHIPPED_DATA = json.loads((shipped_model_dir("esci-minilm-ce") / MANIFEST_NAME).read_text())[
    "data_sha256"
]
"""The shipped teacher was cross-validated on these judgments (its registry figure)."""
OTHER_DATA = "e" * 64
CONFIG = CompressConfig(layers=(1,), max_lengths=(32,), folds=2)


def _teacher(
    tmp_path: Path, *, version: str | None = "v1", data: str = SHIPPED_DATA, gate: float = 0.70
) -> Path:
    path = tmp_path / "teacher.json"
    teacher_dir = shipped_model_dir("esci-minilm-ce")
    row = Variant(TEACHER, str(teacher_dir), 12, "fp32", p50_ms=100.0, cv_ndcg=0.72)
    path.write_text(
        json.dumps(
            {
                "teacher": "shipped-teacher",
                "path": str(teacher_dir),
                "ref": f"reranker/{version}" if version else str(teacher_dir),
                "version": version,
                "weights_sha256": "w" * 64,
                "pairs": str(tmp_path / "teacher-pairs.jsonl"),
                "judgments": None,
                "catalog": "/shop/catalog.jsonl",
                "data_sha256": data,
                "catalog_sha256": "c" * 64,
                "folds": 2,
                "teacher_ndcg": 0.72,
                "gate_ndcg": gate,
                "gate_basis": "the teacher's own cross-validated figure (its manifest)",
                "row": asdict(row),
            }
        )
    )
    return path


def _student_dir(tmp_path: Path, tiny_reranker_dir: Path, name: str) -> Path:
    directory = tmp_path / name
    shutil.copytree(tiny_reranker_dir, directory)
    manifest = {
        "kind": "cross-encoder",
        "hyperparameters": {"layers": 1, "max_length": 32, "epochs": 0.5},
        "serving": {"max_length": 32, "max_query_tokens": 12},
        "distilled_from": {"weights_sha256": "w" * 64},
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


def _students(tmp_path: Path, rows: list[Variant]) -> Path:
    path = tmp_path / "student-l1-t32.json"
    path.write_text(json.dumps({"shape": "l1-t32", "variants": [asdict(v) for v in rows]}))
    return path


def _gate(
    tmp_path: Path, tiny_reranker_dir: Path, *, ndcg: float = 0.75, **teacher: Any
) -> tuple[Path, Path]:
    student = _student_dir(tmp_path, tiny_reranker_dir, "int8")
    rows = [
        Variant(
            "student 1L/32t torch fp32", str(student), 1, "torch", 32, p50_ms=20.0, cv_ndcg=ndcg
        ),
        Variant(
            "student 1L/32t onnx int8", str(student), 1, "onnx-int8", 32, p50_ms=5.0, cv_ndcg=ndcg
        ),
    ]
    summary = _teacher(tmp_path, **teacher)
    gate = choose_student(
        teacher=summary, students=[_students(tmp_path, rows)], max_ndcg_drop=0.01, out=tmp_path
    )
    return summary, gate


def test_the_gate_step_marks_every_row_and_chooses_the_fastest_passing(tmp_path: Path) -> None:
    rows = [
        Variant("slow", "/a", 1, "torch", p50_ms=50.0, cv_ndcg=0.71),
        Variant("fast", "/b", 1, "onnx-int8", p50_ms=5.0, cv_ndcg=0.695),
        Variant("fastest but lossy", "/c", 1, "onnx-int8", p50_ms=2.0, cv_ndcg=0.60),
        Variant("refused", None, 1, "onnx-fp32", note="refused: parity"),
    ]
    gate = choose_student(
        teacher=_teacher(tmp_path),
        students=[_students(tmp_path, rows)],
        max_ndcg_drop=0.01,
        out=tmp_path,
    )

    assert gate == tmp_path / GATE_FILE
    report = CompressionReport.from_dict(read_json(gate))
    assert [v.name for v in report.variants] == [TEACHER, *(r.name for r in rows)]
    assert [v.passes for v in report.variants] == [True, True, True, False, False]
    assert report.served == "fast"
    assert report.gate_value == 0.70


def test_the_gate_step_chooses_none_when_every_student_loses(tmp_path: Path) -> None:
    rows = [Variant("lossy", "/a", 1, "torch", p50_ms=5.0, cv_ndcg=0.5)]
    gate = choose_student(
        teacher=_teacher(tmp_path),
        students=[_students(tmp_path, rows)],
        max_ndcg_drop=0.01,
        out=tmp_path,
    )
    assert CompressionReport.from_dict(read_json(gate)).served is None


def test_the_report_step_says_what_became_of_the_choice(tmp_path: Path) -> None:
    rows = [Variant("student 1L/32t onnx int8", "/b", 1, "onnx-int8", p50_ms=5.0, cv_ndcg=0.71)]
    gate = choose_student(
        teacher=_teacher(tmp_path),
        students=[_students(tmp_path, rows)],
        max_ndcg_drop=0.01,
        out=tmp_path,
    )
    out = tmp_path / "report"
    report_step(
        out,
        gate=gate,
        max_ndcg_drop=0.01,
        registered="reranker/v2",
        promotion_note="rerank-50 p50 5.0 ms > budget 1.0 ms",
    )
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| student 1L/32t onnx int8 |" in markdown
    assert "pass (chosen)" in markdown
    assert "registered reranker/v2, not promoted: rerank-50 p50 5.0 ms > budget" in markdown
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert document["registered"] == "reranker/v2"
    assert document["promoted"] is False
    assert (out / "report.png").stat().st_size > 0

    report_step(out, gate=gate, max_ndcg_drop=0.01, registered="reranker/v2", promoted=True)
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "pass (served)" in markdown
    assert "Served: student 1L/32t onnx int8 (registered reranker/v2, promoted)." in markdown


def test_the_chosen_student_is_registered_with_its_lineage_and_metrics(
    tmp_path: Path, tiny_reranker_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    summary, gate = _gate(tmp_path, tiny_reranker_dir)

    version = register_student(settings, CONFIG, gate=gate, teacher=summary, task_id="t-1")

    registry = Registry(settings.registry_path)
    found = registry.get("reranker", str(version))
    assert found.ref == "reranker/v2"  # v1: the seeded (shipped) teacher
    assert found.lineage["teacher"] == "reranker/v1"
    assert found.lineage["derived_from"] == "v1"
    assert found.lineage["teacher_weights_sha256"] == "w" * 64
    assert found.lineage["data_sha256"] == SHIPPED_DATA
    assert found.lineage["catalog_sha256"] == "c" * 64
    assert found.lineage["quantization"] == "onnx-int8"
    assert found.lineage["recipe"]["layers"] == 1
    assert found.lineage["recipe"]["max_length"] == 32
    assert found.lineage["recipe"]["folds"] == 2
    assert found.metrics["ndcg@10"] == 0.75
    assert found.metrics["ndcg_basis"] == "2-fold cross-validation by query, rerank task"
    assert found.metrics["judgments_sha256"] == SHIPPED_DATA
    assert found.metrics["rerank50_p50_ms"] == 5.0
    assert found.metrics["teacher_ndcg@10"] == 0.72
    assert found.metrics["gate_ndcg@10"] == 0.70
    assert found.manifest["created_by"]["job"] == "compress"
    assert found.manifest["created_by"]["task_id"] == "t-1"
    manifest = read_manifest(found.path) or {}
    assert manifest["gate"]["passed"] is True
    assert manifest["gate"]["variant"] == "student 1L/32t onnx int8"
    assert manifest["serving"] == {"max_length": 32, "max_query_tokens": 12}
    registry.verify("reranker", found.version)
    assert not (tmp_path / "gated-reranker").exists()
    assert registry.production_version("reranker") == "v1"  # a candidate until promoted


def test_a_passing_candidate_is_promoted_and_a_worse_one_is_refused_with_reasons(
    tmp_path: Path, tiny_reranker_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    summary, gate = _gate(tmp_path / "good", tiny_reranker_dir, ndcg=0.75)
    good = register_student(settings, CONFIG, gate=gate, teacher=summary)
    report = CompressionReport.from_dict(read_json(gate))
    apply_registration(report, settings, "reranker", good, promote=True)
    assert report.promoted
    assert report.registered == "reranker/v2"
    registry = Registry(settings.registry_path)
    assert registry.production_version("reranker") == "v2"
    assert (registry.get("reranker", "v2").manifest["gate"] or {})["passed"] is True

    # Good enough for the compression gate (teacher figure 0.60), not for production's 0.75.
    summary, gate = _gate(tmp_path / "worse", tiny_reranker_dir, ndcg=0.60, gate=0.60)
    worse = register_student(settings, CONFIG, gate=gate, teacher=summary)
    report = CompressionReport.from_dict(read_json(gate))
    apply_registration(report, settings, "reranker", worse, promote=True)
    assert not report.promoted
    assert "NDCG@10 0.6000 < production 0.7500" in report.promotion_note
    assert registry.production_version("reranker") == "v2"
    assert registry.get("reranker", "v3").manifest["gate"]["passed"] is False


def test_without_promote_the_candidate_stays_a_candidate(
    tmp_path: Path, tiny_reranker_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    summary, gate = _gate(tmp_path, tiny_reranker_dir)
    version = register_student(settings, CONFIG, gate=gate, teacher=summary)
    report = CompressionReport.from_dict(read_json(gate))
    apply_registration(report, settings, "reranker", version, promote=False)
    assert not report.promoted
    assert "not asked" in report.promotion_note
    assert Registry(settings.registry_path).production_version("reranker") == "v1"


def test_on_other_judgments_the_teachers_figure_from_this_run_is_recorded_for_production(
    tmp_path: Path, tiny_reranker_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    summary, gate = _gate(tmp_path, tiny_reranker_dir, data=OTHER_DATA, gate=0.65)
    version = register_student(settings, CONFIG, gate=gate, teacher=summary)

    production = Registry(settings.registry_path).get("reranker", "v1")
    recorded = production.metrics["on_judgments"][OTHER_DATA]
    assert recorded["ndcg@10"] == 0.65
    report = CompressionReport.from_dict(read_json(gate))
    apply_registration(report, settings, "reranker", version, promote=True)
    assert report.promoted, report.promotion_note


def test_a_key_built_before_skips_the_whole_job(
    tmp_path: Path, tiny_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home")
    summary, gate = _gate(tmp_path, tiny_reranker_dir)
    version = register_student(settings, CONFIG, gate=gate, teacher=summary, key="inputs-1")

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("the job ran again for inputs it built before")

    monkeypatch.setattr(job, "score_with_teacher", must_not_run)
    monkeypatch.setattr(job, "measure_embedder", must_not_run)
    embedder_report, report = job.compress_models(
        settings, CONFIG, work_dir=tmp_path / "work", key="inputs-1", promote=False
    )
    assert report.reused
    assert report.registered == f"reranker/{version}"
    assert report.served == "student 1L/32t onnx int8"
    assert report.teacher == "reranker/v1"
    assert not report.promoted
    assert embedder_report.registered is None
    assert register_student(settings, CONFIG, gate=gate, teacher=summary, key="inputs-1") == version
    assert len(Registry(settings.registry_path).versions("reranker")) == 2


def test_the_chosen_bi_encoder_variant_is_registered_derived_from_its_source(
    tmp_path: Path, tiny_embedder_dir: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    source = open_registry(settings).production("embedder")
    assert source is not None
    variant = tmp_path / "work" / "onnx-int8"
    shutil.copytree(tiny_embedder_dir, variant)
    measured = EmbedderReport(
        source="minilm",
        documents=10,
        queries=2,
        variants=[
            EmbedderVariant("source torch fp32", str(source.path), 128, 100.0, 5.0, None, 0.9, 0.6),
            EmbedderVariant("onnx int8", str(variant), 128, 300.0, 2.0, 0.995, 0.895, 0.595),
        ],
        served="onnx int8",
        source_path=str(source.path),
        source_version=source.version,
        data_sha256=OTHER_DATA,
    )
    path = tmp_path / "work" / "embedder.json"
    path.write_text(json.dumps(measured.as_dict()))

    version = register_embedder(settings, report=path, key="inputs-1")

    registry = Registry(settings.registry_path)
    found = registry.get("embedder", str(version))
    assert found.lineage["derived_from"] == source.version
    assert found.lineage["quantization"] == "onnx-int8"
    assert found.metrics["recall@100"] == 0.895
    assert found.metrics["ndcg@10"] == 0.595
    assert found.metrics["mean_cosine"] == 0.995
    assert found.metrics["judgments_sha256"] == OTHER_DATA
    manifest = read_manifest(found.path) or {}
    assert manifest["serving"]["max_length"] == 128
    assert manifest["gate"]["passed"] is True
    recorded = registry.get("embedder", source.version).metrics["on_judgments"][OTHER_DATA]
    assert recorded["ndcg@10"] == 0.6
    apply_registration(measured, settings, "embedder", version, promote=True)
    assert measured.promoted, measured.promotion_note
    assert registry.production_version("embedder") == version
    assert weights_sha256(found.path) == weights_sha256(tiny_embedder_dir)


class _Retriever:
    """Retrieves the first products of a fixed list, recording the queries asked."""

    def __init__(self, product_ids: list[str]) -> None:
        self.product_ids = product_ids
        self.queries: list[str] = []

    def retrieve(self, query: str, *, k: int) -> list[Hit]:
        self.queries.append(query)
        return [Hit(pid, 1.0) for pid in self.product_ids[:k]]


def test_pseudo_queries_are_cut_from_the_catalog_given(tmp_path: Path) -> None:
    catalog = tmp_path / "shop.jsonl"
    titles = {"s1": "Zorblax Turbo Widget Deluxe", "s2": "Quuxian Ceramic Teapot Large"}
    catalog.write_text(
        "".join(json.dumps({"id": pid, "title": title}) + "\n" for pid, title in titles.items())
    )
    judged = tmp_path / "judgments.csv"
    judged.write_text("query_id,query,product_id,esci_label\nq1,teapot,s2,E\n")
    retriever = _Retriever(["s1", "s2"])
    config = CompressConfig(pseudo_queries=5, judged_query_depth=2, pseudo_query_depth=1)

    queries, candidates = distillation_queries(
        retriever,  # type: ignore[arg-type]
        load_judgments(judged),
        config,
        catalog=catalog,
    )

    pseudo = {qid: q for qid, q in queries.items() if qid.startswith("pseudo-")}
    assert pseudo
    words = {word.lower() for title in titles.values() for word in title.split()}
    assert all(set(query.split()) <= words for query in pseudo.values())
    assert candidates["q1"] == ["s2", "s1"]
    assert all(candidates[qid] == ["s1"] for qid in pseudo)


def test_the_cli_hands_the_shops_files_to_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.catalog import CatalogFile
    from ranker.cli import app
    from ranker.evaluation.judgment_files import JudgmentsFile

    seen: dict[str, Any] = {}

    def compress_models(settings: Settings, config: CompressConfig, **kwargs: Any) -> Any:
        seen.update(kwargs, config=config)
        (kwargs["work_dir"]).mkdir(parents=True)
        (kwargs["work_dir"] / "report.md").write_text("# report\n")
        chosen = CompressionReport("t", 0.7, 2, registered="reranker/v2", promotion_note="why")
        return EmbedderReport("minilm", 1, 1), chosen

    monkeypatch.setattr(job, "compress_models", compress_models)
    catalog, judgments = tmp_path / "shop.jsonl", tmp_path / "judged.csv"
    result = CliRunner().invoke(
        app,
        [
            "compress",
            "--catalog",
            str(catalog),
            "--judgments",
            str(judgments),
            "--no-promote",
            "--teacher",
            "v4",
            "--layers",
            "1",
            "--out",
            str(tmp_path / "work"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["catalog"] == CatalogFile(catalog)
    assert seen["judgments"] == JudgmentsFile(judgments)
    assert seen["promote"] is False
    assert seen["teacher"] == "v4"
    assert seen["config"].layers == (1,)
    assert "reranker: reranker/v2 registered, not promoted: why" in result.output
    assert "bi-encoder: nothing registered" in result.output


def test_the_cli_compresses_the_reranker_alone_with_no_embedder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ranker.cli import app

    seen: dict[str, Any] = {}

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("the bi-encoder was compressed")

    def compress_reranker(settings: Settings, config: CompressConfig, **kwargs: Any) -> Any:
        seen.update(kwargs)
        (kwargs["work_dir"]).mkdir(parents=True)
        (kwargs["work_dir"] / "report.md").write_text("# report\n")
        return CompressionReport("t", 0.7, 2, registered="reranker/v2", promoted=True)

    monkeypatch.setattr(job, "compress_models", must_not_run)
    monkeypatch.setattr(job, "compress_reranker", compress_reranker)
    result = CliRunner().invoke(
        app, ["compress", "--no-embedder", "--teacher", "v3", "--out", str(tmp_path / "work")]
    )
    assert result.exit_code == 0, result.output
    assert seen["teacher"] == "v3"
    assert "embedder_report" not in seen
    assert "reranker: reranker/v2 registered and serving" in result.output
    assert "bi-encoder" not in result.output


def test_compress_offers_the_prior_alone_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --layers the 0-layer student (the prior alone) is tried beside the
    transformer students, so the gate can serve it where the cross-encoder adds nothing."""
    from ranker.cli import app

    seen: dict[str, Any] = {}

    def compress_models(settings: Settings, config: CompressConfig, **kwargs: Any) -> Any:
        seen["config"] = config
        (kwargs["work_dir"]).mkdir(parents=True)
        (kwargs["work_dir"] / "report.md").write_text("# report\n")
        return EmbedderReport("minilm", 1, 1), CompressionReport("t", 0.7, 2)

    monkeypatch.setattr(job, "compress_models", compress_models)
    result = CliRunner().invoke(app, ["compress", "--out", str(tmp_path / "work")])

    assert result.exit_code == 0, result.output
    assert seen["config"] == CompressConfig()
    assert seen["config"].layers == (0, 1, 2)


def test_a_prior_only_teacher_is_refused_before_any_work(
    tmp_path: Path, tiny_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prior_only_models import register_prior_only

    from ranker.errors import InputError

    settings = Settings(home=tmp_path / "home")
    version = register_prior_only(settings.home, tiny_reranker_dir)

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("compression started")

    monkeypatch.setattr(job, "measure_embedder", must_not_run)
    with pytest.raises(InputError, match="prior alone: it has no transformer"):
        job.compress_models(settings, CONFIG, work_dir=tmp_path / "work", teacher=version)
