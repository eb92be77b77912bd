"""`shoprank train` fits the reranker's prior on the source bi-encoder, not a compressed one."""

from __future__ import annotations

from typing import Any

import pytest

from ranker.settings import Settings
from ranker.training import jobs


def test_training_reads_the_configured_models_not_their_compressed_variants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Settings] = {}

    def load_training_data(settings: Settings, **_: Any) -> jobs.TrainingData:
        seen["settings"] = settings
        raise RuntimeError("stop here")

    monkeypatch.setattr(jobs, "load_training_data", load_training_data)
    with pytest.raises(RuntimeError, match="stop here"):
        jobs.train_reranker_job(Settings())

    assert seen["settings"].embedder.compressed is False
    assert seen["settings"].rerank.compressed is False
