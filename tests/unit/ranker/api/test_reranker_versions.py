"""Registered reranker versions loaded on demand beside the serving one (``model_version``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_fakes import FakeLoader, fake_model_dir

from ranker.api.errors import BackendFailedError
from ranker.api.model_loading import load_models
from ranker.api.reranker_versions import MAX_CACHED_VERSIONS, RerankerVersions
from ranker.api.service import Service, Snapshot
from ranker.registry import IntegrityError, Registry, VersionNotFoundError
from ranker.settings import Settings


@pytest.fixture
def loader() -> FakeLoader:
    return FakeLoader()


@pytest.fixture
def snapshot(registry: Registry, registry_settings: Settings, loader: FakeLoader) -> Snapshot:
    models = load_models(registry_settings, loader)
    return Service(
        embedder=models.embedder,
        reranker=models.reranker,
        pipeline=None,
        problems=[],
        embedder_source=models.embedder_source,
        reranker_source=models.reranker_source,
    ).snapshot


def test_another_version_replaces_the_reranker_in_a_new_snapshot(
    snapshot: Snapshot, registry_settings: Settings, loader: FakeLoader
) -> None:
    versions = RerankerVersions(registry_settings, loader=loader)

    other = versions.snapshot_with(snapshot, "v2")

    assert other.reranker_label == "reranker/v2"
    assert other.reranker is not None
    assert other.reranker.logit == 2.0  # type: ignore[attr-defined]
    assert other.embedder is snapshot.embedder
    assert snapshot.reranker_label == "reranker/v1"  # the serving snapshot is unchanged


def test_the_serving_version_is_not_loaded_again(
    snapshot: Snapshot, registry_settings: Settings, loader: FakeLoader
) -> None:
    versions = RerankerVersions(registry_settings, loader=loader)
    loaded_before = list(loader.loaded)

    assert versions.snapshot_with(snapshot, "v1") is snapshot
    assert loader.loaded == loaded_before


def test_a_loaded_version_is_kept(
    snapshot: Snapshot, registry_settings: Settings, loader: FakeLoader
) -> None:
    versions = RerankerVersions(registry_settings, loader=loader)

    first = versions.snapshot_with(snapshot, "v2")
    second = versions.snapshot_with(snapshot, "v2")

    assert second.reranker is first.reranker
    assert loader.loaded.count("reranker/v2") == 1


def test_the_least_recently_used_version_is_dropped(
    snapshot: Snapshot,
    registry: Registry,
    registry_settings: Settings,
    loader: FakeLoader,
    tmp_path: Path,
) -> None:
    for number in range(3, 3 + MAX_CACHED_VERSIONS):
        registry.register("reranker", fake_model_dir(tmp_path / f"r{number}", marker=f"r{number}"))
    versions = RerankerVersions(registry_settings, loader=loader)
    names = [f"v{number}" for number in range(2, 3 + MAX_CACHED_VERSIONS)]
    for name in names:
        versions.snapshot_with(snapshot, name)

    versions.snapshot_with(snapshot, names[-1])
    versions.snapshot_with(snapshot, names[0])

    assert loader.loaded.count(f"reranker/{names[-1]}") == 1  # still cached
    assert loader.loaded.count(f"reranker/{names[0]}") == 2  # dropped, loaded again


def test_unknown_and_changed_versions_are_refused(
    snapshot: Snapshot, registry: Registry, registry_settings: Settings, loader: FakeLoader
) -> None:
    versions = RerankerVersions(registry_settings, loader=loader)
    versions.snapshot_with(snapshot, "v2")
    weights = registry.get("reranker", "v2").path / "model.safetensors"
    weights.write_bytes(b"x" * weights.stat().st_size)

    with pytest.raises(VersionNotFoundError):
        versions.snapshot_with(snapshot, "v9")
    with pytest.raises(IntegrityError):  # its files changed since it was loaded
        versions.snapshot_with(snapshot, "v2")


def test_a_version_that_fails_to_load_is_a_backend_error(
    snapshot: Snapshot, registry_settings: Settings, loader: FakeLoader
) -> None:
    loader.fail["reranker/v2"] = RuntimeError("bad weights")
    versions = RerankerVersions(registry_settings, loader=loader)

    with pytest.raises(BackendFailedError, match=r"reranker/v2.*bad weights"):
        versions.snapshot_with(snapshot, "v2")
