"""The main job compresses once per teacher: a report of this teacher means its gates ruled."""

from __future__ import annotations

import json
from pathlib import Path

from ranker.demo import _compressed_before
from ranker.model_files import model_id


def test_a_report_of_this_teacher_means_compression_ran(
    tmp_path: Path, tiny_reranker_dir: Path
) -> None:
    report = tmp_path / "report.json"
    assert not _compressed_before(report, tiny_reranker_dir)  # no report yet

    report.write_text(json.dumps({"teacher": model_id(tiny_reranker_dir)}))
    assert _compressed_before(report, tiny_reranker_dir)

    report.write_text(json.dumps({"teacher": "another-teacher"}))
    assert not _compressed_before(report, tiny_reranker_dir)

    report.write_text("{not json")
    assert not _compressed_before(report, tiny_reranker_dir)
