"""The model registry: versions appear whole, the pointer swaps atomically, hashes are checked."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from ranker.registry import (
    IntegrityError,
    Registry,
    RegistryError,
    VersionNotFoundError,
    VersionState,
)


def _model(directory: Path, payload: bytes = b"weights") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text("{}")
    (directory / "model.onnx").write_bytes(payload)
    (directory / "sub").mkdir(exist_ok=True)
    (directory / "sub" / "vocab.txt").write_text("a\nb\n")
    return directory


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def test_register_copies_hashes_and_numbers_versions(registry: Registry, tmp_path: Path) -> None:
    source = _model(tmp_path / "src")
    first = registry.register("reranker", source, metrics={"ndcg@10": 0.7}, job="train")
    second = registry.register("reranker", source, job="compress", task_id="t-1")

    assert (first.version, second.version) == ("v1", "v2")
    assert first.path == registry.root / "reranker" / "v1" / "model"
    assert (first.path / "sub" / "vocab.txt").read_text() == "a\nb\n"
    assert set(first.manifest["files"]) == {"config.json", "model.onnx", "sub/vocab.txt"}
    assert first.state is VersionState.CANDIDATE
    assert first.metrics == {"ndcg@10": 0.7}
    assert second.manifest["created_by"]["task_id"] == "t-1"
    assert [v.version for v in registry.versions("reranker")] == ["v1", "v2"]
    assert registry.production("reranker") is None
    assert [e["event"] for e in registry.history("reranker")] == ["register", "register"]


def test_register_with_move_takes_the_work_directory(registry: Registry, tmp_path: Path) -> None:
    source = _model(tmp_path / "work")
    version = registry.register("embedder", source, move=True)
    assert not source.exists()
    registry.verify("embedder", version.version)


def test_same_key_returns_the_existing_version(registry: Registry, tmp_path: Path) -> None:
    source = _model(tmp_path / "src")
    first = registry.register("reranker", source, key="inputs-1")
    again = registry.register("reranker", source, key="inputs-1")
    assert again.version == first.version
    assert registry.find_by_key("reranker", "inputs-1") == first
    assert len(registry.versions("reranker")) == 1


def test_concurrent_registrations_get_distinct_versions(registry: Registry, tmp_path: Path) -> None:
    source = _model(tmp_path / "src")
    names: list[str] = []
    lock = threading.Lock()

    def register() -> None:
        version = registry.register("reranker", source)
        with lock:
            names.append(version.version)

    threads = [threading.Thread(target=register) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(names, key=lambda n: int(n[1:])) == [f"v{i}" for i in range(1, 7)]


def test_staging_directories_are_never_listed_and_dead_ones_are_removed(
    registry: Registry, tmp_path: Path
) -> None:
    role_dir = registry.root / "reranker"
    role_dir.mkdir(parents=True)
    import socket

    dead = role_dir / f".staging-{socket.gethostname()}-999999999-1"
    _model(dead / "model")
    half = role_dir / "v7"  # a directory without a manifest is not a version
    half.mkdir()
    assert registry.versions("reranker") == []
    registry.register("reranker", _model(tmp_path / "src"))
    assert not dead.exists()
    assert [v.version for v in registry.versions("reranker")] == ["v8"]


def test_promote_swaps_the_pointer_and_retires_the_previous(
    registry: Registry, tmp_path: Path
) -> None:
    source = _model(tmp_path / "src")
    v1 = registry.register("reranker", source)
    v2 = registry.register("reranker", source)
    registry.promote("reranker", v1.version, actor="test")
    registry.promote("reranker", v2.version, actor="test", reason="better")

    assert registry.production_version("reranker") == "v2"
    assert registry.get("reranker", "v1").state is VersionState.RETIRED
    assert registry.get("reranker", "v2").state is VersionState.PRODUCTION
    pointer = json.loads((registry.root / "reranker" / "PRODUCTION").read_text())
    assert pointer["version"] == "v2"
    last = registry.history("reranker")[-1]
    assert (last["event"], last["version"], last["previous"], last["reason"]) == (
        "promote",
        "v2",
        "v1",
        "better",
    )


def test_rollback_returns_to_the_replaced_version(registry: Registry, tmp_path: Path) -> None:
    source = _model(tmp_path / "src")
    for _ in range(3):
        registry.register("reranker", source)
    registry.promote("reranker", "v1")
    registry.promote("reranker", "v3")
    restored = registry.rollback("reranker", reason="bad answers")
    assert restored.version == "v1"
    assert registry.production_version("reranker") == "v1"
    assert registry.get("reranker", "v3").state is VersionState.RETIRED
    assert registry.history("reranker")[-1]["event"] == "rollback"
    assert registry.rollback("reranker", to="v2").version == "v2"


def test_rollback_without_a_previous_version_is_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(VersionNotFoundError, match="no production"):
        registry.rollback("reranker")
    registry.register("reranker", _model(tmp_path / "src"))
    registry.promote("reranker", "v1")
    with pytest.raises(VersionNotFoundError, match="nothing to roll back"):
        registry.rollback("reranker")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "model.onnx").write_bytes(b"weighTs"), "file model.onnx does not match"),
        (lambda p: (p / "model.onnx").write_bytes(b"we"), "file model.onnx does not match"),
        (lambda p: (p / "sub" / "vocab.txt").unlink(), "file sub/vocab.txt is missing"),
        (lambda p: (p / "extra.bin").write_bytes(b"x"), "file extra.bin is not in its manifest"),
    ],
)
def test_verify_names_the_file_that_does_not_match(
    registry: Registry, tmp_path: Path, damage: object, message: str
) -> None:
    version = registry.register("reranker", _model(tmp_path / "src"))
    damage(version.path)  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=message):
        registry.verify("reranker", "v1")
    with pytest.raises(IntegrityError):
        registry.promote("reranker", "v1")
    assert registry.production_version("reranker") is None


def test_update_changes_metrics_but_not_files_or_state(registry: Registry, tmp_path: Path) -> None:
    registry.register("reranker", _model(tmp_path / "src"))
    updated = registry.update("reranker", "v1", metrics={"rerank50_p50_ms": 12.0})
    assert updated.metrics == {"rerank50_p50_ms": 12.0}
    with pytest.raises(RegistryError, match="cannot change files"):
        registry.update("reranker", "v1", files={})
    with pytest.raises(RegistryError, match="cannot change state"):
        registry.update("reranker", "v1", state="production")


def test_unknown_roles_versions_and_sources_are_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="unknown role 'teacher'"):
        registry.versions("teacher")
    with pytest.raises(VersionNotFoundError):
        registry.get("reranker", "v1")
    with pytest.raises(VersionNotFoundError):
        registry.get("reranker", "../../etc")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistryError, match="not a model directory"):
        registry.register("reranker", empty)


def test_packaged_models_are_registered_by_reference(registry: Registry) -> None:
    from ranker.model_files import base_model_dir

    version = registry.register("embedder", base_model_dir(), packaged="minilm")
    assert version.path == base_model_dir()
    assert not (registry.root / "embedder" / version.version / "model").exists()
    registry.verify("embedder", version.version)


def test_a_torn_history_line_is_skipped(registry: Registry, tmp_path: Path) -> None:
    registry.register("reranker", _model(tmp_path / "src"))
    with open(registry.root / "reranker" / "history.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"event": "prom')
    assert [e["event"] for e in registry.history("reranker")] == ["register"]
    assert os.path.getsize(registry.root / "reranker" / "history.jsonl") > 0
