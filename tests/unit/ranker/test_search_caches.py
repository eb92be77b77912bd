"""The per-request work a search keeps between requests: query vectors, products' rendered
texts, parsed product documents and the lexical features' words. Each gives what the
uncached path gives, and notices a changed input."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from indexer.caching import TextCache
from indexer.catalog import Product, TextTemplate
from indexer.stores.product_store import SqliteProductStore
from ranker.api.inference import embed_query
from ranker.api.schedulers import ModelSchedulers
from ranker.backends.base import FloatArray
from ranker.batching import SchedulerConfig
from ranker.embedder import Embedder
from ranker.lexical_features import DocumentWords, lexical_features
from ranker.product_texts import ProductTexts

TEMPLATE = TextTemplate("{title}\nBrand: {brand}\n{bullet_points}")
PRODUCTS = [
    Product(id="a", title="Chef  knife", brand="Acme", bullet_points=("Steel", "8 inch")),
    Product(id="b", title="Baking mat", attributes={"size": "L"}),
    Product(id="c", title="Tent without poles", brand="Camp"),
]


@pytest.fixture(scope="module")
def embedder(tiny_embedder_dir: Path) -> Embedder:
    return Embedder.load(tiny_embedder_dir, backend="torch", query_cache_size=2)


def test_query_vectors_are_kept_read_only_and_equal_the_embedded_ones(
    embedder: Embedder,
) -> None:
    embedder.query_cache.clear()
    expected = embedder.embed(["steel knife"])[0]
    first = embedder.embed_query("steel knife")
    again = embedder.embed_query("steel knife")
    assert again is first
    np.testing.assert_array_equal(first, expected)
    assert not first.flags.writeable
    assert (embedder.query_cache.hits, embedder.query_cache.misses) == (1, 1)
    embedder.embed_query("mat")
    embedder.embed_query("tent")
    assert embedder.query_cache.get("steel knife") is None  # evicted: 2 kept


@pytest.mark.parametrize("batching", [True, False])
def test_the_routes_query_embedding_uses_and_fills_the_cache(
    embedder: Embedder, batching: bool
) -> None:
    embedder.query_cache.clear()
    schedulers = ModelSchedulers(SchedulerConfig() if batching else None)
    schedulers.serve((embedder,))

    async def twice() -> tuple[FloatArray, FloatArray, dict[str, float]]:
        first = await embed_query(embedder, "green tent", schedulers=schedulers)
        again = await embed_query(embedder, "green tent", schedulers=schedulers)
        return first.vectors, again.vectors, again.timings_ms

    try:
        first, again, timings = asyncio.run(twice())
    finally:
        schedulers.close()
    assert first.shape == again.shape == (1, embedder.dimension)
    np.testing.assert_allclose(first[0], embedder.embed(["green tent"])[0], atol=1e-6)
    np.testing.assert_array_equal(again, first)
    assert set(timings) == {"cached"}


def test_product_texts_equal_the_templates_and_follow_a_changed_product() -> None:
    texts = ProductTexts(TEMPLATE, max_size=2)
    expected = [TEMPLATE.render(product) for product in PRODUCTS]
    assert texts.texts(PRODUCTS) == expected
    assert texts.texts(PRODUCTS[1:]) == expected[1:]
    assert len(texts) == 2
    changed = PRODUCTS[1].model_copy(update={"title": "Silicone baking mat"})
    assert texts.texts([changed]) == [TEMPLATE.render(changed)] != [expected[1]]
    same_content = Product.model_validate_json(PRODUCTS[2].model_dump_json())
    assert texts.texts([same_content]) == [expected[2]]
    assert ProductTexts(TEMPLATE, max_size=0).texts(PRODUCTS) == expected


def test_parsed_products_are_reused_until_the_document_changes(tmp_path: Path) -> None:
    store = SqliteProductStore.build(tmp_path / "products.sqlite", PRODUCTS)
    first = store.get_many(["a", "b", "zzz"])
    again = store.get_many(["b", "a"])
    assert first[2] is None
    assert again[0] is first[1]
    assert again[1] is first[0]
    assert first[:2] == PRODUCTS[:2]
    store.upsert([PRODUCTS[0].model_copy(update={"title": "Bread knife"})])
    updated = store.get("a")
    assert updated is not None
    assert updated.title == "Bread knife"
    uncached = SqliteProductStore.open(tmp_path / "products.sqlite", parsed_cache_size=0)
    assert uncached.get_many(["a", "b"]) == [updated, PRODUCTS[1]]


def test_lexical_features_from_cached_words_equal_the_uncached() -> None:
    documents = [TEMPLATE.render(product) for product in PRODUCTS] * 2
    cache: TextCache[DocumentWords] = TextCache(10)
    for query in ("tent without poles", "steel chef knives", "mat"):
        np.testing.assert_array_equal(
            lexical_features(query, documents, cache=cache), lexical_features(query, documents)
        )
    assert cache.hits > 0
    assert len(cache) == len(PRODUCTS)
