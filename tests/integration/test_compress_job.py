"""`shoprank compress` on the tiny models and the shop's own files: the teacher and student
steps alone, then the whole job (both models compressed, every student variant
cross-validated and timed, the gate applied, the winner registered with its lineage and
metrics and promoted, the report written).

Random weights rank at random, so this checks the job's mechanics and outputs, not quality;
generous budgets let a student through both gates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import load_products, sample_judgments_path
from ranker.compress.job import TEACHER, CompressConfig, compress_models
from ranker.compress.students import train_students
from ranker.compress.teacher import score_with_teacher
from ranker.registry import Registry
from ranker.serving_models import open_registry
from ranker.settings import RegistrySettings, Settings
from ranker.training.jobs import file_sha256, load_training_data

pytestmark = pytest.mark.slow

CONFIG = CompressConfig(
    layers=(1,),
    max_lengths=(32,),
    embedder_max_lengths=(),
    folds=2,
    pseudo_queries=4,
    judged_query_depth=3,
    pseudo_query_depth=2,
    max_ndcg_drop=1.0,
    latency_repeats=2,
    student={"epochs": 0.05, "evals_per_epoch": 1, "batch_size": 64},
)


WORD = re.compile(r"[\w][\w'.&-]*")
"""How pseudo-queries split titles into words."""


@pytest.fixture
def shop_judgments(subset_qids: list[str], tmp_path: Path) -> Path:
    """The sample judgments of the subset's queries, as the shop's own file."""
    lines = sample_judgments_path().read_text(encoding="utf-8").splitlines()
    kept = [lines[0], *(line for line in lines[1:] if line.split(",", 1)[0] in subset_qids)]
    path = tmp_path / "shop-judgments.csv"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def registry_settings(
    integration_settings: Settings, tiny_reranker_dir: Path, tmp_path: Path
) -> Settings:
    """The tiny models, with the tiny reranker the registry's production teacher."""
    settings = integration_settings.model_copy(
        update={
            "registry_dir": tmp_path / "registry",
            "rerank": integration_settings.rerank.model_copy(update={"model": None}),
            "registry": RegistrySettings(max_ndcg_drop=1.0, max_rerank_p50_ms=1e6),
        }
    )
    registry = open_registry(settings)
    teacher = registry.register("reranker", tiny_reranker_dir, job="test")
    registry.promote("reranker", teacher.version, actor="test")
    return settings


def test_compress_registers_and_promotes_the_winner_of_the_shops_data(
    registry_settings: Settings,
    built_index: dict[str, Any],
    subset_catalog_path: Path,
    shop_judgments: Path,
    subset_qids: list[str],
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    embedder_report, report = compress_models(
        registry_settings,
        CONFIG,
        work_dir=work,
        judgments=shop_judgments,
        catalog=subset_catalog_path,
        task_id="task-1",
    )

    assert [v.name for v in embedder_report.variants] == [
        "source torch fp32",
        "onnx fp32",
        "onnx int8",
    ]
    assert embedder_report.queries == len(subset_qids)
    names = [v.name for v in report.variants]
    assert names == [
        TEACHER,
        "student 1L/32t torch fp32",
        "student 1L/32t onnx fp32",
        "student 1L/32t onnx int8",
    ]
    for variant in report.variants:
        if variant.path is not None:
            assert variant.p50_ms > 0
            assert variant.cv_ndcg is not None

    registry = Registry(registry_settings.registry_path)
    assert report.registered == "reranker/v3"  # v1 seeded, v2 the tiny teacher
    assert report.promoted, report.promotion_note
    assert registry.production_version("reranker") == "v3"
    version = registry.verify("reranker", "v3")
    chosen = report.chosen
    assert chosen is not None
    data = load_training_data(
        registry_settings, judgments=shop_judgments, catalog=subset_catalog_path
    )
    assert version.lineage["teacher"] == "reranker/v2"
    assert version.lineage["derived_from"] == "v2"
    assert version.lineage["data_sha256"] == data.sha256
    assert version.lineage["catalog_sha256"] == file_sha256(subset_catalog_path)
    assert version.lineage["quantization"] == chosen.precision
    assert version.metrics["ndcg@10"] == chosen.cv_ndcg
    assert version.metrics["rerank50_p50_ms"] == chosen.p50_ms
    assert version.metrics["judgments_sha256"] == data.sha256
    assert version.manifest["created_by"]["task_id"] == "task-1"
    assert not (registry_settings.models_path / "reranker-compressed").exists()

    # The pseudo-queries were cut from the shop's catalog, not the bundled sample.
    lines = (work / "teacher-pairs.jsonl").read_text(encoding="utf-8").splitlines()
    pairs = [json.loads(line) for line in lines[1:]]
    pseudo = {p["query"] for p in pairs if p["qid"].startswith("pseudo-")}
    assert pseudo
    words = {w for p in load_products(subset_catalog_path) for w in WORD.findall(p.title.lower())}
    assert all(set(query.split()) <= words for query in pseudo)
    assert {p["qid"] for p in pairs if not p["qid"].startswith("pseudo-")} <= set(subset_qids)

    markdown = (work / "report.md").read_text(encoding="utf-8")
    assert "## Bi-encoder" in markdown
    assert "student 1L/32t onnx int8" in markdown
    assert "(registered reranker/v3, promoted)" in markdown
    document = json.loads((work / "report.json").read_text(encoding="utf-8"))
    assert document["embedder"]["variants"][0]["name"] == "source torch fp32"
    assert document["registered"] == "reranker/v3"
    assert (work / "report.png").stat().st_size > 0


@pytest.fixture(scope="module")
def teacher_step(
    integration_settings: Settings,
    built_index: dict[str, Any],
    subset_catalog_path: Path,
    subset_qids: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path]:
    """The teacher step run once on the shop's files: (its summary, the judgments file)."""
    work = tmp_path_factory.mktemp("teacher-step")
    lines = sample_judgments_path().read_text(encoding="utf-8").splitlines()
    kept = [lines[0], *(line for line in lines[1:] if line.split(",", 1)[0] in subset_qids)]
    judgments = work / "shop-judgments.csv"
    judgments.write_text("\n".join(kept) + "\n", encoding="utf-8")
    summary = score_with_teacher(
        integration_settings,
        CONFIG,
        work_dir=work,
        judgments=judgments,
        catalog=subset_catalog_path,
    )
    return summary, judgments


def test_the_teacher_step_scores_and_summarizes_the_teacher(
    teacher_step: tuple[Path, Path], tiny_reranker_dir: Path, subset_catalog_path: Path
) -> None:
    summary = json.loads(teacher_step[0].read_text(encoding="utf-8"))
    assert summary["path"] == str(tiny_reranker_dir)
    assert summary["version"] is None  # an explicit model, outside the registry
    assert summary["catalog_sha256"] == file_sha256(subset_catalog_path)
    assert summary["gate_ndcg"] is None  # the tiny teacher records no cross-validation
    assert summary["gate_basis"] == "the teacher on the same queries"
    assert 0.0 <= summary["teacher_ndcg"] <= 1.0
    assert summary["row"]["name"] == TEACHER
    assert summary["row"]["p50_ms"] > 0
    assert Path(summary["pairs"]).is_file()


def test_the_teacher_scores_are_reused_only_for_the_same_catalog(
    teacher_step: tuple[Path, Path],
    integration_settings: Settings,
    subset_catalog_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from ranker.compress import teacher

    summary, judgments = teacher_step
    work = summary.parent

    def must_not_score(*_: Any, **__: Any) -> Any:
        raise AssertionError("the teacher scored again")

    monkeypatch.setattr(teacher, "teacher_pairs", must_not_score)
    score_with_teacher(
        integration_settings,
        CONFIG,
        work_dir=work,
        judgments=judgments,
        catalog=subset_catalog_path,
    )
    other = tmp_path / "other.jsonl"
    other.write_bytes(subset_catalog_path.read_bytes() + b"\n")
    with pytest.raises(AssertionError, match="scored again"):
        score_with_teacher(
            integration_settings, CONFIG, work_dir=work, judgments=judgments, catalog=other
        )


def test_the_student_step_writes_every_variant_of_its_shape(
    teacher_step: tuple[Path, Path],
    integration_settings: Settings,
    subset_catalog_path: Path,
    tmp_path: Path,
) -> None:
    summary, judgments = teacher_step
    path = train_students(
        integration_settings,
        CONFIG,
        teacher=summary,
        layers=1,
        max_length=32,
        work_dir=tmp_path,
        judgments=judgments,
        catalog=subset_catalog_path,
    )
    assert path == tmp_path / "student-l1-t32.json"
    rows = json.loads(path.read_text(encoding="utf-8"))["variants"]
    assert [row["precision"] for row in rows] == ["torch", "onnx-fp32", "onnx-int8"]
    for row in rows:
        if row["path"] is not None:
            assert (Path(row["path"]) / "config.json").is_file()
            assert row["cv_ndcg"] is not None
            assert row["p50_ms"] > 0
    assert rows[0]["path"] == str(tmp_path / "student-l1-t32" / "torch")
    assert not (tmp_path / "cv-l1-t32" / "fold1").exists()

    with pytest.raises(ValueError, match="other judgments"):
        train_students(
            integration_settings,
            CONFIG,
            teacher=summary,
            layers=1,
            max_length=32,
            work_dir=tmp_path,
            catalog=subset_catalog_path,
        )
