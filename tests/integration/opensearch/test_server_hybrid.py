"""Server-side hybrid on a real node with neural-search: the ``hybrid`` query through the
normalization search pipeline, created by name, honoring a filter with k hits."""

from __future__ import annotations

from typing import Any

import pytest

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import SearchFilter
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.devnode import RunningNode
from indexer.stores.opensearch.jobs import reindex_catalog
from indexer.stores.opensearch.mapping import hybrid_pipeline_body
from indexer.stores.opensearch.store import (
    OpenSearchIndex,
    OpenSearchLexicalIndex,
    OpenSearchProductStore,
    OpenSearchVectorStore,
    open_opensearch_index,
)
from ranker.embedder import Embedder
from ranker.pipeline import SearchPipeline
from ranker.settings import OpenSearchSettings, RerankSettings, RetrievalSettings, Settings

pytestmark = [pytest.mark.opensearch_ml, pytest.mark.integration]

ALIAS = "it-hybrid"
PIPELINE = "it-hybrid-pipeline"
QUERY = "adidas gym bag for women"
K = 10


@pytest.fixture(scope="module")
def hybrid_config(opensearch_ml_node: RunningNode) -> OpenSearchSettings:
    return OpenSearchSettings(
        url=opensearch_ml_node.url,
        index_alias=ALIAS,
        replicas=0,
        reindex_grace_s=0,
        timeout_s=60,
        hybrid="server",
        hybrid_pipeline=PIPELINE,
        hybrid_normalization="min_max",
    )


@pytest.fixture(scope="module")
def hybrid_index(
    hybrid_config: OpenSearchSettings,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> OpenSearchIndex:
    reindex_catalog(
        catalog_subset,
        config=hybrid_config,
        embedder=tiny_embedder,
        template=TextTemplate(integration_settings.index.text_template),
        source="catalog subset",
        progress=False,
    )
    return open_opensearch_index(hybrid_config, expected=tiny_embedder.identity)


def _pipeline(index: OpenSearchIndex, embedder: Embedder) -> SearchPipeline:
    return SearchPipeline(
        embedder=embedder,
        vector_store=OpenSearchVectorStore(index),
        lexical_index=OpenSearchLexicalIndex(index),
        product_store=OpenSearchProductStore(index),
        template=index.template,
        retrieval=RetrievalSettings(dense_weight=1.0, lexical_weight=3.0),
        rerank=RerankSettings(),
    )


def _price_filter(products: list[Product]) -> SearchFilter:
    prices = sorted(p.price for p in products if p.price is not None)
    return SearchFilter(price_max=prices[len(prices) // 2])


def test_server_hybrid_returns_k_hits_that_honor_the_filter(
    hybrid_index: OpenSearchIndex, tiny_embedder: Embedder, catalog_subset: list[Product]
) -> None:
    search_filter = _price_filter(catalog_subset)
    matching = {p.id for p in catalog_subset if search_filter.matches(p)}
    assert len(matching) > 3 * K

    outcome = _pipeline(hybrid_index, tiny_embedder).search(
        QUERY, k=K, search_filter=search_filter, rerank=False
    )

    ids = [r.product.id for r in outcome.results]
    scores = [r.score for r in outcome.results]
    assert len(ids) == K
    assert len(set(ids)) == K
    assert set(ids) <= matching
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    assert "hybrid" in outcome.timings_ms
    assert "fusion" not in outcome.timings_ms


def test_the_pipeline_is_created_by_name_with_the_settings_weights(
    hybrid_index: OpenSearchIndex, hybrid_config: OpenSearchSettings, tiny_embedder: Embedder
) -> None:
    _pipeline(hybrid_index, tiny_embedder).retrieve(QUERY, k=K)
    client = make_client(hybrid_config)

    stored: dict[str, Any] = client.transport.perform_request(
        "GET", f"/_search/pipeline/{PIPELINE}"
    )

    assert stored[PIPELINE] == hybrid_pipeline_body(normalization="min_max", weights=(0.25, 0.75))


def test_server_hybrid_fuses_the_candidates_client_rrf_fuses(
    hybrid_index: OpenSearchIndex, tiny_embedder: Embedder
) -> None:
    """Every fused hit is among the top-100 k-NN and BM25 hits that RRF would fuse."""
    pipeline = _pipeline(hybrid_index, tiny_embedder)
    server = {h.product_id for h in pipeline.retrieve(QUERY, k=K)}
    dense = pipeline.retrieve(QUERY, k=100, mode="dense")
    lexical = pipeline.retrieve(QUERY, k=100, mode="lexical")
    candidates = {h.product_id for h in dense} | {h.product_id for h in lexical}

    assert server <= candidates
