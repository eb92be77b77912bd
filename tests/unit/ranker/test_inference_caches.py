"""Inference engineering: the query tokenized once, product token ids and prior vectors cached,
length buckets under a token budget; results identical to the uncached path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from indexer.caching import TextCache
from ranker.embedder import Embedder
from ranker.model_files import base_model_dir
from ranker.reranker import Reranker, RerankerError
from ranker.tokenization import PairTokenizer, length_sorted_batches

WithPrior = Callable[..., Path]
"""``with_prior(reranker_dir, embedder_dir, tmp_path, *, sha256=None)`` (see conftest)."""

QUERY = "stainless steel chef knife"
DOCUMENTS = [
    "Victorinox Fibrox Pro Chef's Knife, 8-Inch " * 12,
    "red mug",
    "",
    "Crème brûlée torch kit with butane refill",
]


@pytest.fixture(scope="module")
def tokenizer() -> PairTokenizer:
    return PairTokenizer.from_model_dir(base_model_dir(), max_length=48, cache_size=3)


def test_pairs_from_cached_pieces_equal_the_tokenizers_own_pairs(
    tokenizer: PairTokenizer,
) -> None:
    reference = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(48, strategy="only_second")

    expected = reference.encode_batch([(QUERY, d) for d in DOCUMENTS])
    ours = tokenizer.encode_pairs(QUERY, DOCUMENTS)
    again = tokenizer.encode_pairs(QUERY, DOCUMENTS)  # now from the cache

    for theirs, first, second in zip(expected, ours, again, strict=True):
        assert first.ids == theirs.ids == second.ids
        assert first.type_ids == theirs.type_ids
        assert first.attention_mask == theirs.attention_mask


def test_encode_query_cuts_once_and_returns_the_cut_text(tokenizer: PairTokenizer) -> None:
    text, pieces = tokenizer.encode_query("red ceramic coffee mug", 2)

    assert text == tokenizer.truncate_text("red ceramic coffee mug", 2)
    assert len(pieces.ids) == 2


def test_text_cache_is_bounded_and_counts_hits() -> None:
    calls: list[list[str]] = []

    def compute(texts: list[str]) -> list[int]:
        calls.append(texts)
        return [len(t) for t in texts]

    cache: TextCache[int] = TextCache(2)

    assert cache.get_many(["a", "bb", "a"], compute) == [1, 2, 1]
    assert cache.get_many(["bb"], compute) == [2]
    assert cache.get_many(["ccc"], compute) == [3]  # evicts "a", the least recent

    assert calls == [["a", "bb"], ["ccc"]]
    assert len(cache) == 2
    assert cache.get_many(["a"], compute) == [1]
    assert calls[-1] == ["a"]
    assert cache.hits >= 1


def test_a_zero_sized_cache_always_computes() -> None:
    cache: TextCache[int] = TextCache(0)

    assert cache.get_many(["a", "a"], lambda texts: [7] * len(texts)) == [7, 7]
    assert len(cache) == 0


def test_token_budget_buckets_short_inputs_into_bigger_batches() -> None:
    lengths = [100, 10, 90, 12, 11, 95]

    batches = length_sorted_batches(lengths, 4, max_tokens=200)

    # Longest first; each batch as many rows as the budget allows at its longest length.
    assert [list(b) for b in batches] == [[0, 5], [2, 3], [4, 1]]
    assert [list(b) for b in length_sorted_batches([12, 10, 11, 9], 4, max_tokens=30)] == [
        [0, 2],
        [1, 3],
    ]
    assert [list(b) for b in length_sorted_batches([300], 4, max_tokens=200)] == [[0]]
    with pytest.raises(ValueError, match="max_tokens"):
        length_sorted_batches(lengths, 4, max_tokens=0)


def test_prior_cache_gives_the_same_scores(
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    tmp_path: Path,
    with_prior: WithPrior,
) -> None:
    model = with_prior(tiny_reranker_dir, tiny_embedder_dir, tmp_path)
    embedder = Embedder.load(tiny_embedder_dir, backend="torch")
    cached = Reranker.load(
        model, embedder=embedder, token_cache_size=10, prior_cache_size=10, backend="torch"
    )
    plain = Reranker.load(model, embedder=embedder, backend="torch")

    first = cached.score(QUERY, DOCUMENTS)
    second = cached.score(QUERY, DOCUMENTS)

    np.testing.assert_allclose(first, plain.score(QUERY, DOCUMENTS), atol=1e-5)
    np.testing.assert_allclose(second, first, atol=1e-6)
    assert cached.prior is not None
    assert cached.prior.cache.hits == len(DOCUMENTS)
    assert cached.tokenizer.document_cache.hits == len(DOCUMENTS)


def test_prior_accepts_an_onnx_export_of_its_bi_encoder(
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    onnx_embedder_dir: Path,
    tmp_path: Path,
    with_prior: WithPrior,
) -> None:
    model = with_prior(tiny_reranker_dir, tiny_embedder_dir, tmp_path)
    torch_prior = Reranker.load(
        model, embedder=Embedder.load(tiny_embedder_dir, backend="torch"), backend="torch"
    )
    onnx_prior = Reranker.load(model, embedder=Embedder.load(onnx_embedder_dir), backend="torch")

    np.testing.assert_allclose(
        onnx_prior.score(QUERY, DOCUMENTS), torch_prior.score(QUERY, DOCUMENTS), atol=1e-4
    )


def test_prior_refuses_an_unrelated_bi_encoder(
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    tmp_path: Path,
    with_prior: WithPrior,
) -> None:
    model = with_prior(tiny_reranker_dir, tiny_embedder_dir, tmp_path, sha256="0" * 64)

    with pytest.raises(RerankerError, match="was trained with the bi-encoder"):
        Reranker.load(
            model, embedder=Embedder.load(tiny_embedder_dir, backend="torch"), backend="torch"
        )
