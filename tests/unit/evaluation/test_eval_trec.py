"""TREC run files: writing, validation and round trips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ranker.evaluation.trec import read_trec_run, write_trec_run


def test_write_format_order_and_tie_break(tmp_path: Path) -> None:
    run = {
        "q2": {"d2": 0.5, "d1": 0.5, "d0": 0.9},
        "q1": {"x": 1.0},
    }
    path = tmp_path / "run.trec"
    write_trec_run(run, path, tag="bm25")
    assert path.read_text().splitlines() == [
        "q2 Q0 d0 1 0.9 bm25",
        "q2 Q0 d1 2 0.5 bm25",
        "q2 Q0 d2 3 0.5 bm25",
        "q1 Q0 x 1 1.0 bm25",
    ]


def test_depth_cuts_each_query(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    write_trec_run({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, path, tag="t", depth=2)
    assert [line.split()[2] for line in path.read_text().splitlines()] == ["a", "b"]
    with pytest.raises(ValueError, match="depth"):
        write_trec_run({"q": {"a": 1.0}}, path, tag="t", depth=0)


def test_round_trip_is_exact(tmp_path: Path) -> None:
    # Scores that a fixed-precision format would tie or round; repr reads back exactly.
    run = {
        "q1": {"a": 0.1 + 0.2, "b": 0.30000000000000004, "c": 1e-12, "d": -3.5},
        "q0": {"e": 123456789.123456789, "f": 0.123456789012345678},
    }
    path = tmp_path / "run.trec"
    write_trec_run(run, path, tag="sys")
    back = read_trec_run(path)
    assert back == run
    assert list(back) == ["q1", "q0"]


def test_numpy_like_scores_are_plain_numbers(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    path = tmp_path / "run.trec"
    write_trec_run({"q": {"a": np.float32(0.25)}}, path, tag="t")
    assert path.read_text() == "q Q0 a 1 0.25 t\n"


@pytest.mark.parametrize(
    ("run", "tag", "what"),
    [
        ({"q": {"a": 1.0}}, "my tag", "tag"),
        ({"q": {"a": 1.0}}, "", "tag"),
        ({"q 1": {"a": 1.0}}, "t", "qid"),
        ({"q": {"a\tb": 1.0}}, "t", "doc id"),
    ],
)
def test_whitespace_is_rejected_and_nothing_written(
    tmp_path: Path, run: dict[str, dict[str, float]], tag: str, what: str
) -> None:
    path = tmp_path / "run.trec"
    with pytest.raises(ValueError, match=what):
        write_trec_run(run, path, tag=tag)
    assert not path.exists()


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run.trec"
    write_trec_run({"q": {"a": 1.0}}, path, tag="old")
    with pytest.raises(ValueError, match="NaN"):
        write_trec_run({"q": {"a": float("nan")}}, path, tag="new")
    assert path.read_text() == "q Q0 a 1 1.0 old\n"
    assert os.listdir(path.parent) == ["run.trec"]


def test_read_rejects_malformed_lines(tmp_path: Path) -> None:
    bad_fields = tmp_path / "a.trec"
    bad_fields.write_text("q Q0 a 1 1.0 t\nq Q0 b 2 0.5\n")
    with pytest.raises(ValueError, match=r"a\.trec:2: expected 6 fields"):
        read_trec_run(bad_fields)
    bad_score = tmp_path / "b.trec"
    bad_score.write_text("q Q0 a 1 high t\n")
    with pytest.raises(ValueError, match=r"b\.trec:1: bad rank"):
        read_trec_run(bad_score)
    repeated = tmp_path / "c.trec"
    repeated.write_text("q Q0 a 1 1.0 t\n\nq Q0 a 2 0.5 t\n")
    with pytest.raises(ValueError, match=r"c\.trec:3: doc 'a' repeats"):
        read_trec_run(repeated)
