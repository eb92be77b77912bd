"""The pipeline's ordering logic, with stand-in stores and models (no weights)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import Hit, ModelIdentity, SearchFilter
from ranker.pipeline import SearchPipeline
from ranker.settings import RerankSettings, RetrievalSettings

PRODUCTS = {pid: Product(id=pid, title=f"product {pid}") for pid in "abcdef"}


class _Embedder:
    identity = ModelIdentity("fake", "0" * 64, 2)
    dimension = 2
    embedded = 0

    def embed_query(self, query: str) -> np.ndarray:
        type(self).embedded += 1
        return np.ones(2, dtype=np.float32)


class _Ranked:
    """Returns a fixed ranking, cut to k and to the filter."""

    identity = _Embedder.identity

    def __init__(self, order: str) -> None:
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def search(self, query: Any, k: int, search_filter: SearchFilter | None = None) -> list[Hit]:
        allowed = [
            p for p in self.order if search_filter is None or search_filter.matches(PRODUCTS[p])
        ]
        return [Hit(p, 1.0 / (rank + 1)) for rank, p in enumerate(allowed[:k])]


class _Products:
    def __len__(self) -> int:
        return len(PRODUCTS)

    def get_many(self, ids: Sequence[str]) -> list[Product | None]:
        return [PRODUCTS.get(i) for i in ids]


class _Reranker:
    """Scores products by a fixed table, keyed by the product id in the text."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.seen: list[int] = []
        self.prior: Any = None

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        self.seen.append(len(documents))
        return np.array([self.table[d.split()[-1]] for d in documents], dtype=np.float32)


def _pipeline(reranker: _Reranker | None, *, retrieval_weight: float = 0.0) -> SearchPipeline:
    return SearchPipeline(
        embedder=_Embedder(),  # type: ignore[arg-type]
        vector_store=_Ranked("abcdef"),  # type: ignore[arg-type]
        lexical_index=_Ranked("bacdfe"),  # type: ignore[arg-type]
        product_store=_Products(),  # type: ignore[arg-type]
        template=TextTemplate("{title}"),
        retrieval=RetrievalSettings(rrf_k=60),
        rerank=RerankSettings(depth=3, retrieval_weight=retrieval_weight),
        reranker=reranker,  # type: ignore[arg-type]
    )


SCORES = {"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.5, "e": 0.0, "f": 0.0}


def test_hybrid_retrieval_is_rrf_of_both_lists() -> None:
    hits = _pipeline(None).retrieve("q", k=6)

    # a: 1/61 + 1/62, b: 1/62 + 1/61 -> tie broken by id; c: 2/63; d: 2/64; e,f: 1/65+1/66
    assert [h.product_id for h in hits] == ["a", "b", "c", "d", "e", "f"]
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 62)


def test_rerank_reorders_only_the_head_and_scores_keep_falling() -> None:
    reranker = _Reranker(SCORES)
    outcome = _pipeline(reranker).search("q", k=6)
    ids = [r.product.id for r in outcome.results]
    scores = [r.score for r in outcome.results]

    assert reranker.seen == [3]
    assert outcome.reranked == 3
    assert ids == ["c", "b", "a", "d", "e", "f"]
    assert scores == sorted(scores, reverse=True)
    assert [r.rerank_score for r in outcome.results[3:]] == [None, None, None]
    assert set(outcome.timings_ms) >= {"embed_query", "dense", "lexical", "fusion", "rerank"}


def test_retrieval_weight_fuses_the_rerank_order_with_the_retrieval_order() -> None:
    outcome = _pipeline(_Reranker(SCORES), retrieval_weight=2.0).search("q", k=3)

    # rerank order c, b, a; retrieval order a, b, c.
    # a: 1/63 + 2/61 = 0.04866, b: 1/62 + 2/62 = 0.04839, c: 1/61 + 2/63 = 0.04814
    assert [r.product.id for r in outcome.results] == ["a", "b", "c"]
    assert outcome.results[0].score == pytest.approx(1 / 63 + 2 / 61)
    assert outcome.results[0].rerank_score == pytest.approx(0.1)


def test_no_rerank_returns_retrieval_order() -> None:
    reranker = _Reranker(SCORES)
    outcome = _pipeline(reranker).search("q", k=4, rerank=False)

    assert reranker.seen == []
    assert [r.product.id for r in outcome.results] == ["a", "b", "c", "d"]


def test_id_filter_keeps_to_the_candidates() -> None:
    outcome = _pipeline(_Reranker(SCORES)).search(
        "q", k=10, search_filter=SearchFilter(product_ids=frozenset({"d", "e"}))
    )

    assert [r.product.id for r in outcome.results] == ["d", "e"]


class _ServerHybrid(_Ranked):
    """A vector store that fuses itself (like OpenSearch's hybrid query) when told to."""

    def __init__(self, order: str, *, enabled: bool) -> None:
        super().__init__(order)
        self.enabled = enabled
        self.calls: list[dict[str, Any]] = []

    @property
    def server_hybrid(self) -> bool:
        return self.enabled

    def search_hybrid(
        self,
        query: str,
        vector: Any,
        k: int,
        search_filter: SearchFilter | None = None,
        *,
        depth: int,
        weights: tuple[float, float],
    ) -> list[Hit]:
        self.calls.append({"query": query, "k": k, "depth": depth, "weights": weights})
        return [Hit(p, 1.0 - rank / 10) for rank, p in enumerate("fedcba"[:k])]


def _hybrid_pipeline(store: _ServerHybrid) -> SearchPipeline:
    return SearchPipeline(
        embedder=_Embedder(),  # type: ignore[arg-type]
        vector_store=store,  # type: ignore[arg-type]
        lexical_index=_Ranked("bacdfe"),  # type: ignore[arg-type]
        product_store=_Products(),  # type: ignore[arg-type]
        template=TextTemplate("{title}"),
        retrieval=RetrievalSettings(rrf_k=60, dense_weight=1.0, lexical_weight=3.0, candidates=50),
        rerank=RerankSettings(depth=3),
    )


def test_server_side_hybrid_replaces_rrf_with_the_settings_depth_and_weights() -> None:
    store = _ServerHybrid("abcdef", enabled=True)

    outcome = _hybrid_pipeline(store).search("q", k=4, rerank=False)

    assert [r.product.id for r in outcome.results] == ["f", "e", "d", "c"]
    assert store.calls == [{"query": "q", "k": 4, "depth": 50, "weights": (1.0, 3.0)}]
    assert "hybrid" in outcome.timings_ms
    assert "fusion" not in outcome.timings_ms


def test_server_side_hybrid_off_keeps_client_rrf() -> None:
    store = _ServerHybrid("abcdef", enabled=False)

    hits = _hybrid_pipeline(store).retrieve("q", k=6)

    assert store.calls == []
    assert [h.product_id for h in hits][:2] == ["b", "a"]


def test_dense_mode_never_uses_server_side_hybrid() -> None:
    store = _ServerHybrid("abcdef", enabled=True)

    hits = _hybrid_pipeline(store).retrieve("q", k=3, mode="dense")

    assert store.calls == []
    assert [h.product_id for h in hits] == ["a", "b", "c"]


class _StoredRanked(_Ranked):
    """A dense store that also hands back stored vectors (one per product, by id)."""

    def vectors(self, product_ids: Sequence[str]) -> np.ndarray:
        return np.array([[ord(p), 0.0] for p in product_ids], dtype=np.float32)


class _Prior:
    """A dense prior whose bi-encoder has the given weights lineage."""

    def __init__(self, lineage: tuple[str, ...]) -> None:
        self.embedder = type("E", (), {"lineage": lineage})()

    def reads_vectors_of(self, embedder: Any) -> bool:
        return bool(embedder.identity.weights_sha256 in self.embedder.lineage)


class _PriorReranker(_Reranker):
    """A reranker with a dense prior whose bi-encoder has the given weights lineage."""

    def __init__(self, table: dict[str, float], lineage: tuple[str, ...]) -> None:
        super().__init__(table)
        self.prior = _Prior(lineage)
        self.vectors_seen: list[np.ndarray | None] = []
        self.query_vectors_seen: list[np.ndarray | None] = []

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        document_vectors: Any = None,
        query_vector: Any = None,
    ) -> np.ndarray:
        self.vectors_seen.append(document_vectors)
        self.query_vectors_seen.append(query_vector)
        return super().score(query, documents)


def _stored_pipeline(reranker: _PriorReranker) -> SearchPipeline:
    return SearchPipeline(
        embedder=_Embedder(),  # type: ignore[arg-type]
        vector_store=_StoredRanked("abcdef"),  # type: ignore[arg-type]
        lexical_index=_Ranked("bacdfe"),  # type: ignore[arg-type]
        product_store=_Products(),  # type: ignore[arg-type]
        template=TextTemplate("{title}"),
        retrieval=RetrievalSettings(rrf_k=60),
        rerank=RerankSettings(depth=3, retrieval_weight=0.0),
        reranker=reranker,  # type: ignore[arg-type]
    )


def test_the_prior_reads_the_heads_vectors_from_the_index_built_with_its_bi_encoder() -> None:
    reranker = _PriorReranker(SCORES, lineage=(_Embedder.identity.weights_sha256,))
    outcome = _stored_pipeline(reranker).search("q", k=3, mode="dense")
    [vectors] = reranker.vectors_seen
    assert vectors is not None
    assert [chr(int(row[0])) for row in vectors] == ["a", "b", "c"]  # the head, in order
    assert [r.product.id for r in outcome.results] == ["c", "b", "a"]


def test_an_index_of_another_bi_encoder_leaves_the_prior_to_embed() -> None:
    reranker = _PriorReranker(SCORES, lineage=("f" * 64,))
    _stored_pipeline(reranker).search("q", k=3, mode="dense")
    assert reranker.vectors_seen == [None]
    assert reranker.query_vectors_seen == [None]


def test_the_query_is_embedded_once_and_its_vector_feeds_the_prior() -> None:
    reranker = _PriorReranker(SCORES, lineage=(_Embedder.identity.weights_sha256,))
    before = _Embedder.embedded

    _stored_pipeline(reranker).search("q", k=3, mode="hybrid")

    assert _Embedder.embedded == before + 1
    [vector] = reranker.query_vectors_seen
    np.testing.assert_array_equal(vector, np.ones(2, dtype=np.float32))


def test_a_lexical_search_leaves_the_prior_to_embed_the_query() -> None:
    reranker = _PriorReranker(SCORES, lineage=(_Embedder.identity.weights_sha256,))
    before = _Embedder.embedded

    _stored_pipeline(reranker).search("q", k=3, mode="lexical")

    assert _Embedder.embedded == before
    assert reranker.query_vectors_seen == [None]
