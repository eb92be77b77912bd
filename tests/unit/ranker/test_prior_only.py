"""The prior-only (0-layer) reranker and its miss embedder, on the tiny models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ranker.backends.base import FloatArray, ModelTask
from ranker.catalog_vectors import CatalogVectors, text_digest
from ranker.compress.miss_embedder import (
    MissEmbedderConfig,
    _mean_cosine,
    distill_miss_embedder,
    shallow_bi_encoder,
)
from ranker.compress.parity import SERVED_SCORE_PARITY, Agreement, Thresholds
from ranker.compress.prior_student import write_prior_reranker
from ranker.compress.quantize import THRESHOLDS, Precision, parity_thresholds
from ranker.embedder import Embedder
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.model_files import read_manifest
from ranker.prior import MISS_EMBEDDER_DIR
from ranker.reranker import Reranker, RerankerError
from ranker.tokenization import PairTokenizer
from ranker.training.reranker_pairs import FittedPrior

PRIOR = FittedPrior(2.0, [1.0, 0.5, -3.0], -0.5, [])
QUERY = "gym bag without handles"
DOCUMENTS = ["Adidas Gym Bag\nblack, 30 litres", "Paper bag with handles\nkraft", "Water bottle"]
MISS_LENGTH = 8


def _prior_reranker(
    tmp_path: Path, embedder: Embedder, teacher_dir: Path, miss_dir: Path | None
) -> Path:
    return write_prior_reranker(
        tmp_path / "prior-only",
        PRIOR,
        embedder=embedder,
        teacher_dir=teacher_dir,
        miss_dir=miss_dir,
        miss_config=MissEmbedderConfig(max_length=MISS_LENGTH),
        extra={"teacher": "tiny"},
    )


@pytest.fixture
def embedder(tiny_embedder_dir: Path) -> Embedder:
    return Embedder.load(tiny_embedder_dir, backend="torch")


@pytest.fixture
def prior_only_dir(
    tmp_path: Path, embedder: Embedder, tiny_reranker_dir: Path, tiny_embedder_dir: Path
) -> Path:
    """A prior-only reranker whose miss embedder is the tiny bi-encoder cut to 8 pieces."""
    return _prior_reranker(tmp_path, embedder, tiny_reranker_dir, tiny_embedder_dir)


def _expected(
    query_vector: FloatArray, vectors: FloatArray, documents: Sequence[str]
) -> FloatArray:
    weight, lexical, bias, _ = PRIOR
    expected: FloatArray = (
        weight * (vectors @ query_vector)
        + bias
        + lexical_features(QUERY, documents) @ np.array(lexical)
    )
    return expected


def test_a_prior_only_reranker_runs_no_transformer_and_scores_its_prior(
    prior_only_dir: Path, embedder: Embedder, tiny_embedder_dir: Path
) -> None:
    reranker = Reranker.load(prior_only_dir, embedder=embedder)

    assert not reranker.has_cross_encoder
    assert reranker.backend.name == "none"
    assert reranker.prepare(QUERY, DOCUMENTS).tokens.rows == 0
    miss = Embedder.load(tiny_embedder_dir, backend="torch", max_length=MISS_LENGTH)
    expected = _expected(embedder.embed([QUERY])[0], miss.embed(DOCUMENTS), DOCUMENTS)
    np.testing.assert_allclose(reranker.score(QUERY, DOCUMENTS), expected, rtol=1e-5, atol=1e-5)
    full_length = _expected(embedder.embed([QUERY])[0], embedder.embed(DOCUMENTS), DOCUMENTS)
    assert not np.allclose(expected, full_length, atol=1e-4), "the miss embedder cuts texts"


class _Store:
    """Stored vectors by product id, as an index holds them."""

    def __init__(self, vectors: dict[str, FloatArray]) -> None:
        self._vectors = vectors

    def vectors(self, ids: Sequence[str]) -> list[FloatArray]:
        return [self._vectors[i] for i in ids]


def test_texts_the_index_holds_keep_their_stored_vectors(
    prior_only_dir: Path, embedder: Embedder, tiny_embedder_dir: Path
) -> None:
    reranker = Reranker.load(prior_only_dir, embedder=embedder)
    stored = embedder.embed(DOCUMENTS[:1])[0]
    catalog = CatalogVectors(
        np.array([text_digest(DOCUMENTS[0])], dtype=np.uint64),
        ["p0"],
        _Store({"p0": stored}),  # type: ignore[arg-type]
    )
    assert reranker.read_prior_vectors_from(catalog)

    miss = Embedder.load(tiny_embedder_dir, backend="torch", max_length=MISS_LENGTH)
    vectors = np.vstack([stored, miss.embed(DOCUMENTS[1:])])
    expected = _expected(embedder.embed([QUERY])[0], vectors, DOCUMENTS)
    np.testing.assert_allclose(reranker.score(QUERY, DOCUMENTS), expected, rtol=1e-5, atol=1e-5)


def test_without_a_miss_embedder_the_bi_encoder_embeds_what_the_index_lacks(
    tmp_path: Path, embedder: Embedder, tiny_reranker_dir: Path
) -> None:
    path = _prior_reranker(tmp_path, embedder, tiny_reranker_dir, None)
    reranker = Reranker.load(path, embedder=embedder)

    assert not (path / MISS_EMBEDDER_DIR).exists()
    expected = _expected(embedder.embed([QUERY])[0], embedder.embed(DOCUMENTS), DOCUMENTS)
    np.testing.assert_allclose(reranker.score(QUERY, DOCUMENTS), expected, rtol=1e-5, atol=1e-5)


def test_its_weights_hash_covers_the_prior_and_the_miss_embedder(
    prior_only_dir: Path, embedder: Embedder, tmp_path: Path
) -> None:
    manifest = read_manifest(prior_only_dir) or {}
    reranker = Reranker.load(prior_only_dir, embedder=embedder)
    assert reranker.weights_sha256 == manifest["weights_sha256"]
    assert manifest["cross_encoder"] is False

    changed = tmp_path / "changed"
    shutil.copytree(prior_only_dir, changed)
    manifest["prior"]["weight"] = 3.0
    (changed / "shoprank.json").write_text(json.dumps(manifest))
    assert Reranker.load(changed, embedder=embedder).weights_sha256 != reranker.weights_sha256


def test_a_reranker_with_neither_cross_encoder_nor_prior_is_refused(
    prior_only_dir: Path, embedder: Embedder
) -> None:
    manifest = read_manifest(prior_only_dir) or {}
    del manifest["prior"]
    (prior_only_dir / "shoprank.json").write_text(json.dumps(manifest))

    with pytest.raises(RerankerError, match="neither a cross-encoder nor a prior"):
        Reranker.load(prior_only_dir, embedder=embedder)


def test_a_cross_encoders_prior_alone_scores_what_its_prior_adds(
    tiny_reranker_dir: Path, embedder: Embedder
) -> None:
    from ranker.prior import DensePrior

    weight, lexical, bias, _ = PRIOR
    with_cross_encoder = Reranker.load(tiny_reranker_dir)
    with_cross_encoder.prior = DensePrior.from_parameters(
        {
            "weight": weight,
            "bias": bias,
            "lexical_weights": dict(zip(LEXICAL_FEATURES, lexical, strict=True)),
        },
        embedder,
    )
    cross_encoder, prior = with_cross_encoder.score_parts(QUERY, DOCUMENTS)

    alone = with_cross_encoder.prior_alone()

    assert with_cross_encoder.has_cross_encoder
    assert not alone.has_cross_encoder
    assert np.abs(cross_encoder).max() > 0
    np.testing.assert_allclose(alone.score(QUERY, DOCUMENTS), prior, rtol=1e-5, atol=1e-5)
    with pytest.raises(RerankerError, match="no prior"):
        Reranker.load(tiny_reranker_dir).prior_alone()


def test_a_missing_miss_embedder_is_a_clear_error(prior_only_dir: Path, embedder: Embedder) -> None:
    shutil.rmtree(prior_only_dir / MISS_EMBEDDER_DIR)

    with pytest.raises(RerankerError, match=r"miss embedder .* is missing"):
        Reranker.load(prior_only_dir, embedder=embedder)


def test_int8_rerankers_with_a_prior_are_judged_on_served_rankings() -> None:
    assert parity_thresholds(Precision.QINT8, ModelTask.SCORE, has_prior=True) == (
        SERVED_SCORE_PARITY
    )
    assert SERVED_SCORE_PARITY.min_pearson is None
    assert (
        parity_thresholds(Precision.QINT8, ModelTask.SCORE, has_prior=False)
        == (THRESHOLDS[(Precision.QINT8, ModelTask.SCORE)])
    )
    # Raw logits that barely follow fp32 (Pearson 0.44) pass when the served rankings hold.
    agreement = Agreement(
        groups=20,
        max_abs_diff=0.001,
        pearson=0.44,
        spearman=0.99,
        kendall=0.95,
        top10_overlap=1.0,
        ndcg10_reference=0.7,
        ndcg10_candidate=0.699,
    )
    assert SERVED_SCORE_PARITY.failures(agreement) == []
    reshuffled = dataclasses.replace(agreement, spearman=0.5)
    assert Thresholds(min_spearman=0.95).failures(reshuffled) == [
        "mean spearman 0.5, needs >= 0.95"
    ]


@pytest.mark.parametrize("layers", [0, 1])
def test_the_miss_embedder_learns_the_bi_encoders_vectors(
    tiny_embedder_dir: Path, embedder: Embedder, tmp_path: Path, layers: int
) -> None:
    pytest.importorskip("onnxruntime")
    from indexer.catalog import load_products, sample_catalog_path

    texts = [f"{p.title}\n{p.brand}" for p in load_products(sample_catalog_path())][:160]
    targets = embedder.embed(texts)
    config = MissEmbedderConfig(
        layers=layers, max_length=16, epochs=6, batch_size=32, learning_rate=1e-3, seed=0
    )
    tokenizer = PairTokenizer.from_model_dir(tiny_embedder_dir, max_length=16)
    import torch

    untrained = _mean_cosine(
        shallow_bi_encoder(tiny_embedder_dir, layers).eval(),
        tokenizer,
        texts,
        torch.from_numpy(targets),
    )

    result = distill_miss_embedder(
        tiny_embedder_dir, texts, targets, config, tmp_path / "miss", groups=None
    )

    assert result.validation_cosine > untrained + 0.01
    assert set(result.variants) == {"torch", "onnx-fp32", "onnx-int8"}, result.refused
    served = Embedder.load(result.variants["onnx-int8"], backend="onnx", max_length=16)
    cosines = np.sum(served.embed(texts) * targets, axis=1)
    assert float(np.mean(cosines)) > untrained
    assert read_manifest(result.variants["torch"])["hyperparameters"]["layers"] == layers  # type: ignore[index]


def test_a_prior_with_a_title_weight_embeds_each_title_once(embedder: Embedder) -> None:
    from ranker.prior import DensePrior

    embedded: list[str] = []

    class Counting:
        """The tiny bi-encoder, recording what it is asked to embed."""

        identity = embedder.identity

        def embed(self, texts: Sequence[str], **_: object) -> FloatArray:
            embedded.extend(texts)
            return embedder.embed(texts)

    parameters = {"weight": 2.0, "bias": -0.5, "title_weight": 1.5}
    prior = DensePrior.from_parameters(parameters, Counting(), cache_size=100)  # type: ignore[arg-type]
    without = DensePrior.from_parameters({"weight": 2.0, "bias": -0.5}, embedder)

    scores = prior.scores(QUERY, DOCUMENTS)

    query_vector = embedder.embed([QUERY])[0]
    titles = embedder.embed(["Adidas Gym Bag", "Paper bag with handles", "Water bottle"])
    np.testing.assert_allclose(
        scores - without.scores(QUERY, DOCUMENTS), 1.5 * (titles @ query_vector), atol=1e-5
    )
    # "Water bottle" is one line, its own title: its text's vector serves for both.
    assert sorted(set(embedded) - {QUERY, *DOCUMENTS}) == [
        "Adidas Gym Bag",
        "Paper bag with handles",
    ]
    embedded.clear()
    prior.scores(QUERY, DOCUMENTS)
    assert embedded == [QUERY]  # titles and texts come from the caches the second time
