"""Lexical features of the reranker's prior, against cases worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ranker.embedder import Embedder
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features, words
from ranker.reranker import DensePrior, Reranker, RerankerError

BAGS = "Brown Paper Bags with Handles\nBrand: Bagmad\nColor: Red\n50 pack, 8x4.75x10 inch"


def test_words_lower_case_drop_plurals_and_keep_numbers_whole() -> None:
    assert words("Paper BAGS, 1/2 Pint, 2.5 oz glass") == [
        "paper",
        "bag",
        "1/2",
        "pint",
        "2.5",
        "oz",
        "glass",
    ]


def test_coverage_of_title_and_of_the_whole_text() -> None:
    [[title, text, negated]] = lexical_features("red paper bags", [BAGS])

    assert title == pytest.approx(2 / 3)  # paper, bag: the title's first line
    assert text == pytest.approx(1.0)  # red is in the colour line
    assert negated == 0.0


def test_a_negated_word_in_the_title_is_flagged_and_not_counted_as_coverage() -> None:
    features = lexical_features(
        "paper bags without handles", [BAGS, "Flat Paper Bags\nHandles sold separately"]
    )

    np.testing.assert_allclose(features[:, 0], [1.0, 1.0])  # paper, bag; not handles
    np.testing.assert_allclose(features[:, 2], [1.0, 0.0])  # only a title counts


def test_columns_follow_the_feature_names_and_empty_inputs_give_zeros() -> None:
    assert LEXICAL_FEATURES == ("title_coverage", "text_coverage", "negated_in_title")
    assert lexical_features("anything", []).shape == (0, 3)
    np.testing.assert_array_equal(lexical_features("!!", [BAGS]), [[0.0, 0.0, 0.0]])


def test_prior_adds_the_weighted_features_to_the_cosine_term(tiny_embedder_dir: Path) -> None:
    embedder = Embedder.load(tiny_embedder_dir, backend="torch")
    parameters = {
        "weight": 2.0,
        "bias": -0.5,
        "lexical_weights": {"title_coverage": 1.0, "text_coverage": 0.5, "negated_in_title": -3.0},
    }
    prior = DensePrior.from_parameters(parameters, embedder)
    query, documents = "paper bags without handles", [BAGS, "Plain Paper Bag\nKraft"]
    vectors = embedder.embed([query, *documents])

    expected = (
        2.0 * (vectors[1:] @ vectors[0])
        + lexical_features(query, documents) @ np.array([1.0, 0.5, -3.0])
        - 0.5
    )
    np.testing.assert_allclose(prior.scores(query, documents), expected, rtol=1e-5, atol=1e-5)


def test_a_model_weighing_other_features_is_refused(
    tiny_reranker_dir: Path, tiny_embedder_dir: Path, tmp_path: Path, with_prior: object
) -> None:
    model = with_prior(tiny_reranker_dir, tiny_embedder_dir, tmp_path)  # type: ignore[operator]
    manifest = json.loads((model / "shoprank.json").read_text())
    manifest["prior"]["lexical_weights"] = {"title_coverage": 1.0, "bm25": 2.0}
    (model / "shoprank.json").write_text(json.dumps(manifest))

    with pytest.raises(RerankerError, match="bm25"):
        Reranker.load(model, embedder=Embedder.load(tiny_embedder_dir, backend="torch"))
