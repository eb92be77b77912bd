"""A prior-only reranker has nothing to compress: the compress step skips it, before any
input is hashed or any lock taken, and hands it on as the chain's candidate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ranker.prior_files import prior_manifest, write_prior_only
from ranker.serving_models import open_registry
from ranker.settings import Settings
from workers import compression


def test_a_prior_only_teacher_is_skipped_and_handed_on(
    tmp_path: Path, tiny_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home")
    identity = {"model_id": "e", "weights_sha256": "0" * 64, "dimension": 32}
    prior_only = write_prior_only(
        tmp_path / "prior-only",
        prior_manifest({"weight": 1.0, "bias": 0.0}, identity),
        files_from=tiny_reranker_dir,
        manifest={"data_sha256": "d"},
    )
    version = open_registry(settings).register("reranker", prior_only).version

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
