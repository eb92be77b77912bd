"""`shoprank train` refuses flags that belong to the other model before it reads anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bi-encoder", "--unjudged-target", "0.1"], "--unjudged-target is the reranker's"),
        (["--positive-gain", "1"], "--positive-gain chooses the bi-encoder's positives"),
    ],
)
def test_train_refuses_the_other_models_flags(
    flags: list[str], message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ranker.cli import app
    from ranker.settings import get_settings
    from ranker.training import jobs

    def no_data(*_: object, **__: object) -> None:
        raise AssertionError("training data was read before the flags were checked")

    monkeypatch.setattr(jobs, "load_training_data", no_data)
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    get_settings.cache_clear()

    result = CliRunner().invoke(app, ["train", *flags])

    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
