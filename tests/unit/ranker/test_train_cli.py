"""`shoprank train` hands its options to the training jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner


@pytest.mark.parametrize(
    ("flags", "job", "loss"),
    [
        (["--loss", "listwise"], "train_reranker_job", "listwise"),
        (["--bi-encoder", "--loss", "margin-mse"], "train_bi_encoder_job", "margin-mse"),
    ],
)
def test_loss_device_and_folds_reach_the_reranker_and_the_bi_encoder(
    flags: list[str], job: str, loss: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ranker.cli import app
    from ranker.settings import get_settings
    from ranker.training import jobs

    seen: dict[str, Any] = {}

    def record(*_: Any, overrides: dict[str, Any], folds: int, **__: Any) -> Any:
        seen.update(overrides, folds=folds)
        return tmp_path, {"version": "v2"}

    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    get_settings.cache_clear()
    monkeypatch.setattr(jobs, job, record)

    result = CliRunner().invoke(
        app, ["train", *flags, "--epochs", "0.5", "--device", "cpu", "--folds", "3"]
    )

    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen == {"loss": loss, "epochs": 0.5, "device": "cpu", "folds": 3}
