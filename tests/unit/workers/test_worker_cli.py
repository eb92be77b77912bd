"""``shoprank worker`` and ``shoprank beat`` become ``celery -A workers.app worker|beat``."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from ranker import cli


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_execv(path: str, argv: list[str]) -> None:
        assert path == sys.executable
        calls.append(argv)

    monkeypatch.setattr("workers.cli.os.execv", fake_execv)
    return calls


def test_worker_passes_concurrency_loglevel_and_extra_options(execs: list[list[str]]) -> None:
    result = CliRunner().invoke(
        cli.app, ["worker", "-c", "2", "--loglevel", "DEBUG", "--", "--pool=solo", "-n", "a@%h"]
    )
    assert result.exit_code == 0, result.output
    assert execs == [
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "--concurrency=2",
            "--loglevel=DEBUG",
            "--pool=solo",
            "-n",
            "a@%h",
        ]
    ]


def test_beat_runs_celery_beat(execs: list[list[str]]) -> None:
    result = CliRunner().invoke(cli.app, ["beat"])
    assert result.exit_code == 0, result.output
    assert execs == [
        [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--loglevel=INFO"]
    ]
