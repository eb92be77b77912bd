"""Reciprocal rank fusion: scores by hand, tie-breaks, weights, limit, errors."""

from __future__ import annotations

import pytest

from indexer.stores.base import Hit
from ranker.fusion import reciprocal_rank_fusion


def ranked(*product_ids: str) -> list[Hit]:
    """A ranked list; the scores are deliberately meaningless (RRF uses ranks only)."""
    return [Hit(product_id, score=1000.0 * (i % 2)) for i, product_id in enumerate(product_ids)]


def ids(hits: list[Hit]) -> list[str]:
    return [hit.product_id for hit in hits]


def scores(hits: list[Hit]) -> list[float]:
    return [hit.score for hit in hits]


DENSE = ranked("a", "b", "c")
LEXICAL = ranked("c", "d", "a")


def test_scores_by_hand_with_k_60() -> None:
    fused = reciprocal_rank_fusion([DENSE, LEXICAL])

    expected = {
        "a": 1 / 61 + 1 / 63,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 62,
    }
    assert ids(fused) == ["a", "c", "b", "d"]
    assert {hit.product_id: hit.score for hit in fused} == pytest.approx(expected, abs=1e-15)


def test_weights_scale_each_list() -> None:
    fused = reciprocal_rank_fusion([DENSE, LEXICAL], weights=[2.0, 0.5])

    # a = 0.0407, c = 0.0399, b = 0.0323, d = 0.0081
    expected = [
        ("a", 2 / 61 + 0.5 / 63),
        ("c", 2 / 63 + 0.5 / 61),
        ("b", 2 / 62),
        ("d", 0.5 / 62),
    ]
    assert ids(fused) == [pid for pid, _ in expected]
    assert scores(fused) == pytest.approx([score for _, score in expected], abs=1e-15)


def test_another_k() -> None:
    fused = reciprocal_rank_fusion([ranked("x", "y")], k=1.0)

    assert ids(fused) == ["x", "y"]
    assert scores(fused) == pytest.approx([1 / 2, 1 / 3])


def test_ties_are_broken_by_product_id() -> None:
    # "b" and "a" both score 1/61 + 1/62; "z" and "c" both 1/63.
    fused = reciprocal_rank_fusion([ranked("b", "a", "z"), ranked("a", "b", "c")])

    assert ids(fused) == ["a", "b", "c", "z"]
    assert fused[0].score == fused[1].score
    assert fused[2].score == fused[3].score


def test_order_of_the_lists_does_not_matter() -> None:
    forward = reciprocal_rank_fusion([DENSE, LEXICAL], weights=[1.0, 3.0])
    backward = reciprocal_rank_fusion([LEXICAL, DENSE], weights=[3.0, 1.0])

    assert ids(forward) == ids(backward)
    assert scores(forward) == pytest.approx(scores(backward))


def test_weight_zero_removes_a_lists_contribution() -> None:
    fused = reciprocal_rank_fusion([DENSE, LEXICAL], weights=[1.0, 0.0])

    # The order and scores of the dense list alone; "d" (lexical only) is still listed,
    # with nothing, below every scored product.
    assert ids(fused) == ["a", "b", "c", "d"]
    assert scores(fused) == pytest.approx([1 / 61, 1 / 62, 1 / 63, 0.0])
    alone = reciprocal_rank_fusion([DENSE])
    assert fused[:3] == alone


def test_one_list_keeps_its_order() -> None:
    order = ("q", "p", "z", "a", "m")

    assert ids(reciprocal_rank_fusion([ranked(*order)])) == list(order)


def test_limit() -> None:
    fused = reciprocal_rank_fusion([DENSE, LEXICAL], limit=2)

    assert ids(fused) == ["a", "c"]
    assert reciprocal_rank_fusion([DENSE, LEXICAL], limit=0) == []
    assert len(reciprocal_rank_fusion([DENSE, LEXICAL], limit=100)) == 4


def test_empty_inputs() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    assert ids(reciprocal_rank_fusion([[], DENSE])) == ["a", "b", "c"]


def test_results_are_hits() -> None:
    fused = reciprocal_rank_fusion([DENSE])

    assert all(isinstance(hit, Hit) and isinstance(hit.score, float) for hit in fused)


@pytest.mark.parametrize("k", [0.0, -1.0, -60.0, float("nan")])
def test_k_must_be_positive(k: float) -> None:
    with pytest.raises(ValueError, match="RRF constant must be positive"):
        reciprocal_rank_fusion([DENSE], k=k)


@pytest.mark.parametrize("bad", [-0.5, float("nan")])
def test_weights_must_not_be_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        reciprocal_rank_fusion([DENSE, LEXICAL], weights=[1.0, bad])


@pytest.mark.parametrize("weights", [[], [1.0], [1.0, 1.0, 1.0]])
def test_one_weight_per_list(weights: list[float]) -> None:
    with pytest.raises(ValueError, match=rf"{len(weights)} weights for 2 ranked lists"):
        reciprocal_rank_fusion([DENSE, LEXICAL], weights=weights)


def test_limit_must_not_be_negative() -> None:
    # A negative slice would silently drop hits from the end.
    with pytest.raises(ValueError, match="limit must not be negative"):
        reciprocal_rank_fusion([DENSE], limit=-1)
