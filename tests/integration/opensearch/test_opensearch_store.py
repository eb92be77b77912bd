"""OpenSearch on a real node: reindex behind an alias, filtered k-NN, BM25, hybrid, jobs."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import ModelIdentity, SearchFilter, StoreError, StoreMismatchError
from indexer.stores.opensearch.aliases import alias_targets, prune_retired, versioned_indexes
from indexer.stores.opensearch.bulk import bulk_options, run_bulk
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.jobs import (
    ReindexResult,
    delete_from_catalog,
    reindex_catalog,
    upsert_catalog,
)
from indexer.stores.opensearch.store import (
    OpenSearchIndex,
    OpenSearchVectorStore,
    ServerHybrid,
    open_opensearch_index,
)
from ranker.embedder import Embedder
from ranker.loading import open_pipeline
from ranker.settings import OpenSearchSettings, Settings

pytestmark = [pytest.mark.opensearch, pytest.mark.integration]

K = 10


@pytest.fixture(scope="module")
def subset_config(make_config: Any) -> OpenSearchSettings:
    config: OpenSearchSettings = make_config("it-subset")
    return config


@pytest.fixture(scope="module")
def built(
    subset_config: OpenSearchSettings,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> ReindexResult:
    """The integration catalog subset, reindexed behind the alias ``it-subset``."""
    return reindex_catalog(
        catalog_subset,
        config=subset_config,
        embedder=tiny_embedder,
        template=TextTemplate(integration_settings.index.text_template),
        source="catalog subset",
        progress=False,
    )


@pytest.fixture(scope="module")
def index(
    built: ReindexResult, subset_config: OpenSearchSettings, tiny_embedder: Embedder
) -> OpenSearchIndex:
    return open_opensearch_index(subset_config, expected=tiny_embedder.identity)


@pytest.fixture(scope="module")
def subset_vectors(
    catalog_subset: list[Product], tiny_embedder: Embedder, index: OpenSearchIndex
) -> np.ndarray[Any, np.dtype[np.float32]]:
    return tiny_embedder.embed([index.template.render(p) for p in catalog_subset])


def _price_filter(products: list[Product]) -> SearchFilter:
    prices = sorted(p.price for p in products if p.price is not None)
    return SearchFilter(price_max=prices[len(prices) // 2])


def test_reindex_puts_a_versioned_index_behind_the_alias(
    built: ReindexResult, subset_config: OpenSearchSettings, catalog_subset: list[Product]
) -> None:
    client = make_client(subset_config)
    assert built.index == "it-subset-v1"
    assert built.count == len({p.id for p in catalog_subset})
    assert alias_targets(client, "it-subset") == ["it-subset-v1"]
    assert client.count(index="it-subset")["count"] == built.count
    assert built.docs_per_s > 0


def test_filtered_knn_returns_k_hits_that_match_exact_search(
    index: OpenSearchIndex,
    catalog_subset: list[Product],
    subset_vectors: np.ndarray[Any, np.dtype[np.float32]],
    tiny_embedder: Embedder,
) -> None:
    store = OpenSearchVectorStore(index)
    search_filter = _price_filter(catalog_subset)
    matching = [i for i, p in enumerate(catalog_subset) if search_filter.matches(p)]
    assert len(matching) > 3 * K
    query = tiny_embedder.embed_query("wireless bluetooth headphones")
    hits = store.search(query, K, search_filter)

    assert len(hits) == K
    by_id = {p.id: p for p in catalog_subset}
    assert all(search_filter.matches(by_id[hit.product_id]) for hit in hits)
    exact_scores = subset_vectors[matching] @ query
    exact = [catalog_subset[matching[i]].id for i in np.argsort(-exact_scores)[:K]]
    recall = len({hit.product_id for hit in hits} & set(exact)) / K
    assert recall >= 0.9
    position = {p.id: i for i, p in enumerate(catalog_subset)}
    for hit in hits:
        expected = float(subset_vectors[position[hit.product_id]] @ query)
        assert hit.score == pytest.approx(expected, abs=1e-3)


def test_a_narrow_filter_returns_every_match(
    index: OpenSearchIndex, catalog_subset: list[Product], tiny_embedder: Embedder
) -> None:
    brands: dict[str, int] = {}
    for product in catalog_subset:
        if product.brand:
            brands[product.brand] = brands.get(product.brand, 0) + 1
    brand, count = next((b, n) for b, n in sorted(brands.items()) if 1 < n < K)
    search_filter = SearchFilter(brands=(brand.upper(),))
    hits = index.search_vector(tiny_embedder.embed_query("anything"), K, search_filter)
    assert len(hits) == count
    ids = {p.id for p in catalog_subset if p.brand == brand}
    assert {hit.product_id for hit in hits} == ids


def test_bm25_finds_a_product_by_its_title_inside_filters(
    index: OpenSearchIndex, catalog_subset: list[Product]
) -> None:
    product = next(p for p in catalog_subset if p.brand and p.category and len(p.title) > 20)
    hits = index.search_text(product.title, K)
    assert product.id in [hit.product_id for hit in hits[:3]]
    assert hits == sorted(hits, key=lambda hit: -hit.score)

    search_filter = SearchFilter(categories=(product.category[-1],), brands=(product.brand,))
    filtered = index.search_text(product.title, K, search_filter)
    by_id = {p.id: p for p in catalog_subset}
    assert filtered[0].product_id == product.id
    assert all(search_filter.matches(by_id[hit.product_id]) for hit in filtered)
    assert index.search_text("   ", K) == []


def test_hybrid_search_runs_through_the_pipeline(
    built: ReindexResult,
    subset_config: OpenSearchSettings,
    integration_settings: Settings,
    tiny_embedder: Embedder,
    catalog_subset: list[Product],
) -> None:
    settings = integration_settings.model_copy(
        update={
            "index": integration_settings.index.model_copy(update={"backend": "opensearch"}),
            "opensearch": subset_config,
        }
    )
    pipeline = open_pipeline(settings, embedder=tiny_embedder, reranker=None)
    search_filter = _price_filter(catalog_subset)
    for mode in ("dense", "lexical", "hybrid"):
        outcome = pipeline.search(
            "usb charger cable", k=K, mode=mode, search_filter=search_filter, rerank=False
        )
        # BM25 finds only products that share a term with the query; the others find K.
        assert 0 < len(outcome.results) <= K if mode == "lexical" else len(outcome.results) == K
        assert all(search_filter.matches(r.product) for r in outcome.results), mode
    assert "fusion" in outcome.timings_ms
    products = pipeline.product_store.get_many([catalog_subset[0].id, "no-such-id"])
    assert products == [catalog_subset[0], None]


def test_an_index_built_with_another_model_is_refused(
    built: ReindexResult, subset_config: OpenSearchSettings, tiny_embedder: Embedder
) -> None:
    other = ModelIdentity("other-model", "0" * 64, tiny_embedder.identity.dimension)
    with pytest.raises(StoreMismatchError, match="other-model"):
        open_opensearch_index(subset_config, expected=other)


def test_upsert_and_delete_in_place(
    make_config: Any,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> None:
    config: OpenSearchSettings = make_config("it-incremental")
    products = catalog_subset[:40]
    reindex_catalog(
        products,
        config=config,
        embedder=tiny_embedder,
        template=TextTemplate(integration_settings.index.text_template),
        source="first 40",
        progress=False,
    )
    changed = products[0].model_copy(update={"title": "zyxwv quokka lamp"})
    added = catalog_subset[40]
    report = upsert_catalog([changed, added], config=config, embedder=tiny_embedder)
    assert report.succeeded == 2
    assert report.ok

    index = open_opensearch_index(config, expected=tiny_embedder.identity)
    index.client.indices.refresh(index=config.index_alias)
    assert [hit.product_id for hit in index.search_text("quokka", K)] == [changed.id]
    assert len(index) == 41

    removed = delete_from_catalog([products[1].id, products[2].id, "no-such-id"], config=config)
    assert removed == 2
    index.client.indices.refresh(index=config.index_alias)
    assert len(index) == 39
    assert index.get_many([products[1].id, changed.id]) == [None, changed]


def test_rejected_documents_are_reported_with_their_field(
    built: ReindexResult, subset_config: OpenSearchSettings
) -> None:
    client = make_client(subset_config)
    actions = [
        {
            "_op_type": "index",
            "_index": "it-subset",
            "_id": "bad-price",
            "_source": {"id": "bad-price", "price": "cheap"},
        },
        {
            "_op_type": "index",
            "_index": "it-subset",
            "_id": "bad-field",
            "_source": {"id": "bad-field", "weight": 3},
        },
    ]
    report = run_bulk(client, actions, options=bulk_options(subset_config))
    assert report.succeeded == 0
    failures = {failure.product_id: failure for failure in report.failures}
    assert failures["bad-price"].status == 400
    assert failures["bad-price"].field == "price"
    assert failures["bad-field"].field == "weight"


def test_no_search_fails_while_a_reindex_swaps_the_alias(
    make_config: Any,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> None:
    config: OpenSearchSettings = make_config("it-swap")
    template = TextTemplate(integration_settings.index.text_template)
    first = reindex_catalog(
        catalog_subset[:60],
        config=config,
        embedder=tiny_embedder,
        template=template,
        source="first 60",
        progress=False,
    )
    index = open_opensearch_index(config, expected=tiny_embedder.identity)
    vector = tiny_embedder.embed_query("kitchen knife")
    errors: list[BaseException] = []
    searches = 0
    done = threading.Event()

    def search_until_done() -> None:
        nonlocal searches
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline and searches < 5000:
            try:
                assert index.search_vector(vector, K)
                assert index.search_text("knife", K) is not None
            except BaseException as exc:  # every failure is the finding
                errors.append(exc)
            searches += 1

    thread = threading.Thread(target=search_until_done)
    thread.start()
    try:
        second = reindex_catalog(
            catalog_subset[:80],
            config=config,
            embedder=tiny_embedder,
            template=template,
            source="first 80",
            progress=False,
        )
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert searches > 0
    assert second.replaced == [first.index]
    assert second.deleted == [first.index]
    assert alias_targets(index.client, "it-swap") == [second.index]

    kept = make_config("it-swap", reindex_grace_s=3600.0)
    third = reindex_catalog(
        catalog_subset[:50],
        config=kept,
        embedder=tiny_embedder,
        template=template,
        source="first 50",
        progress=False,
    )
    assert third.deleted == []
    retired = versioned_indexes(index.client, "it-swap")[second.index]
    assert "retired_at" in retired
    assert prune_retired(index.client, "it-swap", grace_s=3600.0) == []
    now = float(retired["retired_at"]) + 3601
    assert prune_retired(index.client, "it-swap", grace_s=3600.0, now=now) == [second.index]
    assert len(index) == 50


def test_server_hybrid_without_neural_search_names_the_plugin(
    index: OpenSearchIndex, tiny_embedder: Embedder
) -> None:
    """The plain dev node has k-NN but not neural-search: no pipeline, a clear error."""
    server = OpenSearchIndex(
        index.client,
        alias=index.alias,
        meta=index.meta,
        ef_search=index.ef_search,
        bulk=index.bulk,
        hybrid=ServerHybrid(pipeline="it-no-hybrid", normalization="min_max"),
    )
    vector = tiny_embedder.embed_query("gym bag")

    with pytest.raises(StoreError, match="neural-search plugin"):
        server.search_hybrid("gym bag", vector, K, depth=50, weights=(1.0, 1.0))
