"""Comparison tables and the written report."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranker.evaluation.metrics import CONDENSED_NDCG_AT_10, MRR, NDCG_AT_10, RECALL_AT_100
from ranker.evaluation.report import SystemResult, markdown_table, text_table, write_report

RESULTS = [
    SystemResult(
        "bm25",
        "retrieval",
        {NDCG_AT_10: 0.3125, CONDENSED_NDCG_AT_10: 0.5, RECALL_AT_100: 0.6, MRR: 0.55},
        intervals={NDCG_AT_10: (0.25, 0.375)},
    ),
    SystemResult("cross-encoder", "rerank", {NDCG_AT_10: 0.81234}, note="5-fold CV"),
    SystemResult(
        "cross-encoder",
        "retrieval",
        {NDCG_AT_10: 0.4, RECALL_AT_100: 0.7, MRR: 0.66},
        note="hybrid first stage",
    ),
]


def test_markdown_table_merges_tasks_per_system() -> None:
    lines = markdown_table(RESULTS).splitlines()
    assert lines[0] == (
        "| system | rerank NDCG@10 | retrieval NDCG@10 | retrieval condensed NDCG@10 | "
        "retrieval Recall@100 | retrieval MRR | note |"
    )
    assert lines[2] == "| bm25 | – | 0.3125 [0.250, 0.375] | 0.5000 | 0.6000 | 0.5500 |  |"
    assert lines[3] == (
        "| cross-encoder | 0.8123 | 0.4000 | – | 0.7000 | 0.6600 | 5-fold CV; hybrid first stage |"
    )
    assert len(lines) == 4


def test_markdown_escapes_pipes() -> None:
    table = markdown_table([SystemResult("a|b", "rerank", {})])
    assert "| a\\|b | – |" in table


def test_text_table_is_aligned() -> None:
    lines = text_table(RESULTS).splitlines()
    assert lines[0].startswith("system ")
    assert set(lines[1]) <= {"-", " "}
    # Numbers are right-aligned: every row's rerank cell ends at the same column.
    end = lines[0].index("rerank NDCG@10") + len("rerank NDCG@10")
    assert lines[2][end - 1] == "–"
    assert lines[3][end - 6 : end] == "0.8123"


def test_bad_task_and_duplicates() -> None:
    with pytest.raises(ValueError, match="task"):
        SystemResult("x", "ranking", {})
    with pytest.raises(ValueError, match="two rerank results"):
        markdown_table([SystemResult("x", "rerank", {}), SystemResult("x", "rerank", {})])


def test_write_report(tmp_path: Path) -> None:
    md_path, png_path = write_report(
        RESULTS, tmp_path / "report", title="ESCI subset", preamble="Judged on 100 queries."
    )
    assert md_path == tmp_path / "report" / "report.md"
    assert png_path == tmp_path / "report" / "ndcg.png"
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown.startswith("# ESCI subset\n\nJudged on 100 queries.\n")
    for name in ("bm25", "cross-encoder"):
        assert name in markdown
    for number in ("0.3125", "0.8123", "0.7000", "0.6600"):
        assert number in markdown
    assert "ndcg.png" in markdown
    assert sorted(p.name for p in md_path.parent.iterdir()) == ["ndcg.png", "report.md"]


def test_write_report_needs_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no results"):
        write_report([], tmp_path, title="t")


def test_stored_cv_figures_show_only_beside_the_queries_they_were_measured_on() -> None:
    from ranker.evaluation.judgments import Judgments
    from ranker.evaluation.suite import measured_on

    judgments = Judgments(queries={"q1": "drill"}, qrels={"q1": {"a": 1.0}}, labels={})
    assert measured_on({"train_query_ids": ["q1", "q2"]}, judgments)
    assert not measured_on({"train_query_ids": ["esci-7"]}, judgments)
    assert measured_on({}, judgments)  # an older manifest that does not list its queries


def test_report_lists_paired_comparisons(tmp_path: Path) -> None:
    from ranker.evaluation.bootstrap import PairedDifference
    from ranker.evaluation.report import Comparison

    comparison = Comparison(
        "hybrid + rerank",
        "hybrid + prior alone",
        "rerank",
        "ndcg@10",
        PairedDifference(0.0123, (-0.004, 0.031), 1169),
        "served model",
    )
    md_path, _ = write_report(RESULTS, tmp_path, title="t", comparisons=[comparison])

    markdown = md_path.read_text(encoding="utf-8")
    assert "Paired bootstrap" in markdown
    assert (
        "| hybrid + rerank | hybrid + prior alone | rerank | ndcg@10 | +0.0123 [-0.004, +0.031] "
        "| 1169 | served model |" in markdown
    )
    assert comparison.describe() == (
        "hybrid + rerank - hybrid + prior alone, rerank ndcg@10: +0.0123 [-0.004, +0.031] "
        "over 1169 queries"
    )


def test_stored_cv_figures_include_the_prior_alone_where_the_manifest_has_them() -> None:
    from ranker.evaluation.suite import _from_manifest

    manifest = {
        "cross_validation": {
            "folds": 5,
            "rerank": {"ndcg@10": 0.72},
            "retrieval": {"ndcg@10": 0.65},
            "rerank, prior alone": {"ndcg@10": 0.71},
            "retrieval, retrieval_weight 0": {"ndcg@10": 0.6},
        }
    }
    rows = {(row.name, row.task): row.means["ndcg@10"] for row in _from_manifest(manifest)}
    assert rows == {
        ("hybrid + rerank", "rerank"): 0.72,
        ("hybrid + rerank", "retrieval"): 0.65,
        ("hybrid + prior alone", "rerank"): 0.71,
    }
