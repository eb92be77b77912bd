"""The per-process model cache: one load per version, a reload when the version changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ranker import loading, serving_models
from ranker.serving_models import ModelSource
from ranker.settings import EmbedderSettings, Settings
from workers import cache


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """What serves (``source``, changeable) and every load, with loading faked."""
    state: dict[str, Any] = {
        "source": ModelSource(Path("/registry/embedder/v1/model")),
        "loads": [],
    }

    def load(settings: Settings, source: ModelSource | None = None) -> object:
        state["loads"].append(source)
        return object()

    monkeypatch.setattr(serving_models, "serving_source", lambda settings, role: state["source"])
    monkeypatch.setattr(loading, "load_embedder", load)
    cache.clear()
    yield state
    cache.clear()


def test_the_same_version_is_loaded_once(serving: dict[str, Any], tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = cache.cached_embedder(settings)
    assert cache.cached_embedder(settings) is first
    assert len(serving["loads"]) == 1


def test_a_new_version_is_loaded_and_the_oldest_dropped(
    serving: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path)
    first = cache.cached_embedder(settings)
    for number in range(2, 2 + cache.MAX_MODELS):
        serving["source"] = ModelSource(Path(f"/registry/embedder/v{number}/model"))
        assert cache.cached_embedder(settings) is not first
    assert len(serving["loads"]) == 1 + cache.MAX_MODELS
    serving["source"] = ModelSource(Path("/registry/embedder/v1/model"))
    assert cache.cached_embedder(settings) is not first  # dropped: loaded again
    assert len(serving["loads"]) == 2 + cache.MAX_MODELS


def test_another_backend_is_another_model(serving: dict[str, Any], tmp_path: Path) -> None:
    torch = Settings(home=tmp_path, embedder=EmbedderSettings(backend="torch"))
    onnx = Settings(home=tmp_path, embedder=EmbedderSettings(backend="onnx"))
    assert cache.cached_embedder(torch) is not cache.cached_embedder(onnx)
    assert cache.cached_embedder(torch) is cache.cached_embedder(torch)
    assert len(serving["loads"]) == 2
