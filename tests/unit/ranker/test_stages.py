"""The encoders' stages on tiny random BERTs: ``score`` and ``embed`` equal the plain
computation, and requests batched together get what they get alone (the prior included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ranker.embedder import Embedder
from ranker.reranker import Reranker
from ranker.stages import PreparedTokens
from ranker.tokenization import pad_batch

ATOL = 1e-5
QUERIES = ["kitchen knife", "usb c cable for a laptop"]
DOCUMENTS = [
    ["Stainless steel chef knife, 8 inch, full tang", "red mug", "tent for two"],
    ["USB-C charging cable 2 m", "Silicone baking mat, non-stick " * 4],
]


@pytest.fixture(scope="module")
def embedder(tiny_embedder_dir: Path) -> Embedder:
    return Embedder.load(tiny_embedder_dir, backend="torch")


@pytest.fixture
def prior_reranker(
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    tmp_path: Path,
    with_prior: Callable[..., Path],
    embedder: Embedder,
) -> Reranker:
    model = with_prior(tiny_reranker_dir, tiny_embedder_dir, tmp_path)
    return Reranker.load(model, embedder=embedder, backend="torch", batch_size=2)


def test_prepared_tokens_count_rows_tokens_and_padding(embedder: Embedder) -> None:
    prepared = embedder.prepare(["red mug", "a much longer product title here"])

    lengths = [len(row) for row in prepared.ids]
    assert prepared.rows == 2
    assert prepared.longest == max(lengths)
    assert prepared.tokens == sum(lengths)
    assert prepared.padded_shape == (2, max(lengths))
    assert prepared.padded_tokens == 2 * max(lengths)


def test_embed_equals_the_plain_forward_pass(embedder: Embedder) -> None:
    texts = DOCUMENTS[0] + DOCUMENTS[1]
    raw = embedder.backend.infer(
        pad_batch(embedder.tokenizer.encode_texts(texts), pad_id=embedder.tokenizer.pad_id)
    )
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)

    np.testing.assert_allclose(embedder.embed(texts), expected, atol=ATOL)
    np.testing.assert_allclose(embedder.embed(texts, normalize=False), raw, atol=ATOL)


def test_requests_embedded_together_get_what_they_get_alone(embedder: Embedder) -> None:
    prepared = [embedder.prepare(texts) for texts in DOCUMENTS]

    together = embedder.infer(prepared)

    assert [len(vectors) for vectors in together] == [3, 2]
    for texts, vectors in zip(DOCUMENTS, together, strict=True):
        np.testing.assert_allclose(embedder.finish(vectors), embedder.embed(texts), atol=ATOL)


def test_score_equals_the_plain_forward_pass_plus_the_prior(
    prior_reranker: Reranker, embedder: Embedder
) -> None:
    query, documents = QUERIES[0], DOCUMENTS[0]
    tokenizer = prior_reranker.tokenizer
    logits = prior_reranker.backend.infer(
        pad_batch(tokenizer.encode_pairs(query, documents), pad_id=tokenizer.pad_id)
    )
    prior = prior_reranker.prior
    assert prior is not None
    cosine = embedder.embed(documents) @ embedder.embed([query])[0]

    scores = prior_reranker.score(query, documents)

    np.testing.assert_allclose(scores, logits + prior.weight * cosine + prior.bias, atol=ATOL)


def test_requests_scored_together_get_what_they_get_alone(prior_reranker: Reranker) -> None:
    prepared = [
        prior_reranker.prepare(query, documents)
        for query, documents in zip(QUERIES, DOCUMENTS, strict=True)
    ]

    together = prior_reranker.infer([p.tokens for p in prepared])

    for query, documents, one, logits in zip(QUERIES, DOCUMENTS, prepared, together, strict=True):
        cross_encoder, prior = prior_reranker.finish(one, logits)
        alone = prior_reranker.score_parts(query, documents)
        np.testing.assert_allclose(cross_encoder, alone[0], atol=ATOL)
        np.testing.assert_allclose(prior, alone[1], atol=ATOL)


def test_a_given_query_vector_is_the_one_the_prior_would_embed(
    prior_reranker: Reranker, embedder: Embedder
) -> None:
    query, documents = QUERIES[1], DOCUMENTS[1]

    given = prior_reranker.score(query, documents, query_vector=embedder.embed_query(query))

    np.testing.assert_allclose(given, prior_reranker.score(query, documents), atol=ATOL)


def test_a_cut_query_ignores_the_given_vector(prior_reranker: Reranker) -> None:
    long_query = " ".join(["knife"] * (prior_reranker.max_query_tokens + 5))
    prepared = prior_reranker.prepare(long_query, DOCUMENTS[0])
    (logits,) = prior_reranker.infer([prepared.tokens])
    wrong = np.zeros(32, dtype=np.float32)  # would make the cosine 0

    _, prior = prior_reranker.finish(prepared, logits, query_vector=wrong)

    assert prepared.query_cut
    np.testing.assert_allclose(prior, prior_reranker.score_parts(long_query, DOCUMENTS[0])[1])


def test_no_documents_no_rows(prior_reranker: Reranker, embedder: Embedder) -> None:
    prepared = prior_reranker.prepare("q", [])

    assert prepared.tokens == PreparedTokens(ids=(), type_ids=(), pad_id=prepared.tokens.pad_id)
    assert prior_reranker.score("q", []).shape == (0,)
    assert embedder.embed([]).shape == (0, embedder.dimension)
