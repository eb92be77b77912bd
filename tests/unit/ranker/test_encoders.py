"""Embedder and Reranker on tiny random BERTs: shapes, dtypes, padding, batching, errors.

Results must not depend on which other texts share a micro-batch, on their order or on the
batch size: with length-sorted batches and dynamic padding, that proves the attention mask
and the mean pooling ignore padding.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ranker.backends import BackendError
from ranker.embedder import Embedder
from ranker.model_files import ModelNotFoundError, base_model_dir
from ranker.reranker import Reranker

TINY_DIM = 32  # hidden_size of conftest.TINY_BERT
ATOL = 1e-5

TEXTS = [
    "red mug",
    "Stainless steel chef knife, 8 inch, full tang, forged from one piece of steel",
    "tent",
    "Silicone baking mat, non-stick, food grade, fits half sheet pans " * 3,
    "USB-C charging cable 2 m",
]
QUERY = "kitchen knife"


@pytest.fixture(scope="module")
def embedder(tiny_embedder_dir: Path) -> Embedder:
    return Embedder.load(tiny_embedder_dir, backend="torch")


@pytest.fixture(scope="module")
def reranker(tiny_reranker_dir: Path) -> Reranker:
    return Reranker.load(tiny_reranker_dir)


def with_batch_size(embedder: Embedder, batch_size: int) -> Embedder:
    return Embedder(
        tokenizer=embedder.tokenizer,
        backend=embedder.backend,
        identity=embedder.identity,
        batch_size=batch_size,
    )


def reranker_with_batch_size(reranker: Reranker, batch_size: int) -> Reranker:
    return Reranker(
        tokenizer=reranker.tokenizer,
        backend=reranker.backend,
        model_id=reranker.model_id,
        weights_sha256=reranker.weights_sha256,
        batch_size=batch_size,
        max_query_tokens=reranker.max_query_tokens,
    )


# ------------------------------------------------------------------ Embedder


def test_embedder_returns_float32_unit_vectors(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)

    assert vectors.shape == (len(TEXTS), TINY_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=ATOL)
    assert embedder.dimension == TINY_DIM


def test_embedder_identity(embedder: Embedder, tiny_embedder_dir: Path) -> None:
    identity = embedder.identity

    assert identity.dimension == TINY_DIM
    assert identity.model_id == tiny_embedder_dir.name
    assert len(identity.weights_sha256) == 64
    int(identity.weights_sha256, 16)


def test_embedder_distinct_texts_get_distinct_vectors(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)

    similarity = vectors @ vectors.T
    assert np.all(similarity[~np.eye(len(TEXTS), dtype=bool)] < 1 - 1e-4)


def test_embedding_is_independent_of_the_rest_of_the_batch(embedder: Embedder) -> None:
    together = embedder.embed(TEXTS)
    alone = np.stack([embedder.embed([text])[0] for text in TEXTS])
    backwards = embedder.embed(TEXTS[::-1])[::-1]

    np.testing.assert_allclose(together, alone, atol=ATOL)
    np.testing.assert_allclose(together, backwards, atol=ATOL)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_embedding_is_independent_of_the_batch_size(embedder: Embedder, batch_size: int) -> None:
    expected = embedder.embed(TEXTS)

    vectors = with_batch_size(embedder, batch_size).embed(TEXTS)

    np.testing.assert_allclose(vectors, expected, atol=ATOL)


def test_repeated_texts_get_the_same_vector(embedder: Embedder) -> None:
    vectors = embedder.embed([TEXTS[0], TEXTS[3], TEXTS[0]])

    np.testing.assert_allclose(vectors[0], vectors[2], atol=ATOL)


def test_embed_without_normalizing(embedder: Embedder) -> None:
    raw = embedder.embed(TEXTS, normalize=False)

    assert raw.dtype == np.float32
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, embedder.embed(TEXTS), atol=ATOL)


def test_embed_query_is_one_row(embedder: Embedder) -> None:
    vector = embedder.embed_query(QUERY)

    assert vector.shape == (TINY_DIM,)
    assert vector.dtype == np.float32
    np.testing.assert_allclose(vector, embedder.embed([QUERY])[0], atol=ATOL)


def test_embed_nothing(embedder: Embedder) -> None:
    vectors = embedder.embed([])

    assert vectors.shape == (0, TINY_DIM)
    assert vectors.dtype == np.float32


def test_embedder_truncates_long_texts(embedder: Embedder) -> None:
    long_text = " ".join(f"word{i}" for i in range(2_000))

    vectors = embedder.embed([long_text, long_text + " and more"])

    # Both are cut to max_length tokens, and the tail is what differs.
    np.testing.assert_allclose(vectors[0], vectors[1], atol=ATOL)


def test_embedder_refuses_a_scoring_backend(reranker: Reranker, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="needs an embedding backend"):
        Embedder(tokenizer=embedder.tokenizer, backend=reranker.backend, identity=embedder.identity)


# ------------------------------------------------------------------ Reranker


def test_reranker_scores_are_float32_one_per_document(reranker: Reranker) -> None:
    scores = reranker.score(QUERY, TEXTS)

    assert scores.shape == (len(TEXTS),)
    assert scores.dtype == np.float32
    assert np.all(np.isfinite(scores))
    assert len(set(scores.tolist())) == len(TEXTS)


def test_reranker_scores_do_not_depend_on_document_order(reranker: Reranker) -> None:
    forward = reranker.score(QUERY, TEXTS)
    backward = reranker.score(QUERY, TEXTS[::-1])[::-1]
    alone = np.array([reranker.score(QUERY, [text])[0] for text in TEXTS])

    np.testing.assert_allclose(forward, backward, atol=ATOL)
    np.testing.assert_allclose(forward, alone, atol=ATOL)


@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_reranker_scores_do_not_depend_on_batch_size(reranker: Reranker, batch_size: int) -> None:
    expected = reranker.score(QUERY, TEXTS)

    scores = reranker_with_batch_size(reranker, batch_size).score(QUERY, TEXTS)

    np.testing.assert_allclose(scores, expected, atol=ATOL)


def test_reranker_scores_depend_on_the_query(reranker: Reranker) -> None:
    assert not np.allclose(reranker.score(QUERY, TEXTS), reranker.score("tent", TEXTS))


def test_reranker_with_no_documents(reranker: Reranker) -> None:
    scores = reranker.score(QUERY, [])

    assert scores.shape == (0,)
    assert scores.dtype == np.float32


def test_reranker_cuts_a_long_query_and_keeps_room_for_the_document(reranker: Reranker) -> None:
    long_query = " ".join(f"term{i}" for i in range(500))
    cut_query = reranker.tokenizer.truncate_text(long_query, reranker.max_query_tokens)

    scores = reranker.score(long_query, TEXTS)

    np.testing.assert_allclose(scores, reranker.score(cut_query, TEXTS), atol=ATOL)


def test_reranker_refuses_a_query_budget_that_leaves_no_room(reranker: Reranker) -> None:
    with pytest.raises(ValueError, match="leaves no room for the document"):
        Reranker(
            tokenizer=reranker.tokenizer,
            backend=reranker.backend,
            model_id="m",
            weights_sha256="0" * 64,
            max_query_tokens=reranker.tokenizer.max_length - 3,
        )


def test_reranker_refuses_an_embedding_backend(reranker: Reranker, embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="needs a scoring backend"):
        Reranker(
            tokenizer=reranker.tokenizer,
            backend=embedder.backend,
            model_id="m",
            weights_sha256="0" * 64,
        )


# ------------------------------------------------------------------ loading errors


def test_unknown_backend(tiny_embedder_dir: Path, tiny_reranker_dir: Path) -> None:
    with pytest.raises(BackendError, match="unknown backend 'openvino'"):
        Embedder.load(tiny_embedder_dir, backend="openvino")
    with pytest.raises(BackendError, match="unknown backend 'openvino'"):
        Reranker.load(tiny_reranker_dir, backend="openvino")


def test_a_directory_without_config_json(tmp_path: Path, tiny_embedder_dir: Path) -> None:
    copy = tmp_path / "no-config"
    shutil.copytree(tiny_embedder_dir, copy)
    (copy / "config.json").unlink()

    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        Embedder.load(copy, backend="torch")
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        Reranker.load(copy)
    with pytest.raises(ModelNotFoundError):
        Embedder.load(tmp_path / "absent")


def test_model_not_found_is_a_file_not_found_error() -> None:
    assert issubclass(ModelNotFoundError, FileNotFoundError)


# ------------------------------------------------------------------ parity with the reference


PRODUCT_TEXTS = [
    "Kindle Paperwhite – Now Waterproof with 2x the Storage",
    "Signature Design by Ashley Chime 12 inch Medium Firm Memory Foam Mattress, Queen",
    "Brand: Acme\nColor: Silver\nStainless steel chef knife, 8 inch",
    "Silicone baking mat, non-stick, food grade. Fits half sheet pans.",
    "USB-C to USB-C cable, 2 m, 100 W fast charging, braided nylon",
    "Crème brûlée torch kit with butane refill",
    "organic green tea 100 bags",
    "tent",
]


@pytest.mark.slow
def test_embedder_matches_sentence_transformers_on_minilm() -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(base_model_dir()), device="cpu")
    expected = reference.encode(PRODUCT_TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    ours = Embedder.load("minilm", backend="torch", batch_size=3)

    vectors = ours.embed(PRODUCT_TEXTS)

    assert vectors.shape == expected.shape == (len(PRODUCT_TEXTS), 384)
    cosine = np.sum(vectors * expected, axis=1)
    # Tolerance: cosine >= 0.9999 per text. On CPU in float32 the two agree to ~1e-7 (measured:
    # 1 - cosine <= 1.2e-7; only summation order differs). The slack is for torch on CUDA in
    # float16, which "torch" picks when a GPU is present (not measured here). The texts are
    # short enough that neither side truncates (ours at 128 tokens, theirs at 256).
    assert cosine.min() >= 0.9999, cosine
