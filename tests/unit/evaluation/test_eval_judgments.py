"""Loading judgments, queries and candidates; query-level folds."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from ranker.evaluation.judgments import (
    Judgments,
    kfold_query_splits,
    load_candidates,
    load_judgments,
    load_queries,
)
from ranker.settings import ESCI_GAINS

SAMPLE = Path(__file__).resolve().parents[3] / "indexer" / "sample_data" / "judgments.csv"

HEADER = "query_id,query,product_id,esci_label\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_sample_judgments() -> None:
    judgments = load_judgments(SAMPLE)
    assert len(judgments.queries) == 100
    assert judgments.num_judgments == 4491
    assert next(iter(judgments.queries)) == "q001"
    assert judgments.queries["q001"] == "%100 silicone not clear"
    assert judgments.labels["q001"]["B0000AYC09"] == "E"
    assert judgments.qrels["q001"]["B0000AYC09"] == 1.0
    assert judgments.qrels["q001"]["B0000CBIH9"] == 0.0
    assert judgments.qrels["q001"]["B0000CBJ7W"] == 0.1
    gains = {g for judged in judgments.qrels.values() for g in judged.values()}
    assert gains == set(ESCI_GAINS.values())


def test_load_judgments_keeps_order_and_quoted_text(tmp_path: Path) -> None:
    path = write(
        tmp_path / "j.csv",
        HEADER + 'q2,"red, large",p1,C\nq1,mug,p9,S\nq2,"red, large",p0,I\n',
    )
    judgments = load_judgments(path)
    assert list(judgments.queries) == ["q2", "q1"]
    assert judgments.queries["q2"] == "red, large"
    assert list(judgments.qrels["q2"]) == ["p1", "p0"]
    assert judgments.qrels["q2"] == {"p1": 0.01, "p0": 0.0}


def test_load_judgments_gz(tmp_path: Path) -> None:
    path = tmp_path / "j.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(HEADER + "q1,mug,p1,E\n")
    assert load_judgments(path).qrels == {"q1": {"p1": 1.0}}


def test_numeric_labels_are_gains(tmp_path: Path) -> None:
    path = write(tmp_path / "hd.csv", HEADER + "q1,drill,p1,3\nq1,drill,p2,1.67\n")
    judgments = load_judgments(path)
    assert judgments.qrels == {"q1": {"p1": 3.0, "p2": 1.67}}
    assert judgments.labels == {"q1": {"p1": "3", "p2": "1.67"}}


def test_custom_gains(tmp_path: Path) -> None:
    path = write(tmp_path / "j.csv", HEADER + "q1,mug,p1,good\n")
    assert load_judgments(path, gains={"good": 2.0}).qrels == {"q1": {"p1": 2.0}}


def test_unknown_label_names_line_and_label(tmp_path: Path) -> None:
    path = write(tmp_path / "j.csv", HEADER + "q1,mug,p1,E\nq1,mug,p2,X\n")
    with pytest.raises(ValueError, match=r"j\.csv:3: unknown label 'X'"):
        load_judgments(path)


@pytest.mark.parametrize("label", ["-1", "nan", "inf"])
def test_bad_numeric_label(tmp_path: Path, label: str) -> None:
    path = write(tmp_path / "j.csv", HEADER + f"q1,mug,p1,{label}\n")
    with pytest.raises(ValueError, match=r"j\.csv:2: label"):
        load_judgments(path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "j.csv", "query_id,product_id\nq1,p1\n")
    with pytest.raises(
        ValueError, match=r"missing column\(s\) query, esci_label/label \(label\) or gain;"
    ):
        load_judgments(path)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty file"):
        load_judgments(write(tmp_path / "j.csv", ""))


def test_duplicate_pair_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "j.csv", HEADER + "q1,mug,p1,E\nq1,mug,p1,I\n")
    with pytest.raises(ValueError, match=r"j\.csv:3: duplicate judgment"):
        load_judgments(path)


def test_conflicting_query_text_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "j.csv", HEADER + "q1,mug,p1,E\nq1,cup,p2,E\n")
    with pytest.raises(ValueError, match="q1"):
        load_judgments(path)


def test_subset_keeps_file_order() -> None:
    judgments = Judgments(
        queries={"a": "A", "b": "B", "c": "C"},
        qrels={"a": {"p": 1.0}, "b": {"p": 0.0}, "c": {"p": 0.1}},
        labels={"a": {"p": "E"}, "b": {"p": "I"}, "c": {"p": "S"}},
    )
    part = judgments.subset(["c", "a"])
    assert list(part.queries) == ["a", "c"]
    assert part.qrels == {"a": {"p": 1.0}, "c": {"p": 0.1}}
    assert part.labels == {"a": {"p": "E"}, "c": {"p": "S"}}
    with pytest.raises(ValueError, match="unknown query ids: z"):
        judgments.subset(["a", "z"])
    with pytest.raises(TypeError):
        judgments.subset("a")


def test_load_queries(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", "query,query_id,extra\nmug,q2,x\ncup,q1,y\nmug,q2,z\n")
    assert load_queries(path) == {"q2": "mug", "q1": "cup"}
    assert list(load_queries(path)) == ["q2", "q1"]


def test_load_queries_reads_a_judgments_file() -> None:
    assert len(load_queries(SAMPLE)) == 100


def test_load_queries_conflict_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"q\.csv:3: query 'q1'"):
        load_queries(write(tmp_path / "q.csv", "query_id,query\nq1,mug\nq1,cup\n"))
    with pytest.raises(ValueError, match=r"missing column\(s\) query;"):
        load_queries(write(tmp_path / "q2.csv", "query_id,text\nq1,mug\n"))


def test_load_candidates(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.csv",
        "product_id,query_id,score\np2,q2,1\np1,q1,1\np0,q2,1\np2,q2,9\n",
    )
    candidates = load_candidates(path)
    assert candidates == {"q2": ["p2", "p0"], "q1": ["p1"]}
    assert list(candidates) == ["q2", "q1"]
    with pytest.raises(ValueError, match=r"missing column\(s\) product_id;"):
        load_candidates(write(tmp_path / "bad.csv", "query_id,query\nq1,mug\n"))


def test_kfold_splits_cover_each_query_once() -> None:
    qids = [f"q{i:02d}" for i in range(23)]
    splits = kfold_query_splits(qids, folds=5, seed=13)
    assert len(splits) == 5
    tests = [qid for _, test in splits for qid in test]
    assert sorted(tests) == qids
    for train, test in splits:
        assert not set(train) & set(test)
        assert sorted(train + test) == qids
        assert len(test) in (4, 5)
        assert train == [qid for qid in qids if qid in train]  # input order kept


def test_kfold_is_deterministic_and_order_free() -> None:
    qids = [f"q{i}" for i in range(20)]
    first = kfold_query_splits(qids, folds=4, seed=7)
    assert first == kfold_query_splits(qids, folds=4, seed=7)
    reordered = kfold_query_splits(list(reversed(qids)), folds=4, seed=7)
    assert [sorted(test) for _, test in first] == [sorted(test) for _, test in reordered]
    other = kfold_query_splits(qids, folds=4, seed=8)
    assert [test for _, test in first] != [test for _, test in other]


@pytest.mark.parametrize("folds", [0, 1, 4])
def test_kfold_bad_fold_count(folds: int) -> None:
    with pytest.raises(ValueError, match="folds"):
        kfold_query_splits(["a", "b", "c"], folds=folds, seed=0)


def test_kfold_duplicates_raise() -> None:
    with pytest.raises(ValueError, match="duplicates"):
        kfold_query_splits(["a", "a", "b"], folds=2, seed=0)
