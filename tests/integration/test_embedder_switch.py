"""A bi-encoder that changes the vectors is promoted together with an index built for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.jobs import read_index_manifest
from ranker.loading import build_default_index, load_embedder
from ranker.model_switch import promote, stage_index, staged_index_path
from ranker.registry import Registry, RegistryError
from ranker.settings import EmbedderSettings, RegistrySettings, Settings


@pytest.fixture
def settings(tmp_path: Path, tiny_embedder_dir: Path, subset_catalog_path: Path) -> Settings:
    settings = Settings(
        home=tmp_path,
        embedder=EmbedderSettings(backend="torch", batch_size=32),
        registry=RegistrySettings(max_ndcg_drop=1.0),
    )
    registry = Registry(settings.registry_path)
    served = registry.register("embedder", tiny_embedder_dir)
    registry.promote("embedder", served.version)
    build_default_index(settings, subset_catalog_path, progress=False)
    return settings


def _held(settings: Settings, index_dir: Path | None = None) -> str:
    return str(read_index_manifest(index_dir or settings.index_path)["embedder"]["weights_sha256"])


def test_a_new_bi_encoder_needs_its_index_and_both_switch_together(
    settings: Settings, other_tiny_embedder_dir: Path, subset_catalog_path: Path
) -> None:
    registry = Registry(settings.registry_path)
    old = _held(settings)
    candidate = registry.register("embedder", other_tiny_embedder_dir)
    with pytest.raises(RegistryError, match="build its index first"):
        promote(settings, "embedder", candidate.version, actor="test", force=True)
    assert registry.production_version("embedder") == "v1"

    stage_index(settings, candidate.version, catalog=subset_catalog_path, progress=False)
    staged = staged_index_path(settings, candidate.version)
    assert _held(settings, staged) != old
    assert _held(settings) == old  # the serving index is untouched while it is built

    promote(settings, "embedder", candidate.version, actor="test", force=True)
    assert registry.production_version("embedder") == candidate.version
    assert _held(settings) == load_embedder(settings).identity.weights_sha256 != old
    assert not staged.exists()


def test_a_failed_pointer_swap_puts_the_old_index_back(
    settings: Settings,
    other_tiny_embedder_dir: Path,
    subset_catalog_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(settings.registry_path)
    old = _held(settings)
    candidate = registry.register("embedder", other_tiny_embedder_dir)
    stage_index(settings, candidate.version, catalog=subset_catalog_path, progress=False)

    def refuse(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Registry, "promote", refuse)
    with pytest.raises(OSError, match="disk full"):
        promote(settings, "embedder", candidate.version, actor="test", force=True)
    assert _held(settings) == old
    assert staged_index_path(settings, candidate.version).exists()


def test_an_export_of_the_same_weights_needs_no_reindex(
    settings: Settings, tiny_embedder_dir: Path
) -> None:
    registry = Registry(settings.registry_path)
    same = registry.register("embedder", tiny_embedder_dir, job="test")
    promote(settings, "embedder", same.version, actor="test", force=True)
    assert registry.production_version("embedder") == same.version
