"""The reranker's prior fitted alone, before the cross-encoder trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranker.training.reranker_pairs import LabelledPair, fit_prior


def _pairs(count: int, seed: int = 0) -> list[LabelledPair]:
    """Targets drawn from a known logistic model: 4 cos + 2 title - 3 negated - 1."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        cosine, title, text, negated = rng.random(), rng.random(), rng.random(), rng.random() < 0.2
        logit = 4 * cosine + 2 * title - 3 * negated - 1
        target = float(rng.random() < 1 / (1 + np.exp(-logit)))
        pairs.append(
            LabelledPair("q", "query", f"text {i}", target, cosine, (title, text, negated))
        )
    return pairs


def test_fit_recovers_the_weights_that_drew_the_targets() -> None:
    cosine, lexical, bias, title = fit_prior(_pairs(4000), l2=0.0)

    assert cosine == pytest.approx(4, abs=0.6)
    assert lexical[0] == pytest.approx(2, abs=0.6)
    assert lexical[1] == pytest.approx(0, abs=0.6)
    assert lexical[2] == pytest.approx(-3, abs=0.6)
    assert bias == pytest.approx(-1, abs=0.6)
    assert title == []  # the pairs carry no title cosine


def test_fit_weighs_the_title_cosine_when_the_pairs_carry_it() -> None:
    rng = np.random.default_rng(2)
    pairs = []
    for i in range(4000):
        cosine, title_cosine = rng.random(), rng.random()
        logit = 2 * cosine + 3 * title_cosine - 2
        target = float(rng.random() < 1 / (1 + np.exp(-logit)))
        pairs.append(
            LabelledPair("q", "query", f"t {i}", target, cosine, (0.5, 0.5, 0.0), (title_cosine,))
        )

    fitted = fit_prior(pairs, l2=0.0)

    assert fitted.weight == pytest.approx(2, abs=0.6)
    assert fitted.title_weights == [pytest.approx(3, abs=0.6)]
    assert len(fitted.lexical_weights) == 3


def test_fit_lowers_the_loss_below_a_zero_model_and_l2_shrinks_it() -> None:
    pairs = _pairs(500, seed=1)
    x = torch.tensor([[p.prior, *p.lexical] for p in pairs], dtype=torch.float64)
    y = torch.tensor([p.target for p in pairs], dtype=torch.float64)

    def loss(cosine: float, lexical: list[float], bias: float, title: list[float]) -> float:
        logits = x @ torch.tensor([cosine, *lexical], dtype=torch.float64) + bias
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y))

    free, shrunk = fit_prior(pairs, l2=0.0), fit_prior(pairs, l2=1.0)

    assert loss(*free) < loss(0.0, [0.0, 0.0, 0.0], 0.0, []) - 0.05
    assert np.linalg.norm([shrunk[0], *shrunk[1]]) < np.linalg.norm([free[0], *free[1]])
