"""A prior-only reranker has nothing to compress: the compress step skips it, before any
input is hashed or any lock taken, and hands it on as the chain's candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prior_only_models import register_prior_only

from ranker.settings import Settings
from workers import compression


def test_a_prior_only_teacher_is_skipped_and_handed_on(
    tmp_path: Path, tiny_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home")
    version = register_prior_only(settings.home, tiny_reranker_dir)

    def must_not_run(*_: Any, **__: Any) -> Any:
        raise AssertionError("compression went on")

    monkeypatch.setattr(compression, "compression_inputs", must_not_run)
    monkeypatch.setattr(compression, "redis_client", must_not_run)
    steps: list[str] = []
    result = compression.compress_once(
        settings,
        teacher=version,
        judgments=None,
        catalog=None,
        config={},
        promote=True,
        task_id="t-1",
        work_dir=lambda: tmp_path / "work",
        progress=lambda step, **_: steps.append(step),
        wait=False,
    )
    assert result == {
        "teacher": f"reranker/{version}",
        "candidate": {"role": "reranker", "version": version},
        "skipped": "prior_only",
    }
    assert steps == ["inputs"]
