"""The prior while it trains: the same numbers on the training path (tensors, with
gradients) and the validation path (arrays), and a state that round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.training.reranker_pairs import LabelledPair
from ranker.training.trainable_prior import TrainablePrior

CPU = torch.device("cpu")
QUERY = "paper bags without handles"
TEXTS = ["Kraft paper bags\nsturdy, without handles", "Paper bags with handles\nbrown"]


def _pairs(cosines: list[float], targets: list[float]) -> list[LabelledPair]:
    features = lexical_features(QUERY, TEXTS)
    return [
        LabelledPair("q", QUERY, text, target, cosine, tuple(float(x) for x in row))
        for text, target, cosine, row in zip(TEXTS, targets, cosines, features, strict=True)
    ]


def test_training_and_validation_paths_add_the_same_prior() -> None:
    prior = TrainablePrior(2.0, [0.5, -0.25, -1.0], 0.1, device=CPU)
    pairs = _pairs([0.8, 0.6], [1.0, 0.0])
    logits = torch.tensor([0.3, -0.2])

    trained = prior.add_to_logits(logits, pairs)
    validated = prior.add_to_scores(
        np.array([0.3, -0.2], dtype=np.float32),
        np.array([0.8, 0.6], dtype=np.float32),
        QUERY,
        TEXTS,
    )

    np.testing.assert_allclose(trained.detach().numpy(), validated, rtol=1e-6)
    trained.sum().backward()  # type: ignore[no-untyped-call]
    assert prior.weight.grad is not None
    assert prior.weight.grad.item() == pytest.approx(0.8 + 0.6)


def test_the_state_round_trips_and_names_the_lexical_weights() -> None:
    prior = TrainablePrior(1.5, [0.2] * len(LEXICAL_FEATURES), -0.3, device=CPU)
    state = prior.state()
    assert set(state["lexical_weights"]) == set(LEXICAL_FEATURES)

    other = TrainablePrior(0.0, [0.0] * len(LEXICAL_FEATURES), 0.0, device=CPU)
    other.load_state(state)
    loaded = other.state()
    assert (loaded["weight"], loaded["bias"]) == pytest.approx((1.5, -0.3))
    assert loaded["lexical_weights"] == pytest.approx(state["lexical_weights"])


def test_a_prior_without_lexical_features_starts_centred_on_the_mean_cosine() -> None:
    prior = TrainablePrior.starting(
        _pairs([0.8, 0.6], [1.0, 0.0]), lexical=False, cosine_weight=10.0, l2=0.0, device=CPU
    )
    assert not prior.lexical
    assert "lexical_weights" not in prior.state()
    assert prior.bias.item() == pytest.approx(-7.0)


def test_a_lexical_prior_starts_from_the_fit_and_a_snapshot_restores_it() -> None:
    prior = TrainablePrior.starting(
        _pairs([0.8, 0.2], [1.0, 0.0]), lexical=True, cosine_weight=10.0, l2=1e-3, device=CPU
    )
    assert prior.lexical
    assert prior.weight.item() > 0  # the positive's cosine is the higher one
    saved = prior.snapshot()
    with torch.no_grad():
        prior.weight.fill_(0.0)
    prior.restore(saved)
    assert prior.weight.item() == pytest.approx(saved[0].item())


def test_the_title_cosine_adds_the_same_on_both_paths_and_round_trips() -> None:
    prior = TrainablePrior(2.0, [0.5, -0.25, -1.0], 0.1, device=CPU, title_weights=[1.5])
    pairs = [
        LabelledPair(p.qid, p.query, p.text, p.target, p.prior, p.lexical, (title,))
        for p, title in zip(_pairs([0.8, 0.6], [1.0, 0.0]), [0.9, 0.2], strict=True)
    ]
    logits = torch.tensor([0.3, -0.2])

    trained = prior.add_to_logits(logits, pairs)
    cosines = np.array([0.8, 0.6], dtype=np.float32)
    scores = np.array([0.3, -0.2], dtype=np.float32)
    titles = np.array([0.9, 0.2], dtype=np.float32)
    validated = prior.add_to_scores(scores, cosines, QUERY, TEXTS, titles)

    np.testing.assert_allclose(trained.detach().numpy(), validated, rtol=1e-6)
    without_title = TrainablePrior(2.0, [0.5, -0.25, -1.0], 0.1, device=CPU)
    np.testing.assert_allclose(
        validated - without_title.add_to_scores(scores, cosines, QUERY, TEXTS),
        1.5 * titles,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="title_cosines"):
        prior.add_to_scores(scores, cosines, QUERY, TEXTS)
    assert len(prior.parameters()) == 4
    assert len(without_title.parameters()) == 3  # older checkpoints keep their shape

    state = prior.state()
    assert state["title_weight"] == pytest.approx(1.5)
    other = TrainablePrior(0.0, [0.0, 0.0, 0.0], 0.0, device=CPU, title_weights=[0.0])
    other.load_state(state)
    assert other.state() == state
    assert "title_weight" not in without_title.state()
