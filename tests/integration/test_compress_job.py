"""`shoprank compress` end to end on the tiny models: both models compressed, every student
variant cross-validated and timed, the gate applied, the report written.

Random weights rank at random, so this checks the job's mechanics and outputs, not quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ranker.compress.job import TEACHER, CompressConfig, compress_models
from ranker.settings import Settings

pytestmark = pytest.mark.slow


def test_compress_writes_every_variant_and_the_report(
    integration_settings: Settings, built_index: dict[str, Any], tmp_path: Path
) -> None:
    config = CompressConfig(
        layers=(1,),
        max_lengths=(32,),
        embedder_max_lengths=(),
        folds=2,
        pseudo_queries=4,
        judged_query_depth=3,
        pseudo_query_depth=2,
        latency_repeats=2,
        student={"epochs": 0.05, "evals_per_epoch": 1, "batch_size": 64},
    )
    embedder_report, report = compress_models(integration_settings, config, work_dir=tmp_path)

    assert [v.name for v in embedder_report.variants] == [
        "source torch fp32",
        "onnx fp32",
        "onnx int8",
    ]
    names = [v.name for v in report.variants]
    assert names[0] == TEACHER
    assert names[1:] == [
        "student 1L/32t torch fp32",
        "student 1L/32t onnx fp32",
        "student 1L/32t onnx int8",
    ]
    for variant in report.variants:
        if variant.path is not None:
            assert variant.p50_ms > 0
            assert variant.cv_ndcg is not None
    assert (tmp_path / "teacher-pairs.jsonl").is_file()
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Bi-encoder" in markdown
    assert "student 1L/32t onnx int8" in markdown
    document = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert document["embedder"]["variants"][0]["name"] == "source torch fp32"
    assert (tmp_path / "report.png").stat().st_size > 0
