"""Parity checks run on the job's own judged queries, not the bundled sample's."""

from __future__ import annotations

from ranker.compress.parity import catalog_groups, judged_groups
from ranker.evaluation.judgments import Judgments


def test_groups_come_from_the_given_judgments_and_texts() -> None:
    judgments = Judgments(
        queries={"q1": "drill", "q2": "saw", "q3": "hammer"},
        qrels={"q1": {"p1": 1.0, "p9": 0.1}, "q2": {"p2": 0.0}, "q3": {"p3": 1.0}},
        labels={"q1": {"p1": "E", "p9": "S"}, "q2": {"p2": "I"}, "q3": {"p3": "E"}},
    )
    texts = {"p1": "cordless drill", "p2": "hand saw", "p3": "claw hammer"}
    groups = judged_groups(judgments, texts, queries=2)
    assert [(g.query, g.documents, g.gains) for g in groups] == [
        ("drill", ("cordless drill",), (1.0,)),  # p9 is not in the catalog
        ("saw", ("hand saw",), (0.0,)),
    ]


def test_the_sample_groups_are_read_once() -> None:
    first = catalog_groups(queries=3)
    assert len(first) == 3
    assert catalog_groups(queries=3) == first
    first.clear()  # a caller's list is its own
    assert len(catalog_groups(queries=3)) == 3
