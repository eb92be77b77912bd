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


def _invoke(flags: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from ranker.cli import app
    from ranker.settings import get_settings
    from ranker.training import jobs

    seen: dict[str, Any] = {}

    def record(*_: Any, overrides: dict[str, Any], **__: Any) -> Any:
        seen.update(overrides)
        return tmp_path, {"version": "v2"}

    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    get_settings.cache_clear()
    monkeypatch.setattr(jobs, "train_reranker_job", record)
    try:
        return CliRunner().invoke(app, ["train", *flags]), seen
    finally:
        get_settings.cache_clear()


def test_prior_only_asks_for_the_reranker_without_its_cross_encoder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, seen = _invoke(["--prior-only", "--folds", "3"], monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    assert seen == {"cross_encoder": False}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prior-only", "--bi-encoder"], "drop --bi-encoder"),
        (["--prior-only", "--epochs", "1"], "--epochs: the prior alone is fitted"),
        (["--prior-only", "--loss", "listwise"], "--loss: the prior alone is fitted"),
    ],
)
def test_prior_only_refuses_what_does_not_apply(
    flags: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, seen = _invoke(flags, monkeypatch, tmp_path)
    assert result.exit_code == 2
    assert message in result.output
    assert not seen
