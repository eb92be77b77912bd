"""Retrieved, unjudged products as weak negatives: the pools, the draw, the training pairs."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from indexer.stores.base import Hit
from ranker.evaluation.judgments import Judgments
from ranker.training.reranker_pairs import dense_priors, labelled_pairs
from ranker.training.retrieved_negatives import retrieved_unjudged, sample_unjudged

JUDGMENTS = Judgments(
    queries={"q1": "drill", "q2": "hammer"},
    qrels={"q1": {"a": 2.0, "b": 0.0}, "q2": {"c": 1.0}},
    labels={"q1": {"a": "3", "b": "1"}, "q2": {"c": "2"}},
)


class FixedRetrieval:
    """A pipeline whose retrieval returns fixed lists per query text."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.lists = lists
        self.asked: list[tuple[str, int]] = []

    def retrieve(self, query: str, *, k: int, **_: Any) -> list[Hit]:
        self.asked.append((query, k))
        return [Hit(pid, 1.0) for pid in self.lists[query][:k]]


def test_pools_are_the_retrieved_products_nobody_judged_for_the_query() -> None:
    pipeline = FixedRetrieval({"drill": ["x", "a", "y", "b", "z"], "hammer": ["a", "c", "w"]})
    pools = retrieved_unjudged(pipeline, JUDGMENTS, depth=4)  # type: ignore[arg-type]
    # "a" is judged for q1 only: for q2 it is an unjudged retrieved product.
    assert pools == {"q1": ["x", "y"], "q2": ["a", "w"]}
    assert pipeline.asked == [("drill", 4), ("hammer", 4)]


def test_the_draw_is_seeded_per_query_and_keeps_pool_order() -> None:
    pools = {"q1": [f"p{i}" for i in range(20)], "q2": ["only"]}
    first = sample_unjudged(pools, count=5, seed=7)
    assert len(first["q1"]) == 5
    assert first["q1"] == sorted(first["q1"], key=pools["q1"].index)
    assert first["q2"] == ["only"]
    # A fold that holds only q1 draws the same products for it.
    assert sample_unjudged({"q1": pools["q1"]}, count=5, seed=7)["q1"] == first["q1"]
    assert sample_unjudged(pools, count=5, seed=8)["q1"] != first["q1"]
    assert sample_unjudged(pools, count=0, seed=7) == {"q1": [], "q2": []}
    with pytest.raises(ValueError, match="negative"):
        sample_unjudged(pools, count=-1, seed=7)


def test_unjudged_negatives_become_pairs_with_the_weak_target() -> None:
    texts = {pid: f"text {pid}" for pid in ("a", "b", "c", "x", "y")}
    pairs = labelled_pairs(
        JUDGMENTS,
        ["q1"],
        texts,
        {},
        None,
        unjudged={"q1": ["x", "y", "gone", "a"]},  # "gone" has no text; "a" is judged
        unjudged_target=0.05,
    )
    targets = {pair.text: pair.target for pair in pairs}
    # Numeric labels 3 and 1 are divided by the largest (3); unjudged get the weak target.
    assert targets == {
        "text a": pytest.approx(1.0),
        "text b": pytest.approx(1 / 3),
        "text x": 0.05,
        "text y": 0.05,
    }


class CountingEmbedder:
    """Unit vectors from a fixed table."""

    table: ClassVar[dict[str, list[float]]] = {
        "drill": [1.0, 0.0],
        "hammer": [0.0, 1.0],
        "text a": [1.0, 0.0],
        "text b": [0.0, 1.0],
        "text c": [0.0, 1.0],
        "text x": [0.6, 0.8],
    }

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return np.array([self.table[text] for text in texts], dtype=np.float32)


def test_dense_priors_cover_the_unjudged_negatives() -> None:
    texts = {pid: f"text {pid}" for pid in ("a", "b", "c", "x")}
    priors = dense_priors(CountingEmbedder(), JUDGMENTS, texts, {"q1": ["x"]})
    assert priors[("q1", "x")] == pytest.approx(0.6)
    assert priors[("q1", "a")] == pytest.approx(1.0)
    assert ("q2", "x") not in priors
