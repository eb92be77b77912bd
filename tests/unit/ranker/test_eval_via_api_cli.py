"""`shoprank eval --via-api` names the shop's judgments file and mapping in its report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner


def test_the_report_names_the_judgments_and_their_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ranker.cli import app
    from ranker.evaluation import api_rerank
    from ranker.evaluation.report import SystemResult
    from ranker.settings import get_settings

    seen: dict[str, Any] = {}

    def evaluate(*_: Any, **__: Any) -> Any:
        return None, SystemResult("POST u/v1/rerank", "rerank", {"ndcg@10": 0.9}, "")

    def report(row: SystemResult, out: Path, *, source: str) -> tuple[Path, Path]:
        seen["source"] = source
        return out / "report.md", out / "ndcg.png"

    monkeypatch.setattr(api_rerank, "evaluate_api_rerank", evaluate)
    monkeypatch.setattr(api_rerank, "report_api_rerank", report)
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    get_settings.cache_clear()
    judged = tmp_path / "judged.csv"
    try:
        result = CliRunner().invoke(
            app,
            ["eval", "--via-api", "http://u", "--judgments", str(judged), "--gain-base", "1"],
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen["source"] == f'{judged} (mapping {{"gain_base":1.0}})'
