"""Fixtures for the API unit tests; the fakes live in ``api_fakes`` beside this file."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_fakes import fake_model_dir

from ranker.registry import Registry
from ranker.settings import EmbedderSettings, Settings


@pytest.fixture
def registry_settings(tmp_path: Path) -> Settings:
    """Settings whose registry (under tmp_path) serves both roles; nothing explicit."""
    return Settings(
        home=tmp_path / "home",
        registry_dir=tmp_path / "registry",
        embedder=EmbedderSettings(model="minilm", backend="torch"),
    )


@pytest.fixture
def registry(registry_settings: Settings, tmp_path: Path) -> Registry:
    """A registry with embedder v1 (production) and reranker v1 (production), v2 (candidate)."""
    found = Registry(registry_settings.registry_path)
    found.register("embedder", fake_model_dir(tmp_path / "src-e1", marker="e1"))
    found.promote("embedder", "v1")
    for marker in ("r1", "r2"):
        found.register("reranker", fake_model_dir(tmp_path / f"src-{marker}", marker=marker))
    found.promote("reranker", "v1")
    return found
