"""The search pipeline: correct the query's spelling, embed it, retrieve (dense, lexical, fused),
then rerank."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import (
    FloatMatrix,
    Hit,
    HybridSearcher,
    LexicalIndex,
    ProductStore,
    SearchFilter,
    StoredVectors,
    StoreError,
    VectorStore,
)
from ranker.backends.base import FloatArray
from ranker.catalog_vectors import CatalogVectors
from ranker.embedder import Embedder
from ranker.fusion import reciprocal_rank_fusion
from ranker.product_texts import ProductTexts
from ranker.reranker import Reranker
from ranker.search_results import Candidates, RankedProduct, SearchOutcome, StageTimer
from ranker.settings import RerankSettings, RetrievalSettings
from ranker.spelling import QuerySpeller, SpelledQuery

logger = logging.getLogger(__name__)

RetrievalMode = Literal["dense", "lexical", "hybrid"]


class SearchPipeline:
    """Stateless per call; every component is loaded once and shared between requests
    (``text_cache``, the products' rendered texts, too: the pipelines ``with_*`` make share
    it)."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        vector_store: VectorStore,
        lexical_index: LexicalIndex,
        product_store: ProductStore,
        template: TextTemplate,
        retrieval: RetrievalSettings,
        rerank: RerankSettings,
        reranker: Reranker | None = None,
        text_cache: ProductTexts | None = None,
        speller: QuerySpeller | None = None,
    ) -> None:
        if embedder.dimension != vector_store.identity.dimension:
            raise ValueError(
                f"embedder dimension {embedder.dimension} differs from the index's "
                f"{vector_store.identity.dimension}"
            )
        self.embedder = embedder
        self.vector_store = vector_store
        self.lexical_index = lexical_index
        self.product_store = product_store
        self.template = template
        self.retrieval = retrieval
        self.rerank_settings = rerank
        self.reranker = reranker
        self.speller = speller
        self.text_cache = (
            text_cache
            if text_cache is not None and text_cache.template is template
            else ProductTexts(template)
        )

    def with_reranker(
        self, reranker: Reranker | None, rerank: RerankSettings | None = None
    ) -> SearchPipeline:
        """The same pipeline with another reranker, and other rerank settings if given
        (the stores are shared, not copied)."""
        return SearchPipeline(
            embedder=self.embedder,
            vector_store=self.vector_store,
            lexical_index=self.lexical_index,
            product_store=self.product_store,
            template=self.template,
            retrieval=self.retrieval,
            rerank=rerank or self.rerank_settings,
            reranker=reranker,
            text_cache=self.text_cache,
            speller=self.speller,
        )

    def with_retrieval(self, retrieval: RetrievalSettings) -> SearchPipeline:
        """The same pipeline with other retrieval and fusion settings (stores shared)."""
        return SearchPipeline(
            embedder=self.embedder,
            vector_store=self.vector_store,
            lexical_index=self.lexical_index,
            product_store=self.product_store,
            template=self.template,
            retrieval=retrieval,
            rerank=self.rerank_settings,
            reranker=self.reranker,
            text_cache=self.text_cache,
            speller=self.speller,
        )

    def retrieve(
        self,
        query: str,
        *,
        k: int,
        mode: RetrievalMode | None = None,
        search_filter: SearchFilter | None = None,
        timer: StageTimer | None = None,
        correct_spelling: bool = True,
    ) -> list[Hit]:
        """First-stage hits, best first: dense, lexical or their fusion, for the query with
        its misspelled words corrected (see :meth:`spelled`).

        Hybrid fuses by reciprocal rank fusion here, unless the vector store fuses itself
        (:class:`~indexer.stores.base.HybridSearcher` with ``server_hybrid``: OpenSearch's
        hybrid query), which gets the same candidate depth and weights.
        """
        spelled = self.spelled(query) if correct_spelling else None
        hits, _ = self._retrieve(
            spelled.text if spelled else query,
            k=k,
            mode=mode,
            search_filter=search_filter,
            timer=timer,
            lexical_query=spelled.lexical if spelled else None,
        )
        return hits

    def spelled(self, query: str) -> SpelledQuery | None:
        """``query`` with the words the catalog does not use corrected to ones it does
        (:mod:`ranker.spelling`); None when nothing changes or the index keeps no
        vocabulary."""
        return self.speller.correct(query) if self.speller is not None else None

    def _retrieve(
        self,
        query: str,
        *,
        k: int,
        mode: RetrievalMode | None = None,
        search_filter: SearchFilter | None = None,
        timer: StageTimer | None = None,
        query_vector: FloatArray | None = None,
        lexical_query: str | None = None,
    ) -> tuple[list[Hit], FloatArray | None]:
        """:meth:`retrieve`'s hits, and the query's vector when it has one (as given, or
        embedded for dense retrieval). ``lexical_query``: what BM25 searches instead of
        ``query``."""
        timer = timer or StageTimer()
        lexical_query = lexical_query or query
        mode = mode or self.retrieval.mode
        depth = max(k, self.retrieval.candidates)
        store = self.vector_store
        vector = query_vector
        if vector is None and mode in ("dense", "hybrid"):
            with timer.stage("embed_query"):
                vector = self.embedder.embed_query(query)
        if (
            mode == "hybrid"
            and isinstance(store, HybridSearcher)
            and store.server_hybrid
            and vector is not None
        ):
            with timer.stage("hybrid"):
                hits = store.search_hybrid(
                    lexical_query,
                    vector,
                    k,
                    search_filter,
                    depth=depth,
                    weights=(self.retrieval.dense_weight, self.retrieval.lexical_weight),
                )
            return hits, vector
        dense: list[Hit] = []
        lexical: list[Hit] = []
        if mode in ("dense", "hybrid") and vector is not None:
            with timer.stage("dense"):
                dense = self.vector_store.search(vector, depth, search_filter)
        if mode in ("lexical", "hybrid"):
            with timer.stage("lexical"):
                lexical = self.lexical_index.search(lexical_query, depth, search_filter)
        if mode == "dense":
            return dense[:k], vector
        if mode == "lexical":
            return lexical[:k], vector
        with timer.stage("fusion"):
            fused = reciprocal_rank_fusion(
                [dense, lexical],
                weights=[self.retrieval.dense_weight, self.retrieval.lexical_weight],
                k=self.retrieval.rrf_k,
                limit=k,
            )
        return fused, vector

    def _order_head(
        self, head: Sequence[RankedProduct], scores: Sequence[float]
    ) -> list[RankedProduct]:
        """The reranked head, best first.

        With ``retrieval_weight`` 0 the reranker's scores decide alone. Otherwise its order
        is fused by RRF with the retrieval order (weights: 1 for the reranker,
        ``retrieval_weight`` for retrieval), which keeps the lexical evidence a
        cross-encoder trained on few queries can miss; the final score is the fused one.
        """
        by_rerank = sorted(
            zip(head, scores, strict=True), key=lambda pair: (-pair[1], pair[0].product.id)
        )
        weight = self.rerank_settings.retrieval_weight
        if weight == 0:
            return [RankedProduct(r.product, s, r.retrieval_score, s) for r, s in by_rerank]
        fused = reciprocal_rank_fusion(
            [
                [Hit(r.product.id, s) for r, s in by_rerank],
                [Hit(r.product.id, r.retrieval_score) for r in head],
            ],
            weights=[1.0, weight],
            k=self.retrieval.rrf_k,
        )
        rerank_score = {r.product.id: s for r, s in by_rerank}
        product = {r.product.id: r for r in head}
        return [
            RankedProduct(
                product[hit.product_id].product,
                hit.score,
                product[hit.product_id].retrieval_score,
                rerank_score[hit.product_id],
            )
            for hit in fused
        ]

    def _prior_store(self) -> StoredVectors | None:
        """The vector store when the reranker's dense prior can use its vectors (see
        :meth:`_store_for`); else None: the prior embeds."""
        prior = self.reranker.prior if self.reranker is not None else None
        return self._store_for(prior.embedder) if prior is not None else None

    def _store_for(self, embedder: Embedder) -> StoredVectors | None:
        """The vector store when its vectors are ``embedder``'s: the index was built with
        that bi-encoder (or what it was exported from), over the texts the pipeline
        renders. Else None."""
        store = self.vector_store
        if not isinstance(store, StoredVectors):
            return None
        if store.identity.weights_sha256 not in embedder.lineage:
            return None
        return store

    def catalog_vectors(self, embedder: Embedder | None = None) -> CatalogVectors | None:
        """Every indexed product's text digested, to find its stored vector by text (see
        :mod:`ranker.catalog_vectors`), for ``embedder`` (default: the reranker's dense
        prior's). None when the store does not hold that bi-encoder's vectors, or the
        product store cannot list its products."""
        store = self._prior_store() if embedder is None else self._store_for(embedder)
        iter_products = getattr(self.product_store, "iter_products", None)
        if store is None or iter_products is None:
            return None
        return CatalogVectors.build(iter_products(), self.template, store)

    def _stored_prior_vectors(self, product_ids: Sequence[str]) -> FloatMatrix | None:
        """The products' vectors from the index, when the reranker's dense prior can use
        them (see :meth:`_prior_store`); else None."""
        store = self._prior_store()
        if store is None:
            return None
        try:
            return store.vectors(product_ids)
        except StoreError as exc:
            logger.warning("the prior embeds the products: %s", exc)
            return None

    def product_texts(self, products: Sequence[Product]) -> list[str]:
        """The text the models see for each product (rendered once per unchanged product)."""
        return self.text_cache.texts(products)

    def candidates(
        self,
        query: str,
        *,
        k: int = 10,
        mode: RetrievalMode | None = None,
        search_filter: SearchFilter | None = None,
        rerank: bool = True,
        rerank_depth: int | None = None,
        query_vector: FloatArray | None = None,
        correct_spelling: bool = True,
        spelled: SpelledQuery | None = None,
    ) -> Candidates:
        """Retrieve and fetch the products, and what the reranker reads of the top
        ``rerank_depth``, for the query with its misspelled words corrected (unless
        ``correct_spelling`` is false). ``spelled``: the correction when the caller made it
        already (it embedded the corrected query); ``query_vector``: the bi-encoder's vector
        of the query as searched, when the caller has it."""
        timer = StageTimer()
        depth = rerank_depth or self.rerank_settings.depth
        do_rerank = rerank and self.reranker is not None
        if spelled is None and correct_spelling:
            spelled = self.spelled(query)
        hits, query_vector = self._retrieve(
            spelled.text if spelled else query,
            k=max(k, depth) if do_rerank else k,
            mode=mode,
            search_filter=search_filter,
            timer=timer,
            query_vector=query_vector,
            lexical_query=spelled.lexical if spelled else None,
        )
        with timer.stage("fetch"):
            products = self.product_store.get_many([hit.product_id for hit in hits])
            found = [(hit, p) for hit, p in zip(hits, products, strict=True) if p is not None]
            if len(found) < len(hits):
                logger.warning("%d retrieved ids have no product document", len(hits) - len(found))
            results = [RankedProduct(p, hit.score, hit.score) for hit, p in found]
            head = [r.product for r in results[:depth]] if do_rerank else []
            texts = self.product_texts(head)
            vectors = self._stored_prior_vectors([p.id for p in head]) if head else None
        return Candidates(
            query=spelled.text if spelled else query,
            k=k,
            results=results,
            texts=texts,
            document_vectors=vectors,
            query_vector=self._prior_query_vector(query_vector),
            timings_ms=timer.timings_ms,
            corrected_query=spelled.text if spelled else None,
        )

    def _prior_query_vector(self, query_vector: FloatArray | None) -> FloatArray | None:
        """Retrieval's query vector, when the reranker's prior reads this bi-encoder's."""
        prior = self.reranker.prior if self.reranker is not None else None
        if query_vector is None or prior is None or not prior.reads_vectors_of(self.embedder):
            return None
        return query_vector

    def score(self, candidates: Candidates) -> FloatArray:
        """The reranker's scores of the candidates' head, in this thread."""
        if self.reranker is None:
            raise ValueError("this pipeline has no reranker")
        given: dict[str, Any] = {}
        if candidates.document_vectors is not None:
            given["document_vectors"] = candidates.document_vectors
        if candidates.query_vector is not None:
            given["query_vector"] = candidates.query_vector
        return self.reranker.score(candidates.query, candidates.texts, **given)

    def ranked(self, candidates: Candidates, scores: Sequence[float] | None) -> SearchOutcome:
        """The outcome: the head ordered by ``scores`` (None: not reranked), then the rest in
        retrieval order, scored below the head so that scores decrease down the list (TREC
        tools sort by score, not by rank)."""
        results = candidates.results
        reranked = len(candidates.texts) if scores is not None else 0
        if reranked:
            rescored = self._order_head(results[:reranked], [float(s) for s in scores or ()])
            floor = rescored[-1].score - 1.0
            tail = [
                RankedProduct(r.product, floor - position * 1e-3, r.retrieval_score)
                for position, r in enumerate(results[reranked:])
            ]
            results = rescored + tail
        return SearchOutcome(
            results=results[: candidates.k],
            timings_ms=dict(candidates.timings_ms),
            reranked=reranked,
            corrected_query=candidates.corrected_query,
        )

    def rerank(self, candidates: Candidates) -> SearchOutcome:
        """Score the candidates' head in this thread, then rank."""
        if not candidates.texts:
            return self.ranked(candidates, None)
        start = time.perf_counter()
        scores = self.score(candidates)
        candidates.timings_ms["rerank"] = 1e3 * (time.perf_counter() - start)
        return self.ranked(candidates, [float(s) for s in scores])

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: RetrievalMode | None = None,
        search_filter: SearchFilter | None = None,
        rerank: bool = True,
        rerank_depth: int | None = None,
        correct_spelling: bool = True,
    ) -> SearchOutcome:
        """Retrieve, then rerank the top ``rerank_depth`` with the cross-encoder, for the
        query with its misspelled words corrected (unless ``correct_spelling`` is false).

        Products below the rerank depth follow the reranked ones in retrieval order. The
        query is embedded once: retrieval's vector also feeds the reranker's dense prior.
        """
        return self.rerank(
            self.candidates(
                query,
                k=k,
                mode=mode,
                search_filter=search_filter,
                rerank=rerank,
                rerank_depth=rerank_depth,
                correct_spelling=correct_spelling,
            )
        )
