"""One query's judgments found by its text, and NDCG against them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ranker.evaluation.judgments import load_judgments
from ranker.evaluation.query_judgments import JudgmentLookup, query_key

JUDGMENTS = (
    "query_id,query,product_id,esci_label\n"
    "q1,Kindle Fire,p1,E\n"
    "q1,Kindle Fire,p2,S\n"
    "q1,Kindle Fire,p3,I\n"
    "q2,usb cable,p4,C\n"
)


@pytest.fixture
def lookup(tmp_path: Path) -> JudgmentLookup:
    path = tmp_path / "judgments.csv"
    path.write_text(JUDGMENTS, encoding="utf-8")
    return JudgmentLookup(load_judgments(path))


def test_query_key_ignores_case_and_spacing() -> None:
    assert query_key("  Kindle   FIRE ") == query_key("kindle fire") == "kindle fire"


def test_a_typed_query_finds_its_labels_and_gains(lookup: JudgmentLookup) -> None:
    found = lookup.find(" kindle  fire")

    assert found is not None
    assert (found.query_id, found.query) == ("q1", "Kindle Fire")
    assert found.labels == {"p1": "E", "p2": "S", "p3": "I"}
    assert found.gains == {"p1": 1.0, "p2": 0.1, "p3": 0.0}
    assert len(lookup) == 2


def test_an_unjudged_query_finds_nothing(lookup: JudgmentLookup) -> None:
    assert lookup.find("kindle") is None


def test_ndcg_uses_the_gains_linearly_with_a_log2_discount(lookup: JudgmentLookup) -> None:
    found = lookup.find("kindle fire")
    assert found is not None
    ideal = 1.0 + 0.1 / math.log2(3)

    assert found.ndcg(["p1", "p2", "p3"], k=10) == pytest.approx(1.0)
    # p2 first, an unjudged product second, p1 third.
    swapped = 0.1 + 1.0 / math.log2(4)
    assert found.ndcg(["p2", "x", "p1"], k=10) == pytest.approx(swapped / ideal)
    assert found.ndcg([], k=10) == 0.0


def test_a_repeated_product_is_refused(lookup: JudgmentLookup) -> None:
    found = lookup.find("kindle fire")
    assert found is not None

    with pytest.raises(ValueError, match="repeats"):
        found.ndcg(["p1", "p1"], k=10)
