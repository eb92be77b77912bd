"""Distil a tiny cross-encoder into a one-layer student, save it, and serve it when gated.

The tiny teacher has random weights, so these tests check the mechanics (the student
matches the teacher's scores better as it trains, the manifest records its lineage and
serving lengths; a gated student that `shoprank compress` installed before the registry is
registered and served in place of its teacher, and nothing else is), not ranking quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from ranker.compress.distill import (
    StudentConfig,
    TeacherPair,
    distill_reranker,
    save_student,
    student_from_teacher,
    teacher_pairs,
)
from ranker.evaluation.judgments import Judgments
from ranker.loading import (
    COMPRESSED_RERANKER_DIR,
    TRAINED_RERANKER_DIR,
    load_reranker,
    reranker_dir,
)
from ranker.model_files import MANIFEST_NAME, read_manifest, weights_sha256
from ranker.registry import Registry
from ranker.reranker import Reranker
from ranker.serving_models import serving_source
from ranker.settings import Settings
from ranker.training.common import TrainingResult
from ranker.training.pair_scoring import score_pairs

pytestmark = pytest.mark.slow

QUERIES = 6
CONFIG = StudentConfig(
    layers=1,
    max_length=48,
    max_query_tokens=12,
    batch_size=16,
    epochs=6,
    learning_rate=1e-3,
    evals_per_epoch=1,
    patience=100,
    validation_fraction=0.34,
    save_dtype="float32",
)


@pytest.fixture(scope="module")
def judged(sample_judgments: Judgments) -> Judgments:
    return sample_judgments.subset(list(sample_judgments.queries)[:QUERIES])


@pytest.fixture(scope="module")
def texts(sample_products: list[Product]) -> dict[str, str]:
    template = TextTemplate(Settings().index.text_template)
    return {product.id: template.render(product) for product in sample_products}


@pytest.fixture(scope="module")
def pairs(tiny_reranker_dir: Path, judged: Judgments, texts: dict[str, str]) -> list[TeacherPair]:
    teacher = Reranker.load(tiny_reranker_dir, backend="torch", max_length=64)
    candidates = {qid: list(judged.qrels[qid]) for qid in judged.queries}
    return teacher_pairs(teacher.score_parts, judged.queries, candidates, texts, progress=False)


@pytest.fixture(scope="module")
def distilled(
    pairs: list[TeacherPair], judged: Judgments, texts: dict[str, str], tiny_reranker_dir: Path
) -> TrainingResult:
    return distill_reranker(pairs, texts, judged, tiny_reranker_dir, CONFIG, progress=False)


def test_teacher_pairs_cover_every_candidate_with_a_text(
    pairs: list[TeacherPair], judged: Judgments, texts: dict[str, str]
) -> None:
    expected = {(qid, pid) for qid in judged.queries for pid in judged.qrels[qid] if pid in texts}
    assert {(p.qid, p.product_id) for p in pairs} == expected
    assert all(np.isfinite(p.score) for p in pairs)
    assert all(p.prior == 0.0 for p in pairs)  # the tiny teacher has no dense prior


def test_student_keeps_the_bottom_layers(tiny_reranker_dir: Path) -> None:
    teacher = student_from_teacher(tiny_reranker_dir, 2)
    student = student_from_teacher(tiny_reranker_dir, 1)
    assert student.config.num_hidden_layers == 1
    assert len(student.base_model.encoder.layer) == 1
    kept = student.base_model.encoder.layer[0].state_dict()
    original = teacher.base_model.encoder.layer[0].state_dict()
    assert all(np.allclose(kept[name].numpy(), original[name].numpy()) for name in kept)


def test_student_cannot_keep_more_layers_than_the_teacher(tiny_reranker_dir: Path) -> None:
    with pytest.raises(ValueError, match="has 2 layers; cannot keep 3"):
        student_from_teacher(tiny_reranker_dir, 3)


def test_student_learns_the_teachers_scores(distilled: TrainingResult) -> None:
    mse = [h["train_mse"] for h in distilled.history if "train_mse" in h]
    assert len(mse) >= 3
    assert mse[-1] < mse[0]


def test_validation_queries_are_never_trained_on(
    distilled: TrainingResult, judged: Judgments
) -> None:
    assert distilled.validation_queries
    assert not set(distilled.validation_queries) & set(distilled.train_queries)
    assert set(distilled.validation_queries) | set(distilled.train_queries) == set(judged.queries)


def test_saved_student_records_lineage_and_reloads_to_the_same_scores(
    distilled: TrainingResult,
    tiny_reranker_dir: Path,
    texts: dict[str, str],
    judged: Judgments,
    tmp_path: Path,
) -> None:
    out = save_student(
        distilled,
        tmp_path / "student",
        teacher_dir=tiny_reranker_dir,
        config=CONFIG,
        data_sha256="d" * 64,
        metrics={"validation_ndcg@10": distilled.best_validation_ndcg},
    )
    manifest = read_manifest(out)
    assert manifest is not None
    assert manifest["distilled_from"]["weights_sha256"] == weights_sha256(tiny_reranker_dir)
    assert manifest["serving"] == {"max_length": 48, "max_query_tokens": 12}
    assert manifest["prior"] is None
    assert manifest["hyperparameters"]["layers"] == 1
    qid = next(iter(judged.queries))
    documents = [texts[pid] for pid in judged.qrels[qid]][:8]
    in_memory = score_pairs(
        distilled.model,
        distilled.tokenizer,
        judged.queries[qid],
        documents,
        max_query_tokens=CONFIG.max_query_tokens,
    )
    served = Reranker.load(out, backend="torch", max_length=48, max_query_tokens=12)
    np.testing.assert_allclose(served.score(judged.queries[qid], documents), in_memory, atol=1e-4)


def _gated(student: Path, teacher: Path, *, passed: bool = True) -> None:
    manifest = read_manifest(student) or {}
    manifest["distilled_from"] = {"weights_sha256": weights_sha256(teacher)}
    manifest["serving"] = {"max_length": 40, "max_query_tokens": 10}
    manifest["gate"] = {"passed": passed}
    (student / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.fixture
def served_home(tmp_path: Path, tiny_reranker_dir: Path, tiny_embedder_dir: Path) -> Settings:
    """A models directory as `shoprank train` and `shoprank compress` left it before the
    registry: a trained teacher and a compressed copy (no gate yet)."""
    settings = Settings(home=tmp_path)
    teacher = settings.models_path / TRAINED_RERANKER_DIR
    shutil.copytree(tiny_reranker_dir, teacher)
    shutil.copytree(tiny_reranker_dir, settings.models_path / COMPRESSED_RERANKER_DIR)
    return settings


def _versions(settings: Settings) -> list[str]:
    return [v.version for v in Registry(settings.registry_path).versions("reranker")]


def test_serving_prefers_the_gated_student_of_the_served_teacher(served_home: Settings) -> None:
    student = served_home.models_path / COMPRESSED_RERANKER_DIR
    _gated(student, served_home.models_path / TRAINED_RERANKER_DIR)
    source = serving_source(served_home, "reranker")
    assert source.version is not None
    assert source.version.lineage["derived_from"] == "v1"  # the teacher, seeded first
    assert reranker_dir(served_home) == source.path
    assert (read_manifest(source.path) or {})["gate"]["passed"] is True
    reranker = load_reranker(served_home)
    assert reranker.tokenizer.max_length == 40
    assert reranker.max_query_tokens == 10


def test_an_explicit_max_length_setting_wins_over_the_students(served_home: Settings) -> None:
    _gated(
        served_home.models_path / COMPRESSED_RERANKER_DIR,
        served_home.models_path / TRAINED_RERANKER_DIR,
    )
    settings = served_home.model_copy(
        update={"rerank": served_home.rerank.model_copy(update={"max_length": 80})}
    )
    settings.rerank.model_fields_set.add("max_length")
    assert load_reranker(settings).tokenizer.max_length == 80


@pytest.mark.parametrize("passed", [None, False])
def test_serving_ignores_a_student_that_failed_or_lacks_the_gate(
    served_home: Settings, passed: bool | None
) -> None:
    teacher = served_home.models_path / TRAINED_RERANKER_DIR
    if passed is not None:
        _gated(served_home.models_path / COMPRESSED_RERANKER_DIR, teacher, passed=passed)
    source = serving_source(served_home, "reranker")
    assert source.version is not None
    assert source.version.version == "v1"
    assert _versions(served_home) == ["v1"]


def test_serving_ignores_a_student_of_another_teacher(
    served_home: Settings, tiny_embedder_dir: Path
) -> None:
    _gated(served_home.models_path / COMPRESSED_RERANKER_DIR, tiny_embedder_dir)
    assert (
        reranker_dir(served_home) == Registry(served_home.registry_path).get("reranker", "v1").path
    )
    assert _versions(served_home) == ["v1"]


def test_the_compressed_setting_turns_the_student_off(served_home: Settings) -> None:
    _gated(
        served_home.models_path / COMPRESSED_RERANKER_DIR,
        served_home.models_path / TRAINED_RERANKER_DIR,
    )
    settings = served_home.model_copy(
        update={"rerank": served_home.rerank.model_copy(update={"compressed": False})}
    )
    teacher = Registry(settings.registry_path)
    assert reranker_dir(settings) == teacher.get("reranker", "v1").path
    assert reranker_dir(served_home) == teacher.get("reranker", "v2").path


def test_the_prior_gives_the_same_scores_from_given_vectors(
    tiny_reranker_dir: Path, tiny_embedder_dir: Path, tmp_path: Path, texts: dict[str, str]
) -> None:
    from ranker.embedder import Embedder

    embedder = Embedder.load(tiny_embedder_dir, backend="torch")
    with_prior = tmp_path / "with-prior"
    shutil.copytree(tiny_reranker_dir, with_prior)
    (with_prior / MANIFEST_NAME).write_text(
        json.dumps(
            {
                "kind": "cross-encoder",
                "prior": {
                    "weight": 3.0,
                    "bias": -1.0,
                    "embedder": {"weights_sha256": embedder.identity.weights_sha256},
                },
            }
        )
    )
    reranker = Reranker.load(with_prior, backend="torch", max_length=64, embedder=embedder)
    documents = list(texts.values())[:6]
    embedded = reranker.score("usb charger", documents)
    given = reranker.score("usb charger", documents, document_vectors=embedder.embed(documents))
    np.testing.assert_allclose(given, embedded, atol=1e-5)
    with pytest.raises(ValueError, match="2 document vectors for 6 documents"):
        reranker.score("usb charger", documents, document_vectors=embedder.embed(documents[:2]))
