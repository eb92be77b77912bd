"""What serves: the registry's production version, seeded on first use; explicit paths win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ranker.model_files import base_model_dir, shipped_model_dir, weights_sha256
from ranker.registry import IntegrityError, VersionNotFoundError
from ranker.serving_models import open_registry, serving_source, teacher_source
from ranker.settings import EmbedderSettings, RerankSettings, Settings


def _fake_model(directory: Path, manifest: dict[str, object] | None = None, *, onnx: bool) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / ("model.onnx" if onnx else "model.safetensors")).write_bytes(
        directory.name.encode()
    )
    if manifest is not None:
        (directory / "shoprank.json").write_text(json.dumps(manifest))
    return directory


def test_a_fresh_home_serves_the_packaged_models(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    embedder = serving_source(settings, "embedder")
    reranker = serving_source(settings, "reranker")
    assert embedder.path == base_model_dir()
    assert embedder.label == "embedder/v1"
    assert reranker.path == shipped_model_dir("esci-minilm-ce")
    assert reranker.version is not None
    assert reranker.version.metrics["ndcg@10"] > 0.6  # the shipped model's CV figure
    registry = open_registry(settings)
    assert [e["actor"] for e in registry.history("reranker") if e["event"] == "promote"] == ["seed"]
    open_registry(settings)  # seeding runs once
    assert len(registry.versions("reranker")) == 1


def test_legacy_installs_are_migrated_and_the_gated_student_serves(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    teacher = _fake_model(settings.models_path / "reranker", {"data_sha256": "d"}, onnx=False)
    _fake_model(
        settings.models_path / "reranker-compressed",
        {
            "gate": {"passed": True, "cv_ndcg@10": 0.71, "p50_ms": 18.0},
            "distilled_from": {"weights_sha256": weights_sha256(teacher)},
            "data_sha256": "d",
        },
        onnx=True,
    )
    served = serving_source(settings, "reranker")
    assert served.label == "reranker/v2"
    assert served.version is not None
    assert served.version.lineage["derived_from"] == "v1"
    assert served.version.metrics["rerank50_p50_ms"] == 18.0
    assert teacher_source(settings).label == "reranker/v1"
    uncompressed = settings.model_copy(update={"rerank": RerankSettings(compressed=False)})
    assert serving_source(uncompressed, "reranker").label == "reranker/v1"
    torch_only = settings.model_copy(update={"rerank": RerankSettings(backend="torch")})
    assert serving_source(torch_only, "reranker").label == "reranker/v1"


def test_a_student_of_another_teacher_is_not_migrated(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    _fake_model(settings.models_path / "reranker", {}, onnx=False)
    _fake_model(
        settings.models_path / "reranker-compressed",
        {"gate": {"passed": True}, "distilled_from": {"weights_sha256": "other"}},
        onnx=True,
    )
    assert serving_source(settings, "reranker").label == "reranker/v1"
    assert len(open_registry(settings).versions("reranker")) == 1


def test_explicit_models_serve_outside_the_registry(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "mine", {}, onnx=False)
    settings = Settings(
        home=tmp_path,
        embedder=EmbedderSettings(model=str(model)),
        rerank=RerankSettings(model=str(model)),
    )
    for role in ("embedder", "reranker"):
        source = serving_source(settings, role)
        assert (source.path, source.version, source.label) == (model, None, str(model))
    assert not (tmp_path / "registry").exists()


def test_a_corrupt_production_version_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    teacher = _fake_model(settings.models_path / "reranker", {}, onnx=False)
    served = serving_source(settings, "reranker")
    assert served.path != teacher  # the registry's copy serves, not the legacy directory
    (served.path / "model.safetensors").write_bytes(b"x" * len(b"reranker"))
    with pytest.raises(IntegrityError, match=r"model\.safetensors does not match"):
        serving_source(settings, "reranker")


def test_a_setting_may_name_a_registry_version(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    registry = open_registry(settings)
    candidate = registry.register("reranker", _fake_model(tmp_path / "cand", {}, onnx=False))
    pinned = settings.model_copy(
        update={"rerank": RerankSettings(model=f"registry:{candidate.version}")}
    )
    assert serving_source(pinned, "reranker").label == candidate.ref
    assert teacher_source(pinned).path == candidate.path
    assert registry.production_version("reranker") == "v1"  # production is untouched
    missing = settings.model_copy(update={"rerank": RerankSettings(model="registry:v9")})
    with pytest.raises(VersionNotFoundError):
        serving_source(missing, "reranker")
