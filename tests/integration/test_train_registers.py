"""`shoprank train` registers its model as a candidate; it serves only once promoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranker.serving_models import open_registry, serving_source
from ranker.settings import RerankSettings, Settings
from ranker.training.jobs import train_reranker_job


@pytest.mark.slow
def test_train_registers_a_candidate_that_serves_once_promoted(
    tmp_path: Path, tiny_reranker_dir: Path, tiny_embedder_dir: Path
) -> None:
    settings = Settings(
        home=tmp_path,
        embedder={"model": str(tiny_embedder_dir), "backend": "torch"},  # type: ignore[arg-type]
        rerank=RerankSettings(backend="torch"),
    )
    path, summary = train_reranker_job(
        settings,
        overrides={"base_model": str(tiny_reranker_dir), "epochs": 0.02, "prior": "none"},
        task_id="task-1",
    )
    registry = open_registry(settings)
    version = registry.get("reranker", summary["version"])
    assert path == version.path
    assert version.state.value == "candidate"
    assert version.manifest["created_by"] == {
        "job": "train",
        "task_id": "task-1",
        "host": version.manifest["created_by"]["host"],
    }
    assert version.lineage["source_model"] == str(tiny_reranker_dir)
    assert version.lineage["data_sha256"] == version.metrics["judgments_sha256"]
    assert not list((tmp_path / "work").iterdir())  # the work directory moved in
    assert serving_source(settings, "reranker").label == "reranker/v1"  # seeded, not the new one
    registry.promote("reranker", version.version)
    assert serving_source(settings, "reranker").path == version.path
