"""SearchFilter(product_ids=...): an allow-list applied inside retrieval, on every store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from indexer.catalog import Product
from indexer.stores.base import Hit, ModelIdentity, SearchFilter
from indexer.stores.faiss_store import FaissStore, IndexKind
from indexer.stores.lexical import SqliteBm25Index

DIM = 8
COUNT = 60
IDENTITY = ModelIdentity(model_id="test/id-filter", weights_sha256="c3" * 32, dimension=DIM)
BRANDS = ("Acme", "Globex", "Initech")

Matrix = npt.NDArray[np.float32]


def make_products() -> list[Product]:
    """Every title holds "widget", so one lexical query matches all of them."""
    return [
        Product(
            id=f"p{i:03d}",
            title=f"widget number {i}" + " widget" * (i % 5),
            brand=BRANDS[i % len(BRANDS)],
            price=None if i % 4 == 0 else float(i),
        )
        for i in range(COUNT)
    ]


PRODUCTS = make_products()
BY_ID = {product.id: product for product in PRODUCTS}
VECTORS: Matrix = np.random.default_rng(7).standard_normal((COUNT, DIM)).astype(np.float32)
QUERY: Matrix = np.random.default_rng(8).standard_normal(DIM).astype(np.float32)

SOME = frozenset(f"p{i:03d}" for i in range(0, COUNT, 2))  # 30 products
UNKNOWN = frozenset({"nope", "p999", ""})


def exact_ranking(search_filter: SearchFilter) -> list[str]:
    """Ids passing the filter, by cosine with QUERY (ties by id)."""
    units = VECTORS / np.linalg.norm(VECTORS, axis=1, keepdims=True)
    scores = units @ (QUERY / np.linalg.norm(QUERY))
    allowed = [row for row in range(COUNT) if search_filter.matches(PRODUCTS[row])]
    return [PRODUCTS[row].id for row in sorted(allowed, key=lambda r: (-scores[r], r))]


def flat_store() -> FaissStore:
    store = FaissStore.build(IDENTITY, PRODUCTS, VECTORS)
    assert store.kind is IndexKind.FLAT
    return store


def hnsw_store() -> FaissStore:
    """HNSW where a small allowed set takes the exact path (the default thresholds)."""
    store = FaissStore.build(IDENTITY, PRODUCTS, VECTORS, hnsw_threshold=10, hnsw_m=16)
    assert store.kind is IndexKind.HNSW
    return store


def hnsw_graph_store() -> FaissStore:
    """HNSW that searches the graph with the id selector whatever the allowed set's size."""
    store = FaissStore(
        IDENTITY, hnsw_threshold=10, hnsw_m=16, exact_filter_max_ids=0, exact_filter_fraction=0.0
    )
    store.upsert(PRODUCTS, VECTORS)
    store.compact()
    assert store.kind is IndexKind.HNSW
    return store


STORES: dict[str, Callable[[], FaissStore]] = {
    "flat": flat_store,
    "hnsw": hnsw_store,
    "hnsw-graph": hnsw_graph_store,
}


@pytest.fixture(params=sorted(STORES))
def faiss_store(request: pytest.FixtureRequest) -> FaissStore:
    return STORES[request.param]()


@pytest.fixture(scope="module")
def bm25(tmp_path_factory: pytest.TempPathFactory) -> SqliteBm25Index:
    return SqliteBm25Index.build(tmp_path_factory.mktemp("bm25") / "bm25.sqlite", PRODUCTS)


def ids(hits: list[Hit]) -> list[str]:
    return [hit.product_id for hit in hits]


# ------------------------------------------------------------------ SearchFilter itself


def test_product_ids_make_a_filter_non_empty() -> None:
    assert SearchFilter().is_empty
    assert SearchFilter(product_ids=None).is_empty
    assert not SearchFilter(product_ids=frozenset({"p000"})).is_empty
    assert not SearchFilter(product_ids=frozenset()).is_empty


def test_matches_honours_product_ids() -> None:
    search_filter = SearchFilter(product_ids=frozenset({"p001", "p002"}))

    assert [p.id for p in PRODUCTS if search_filter.matches(p)] == ["p001", "p002"]
    assert not any(SearchFilter(product_ids=frozenset()).matches(p) for p in PRODUCTS)
    assert all(SearchFilter().matches(p) for p in PRODUCTS)


def test_matches_combines_product_ids_with_other_constraints() -> None:
    search_filter = SearchFilter(
        product_ids=frozenset({"p001", "p002", "p003", "p004"}), brands=("acme",)
    )

    # p003 is the only Acme among them (brand = BRANDS[i % 3]); matching is case-insensitive.
    assert [p.id for p in PRODUCTS if search_filter.matches(p)] == ["p003"]


# ------------------------------------------------------------------ FaissStore


def test_faiss_returns_exactly_the_allowed_products(faiss_store: FaissStore) -> None:
    search_filter = SearchFilter(product_ids=SOME | UNKNOWN)

    hits = faiss_store.search(QUERY, k=COUNT, search_filter=search_filter)

    assert ids(hits) == exact_ranking(search_filter)
    assert set(ids(hits)) == SOME


def test_faiss_k_equal_to_the_allowed_count(faiss_store: FaissStore) -> None:
    hits = faiss_store.search(QUERY, k=len(SOME), search_filter=SearchFilter(product_ids=SOME))

    assert set(ids(hits)) == SOME


@pytest.mark.parametrize("k", [1, 5, 29])
def test_faiss_top_k_of_the_allowed_products(faiss_store: FaissStore, k: int) -> None:
    search_filter = SearchFilter(product_ids=SOME)

    hits = faiss_store.search(QUERY, k=k, search_filter=search_filter)

    assert ids(hits) == exact_ranking(search_filter)[:k]
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)


def test_faiss_a_large_allowed_set(faiss_store: FaissStore) -> None:
    # Most of the catalog, so the filter barely prunes; over 60 vectors HNSW must be exact.
    allowed = frozenset(p.id for p in PRODUCTS[5:])
    search_filter = SearchFilter(product_ids=allowed)

    hits = faiss_store.search(QUERY, k=10, search_filter=search_filter)

    assert ids(hits) == exact_ranking(search_filter)[:10]


@pytest.mark.parametrize(
    "extra",
    [
        {"brands": ("GLOBEX",)},
        {"price_min": 10.0, "price_max": 40.0},
        {"brands": ("Acme", "Initech"), "price_max": 50.0},
    ],
    ids=["brand", "price", "brand+price"],
)
def test_faiss_product_ids_combine_with_other_filters(
    faiss_store: FaissStore, extra: dict[str, object]
) -> None:
    search_filter = SearchFilter(product_ids=SOME, **extra)  # type: ignore[arg-type]
    expected = exact_ranking(search_filter)
    assert 0 < len(expected) < len(SOME)

    hits = faiss_store.search(QUERY, k=COUNT, search_filter=search_filter)

    assert ids(hits) == expected


@pytest.mark.parametrize("allowed", [frozenset(), UNKNOWN], ids=["empty", "unknown"])
def test_faiss_no_allowed_product_gives_no_hits(
    faiss_store: FaissStore, allowed: frozenset[str]
) -> None:
    assert faiss_store.search(QUERY, k=5, search_filter=SearchFilter(product_ids=allowed)) == []


def test_faiss_allowed_ids_that_conflict_with_another_filter_give_no_hits(
    faiss_store: FaissStore,
) -> None:
    # p000 and p004 have no price, so a price bound excludes them.
    search_filter = SearchFilter(product_ids=frozenset({"p000", "p004"}), price_min=0.0)

    assert faiss_store.search(QUERY, k=5, search_filter=search_filter) == []


def test_faiss_deleted_and_replaced_products(faiss_store: FaissStore) -> None:
    faiss_store.delete(["p000", "p002"])
    replacement = Product(id="p006", title="widget", brand="Umbrella", price=6.0)
    faiss_store.upsert([replacement], VECTORS[6:7] * -1.0)

    hits = faiss_store.search(QUERY, k=COUNT, search_filter=SearchFilter(product_ids=SOME))

    assert set(ids(hits)) == SOME - {"p000", "p002"}
    assert len(hits) == len(set(ids(hits)))
    umbrella = SearchFilter(product_ids=SOME, brands=("umbrella",))
    assert ids(faiss_store.search(QUERY, k=5, search_filter=umbrella)) == ["p006"]


def test_faiss_saved_and_loaded_store_honours_product_ids(
    faiss_store: FaissStore, tmp_path: Path
) -> None:
    faiss_store.save(tmp_path / "index")
    loaded = FaissStore.load(tmp_path / "index")
    search_filter = SearchFilter(product_ids=SOME)

    assert ids(loaded.search(QUERY, k=COUNT, search_filter=search_filter)) == exact_ranking(
        search_filter
    )


# ------------------------------------------------------------------ SqliteBm25Index


def test_bm25_returns_exactly_the_allowed_products(bm25: SqliteBm25Index) -> None:
    hits = bm25.search("widget", k=COUNT, search_filter=SearchFilter(product_ids=SOME | UNKNOWN))

    assert set(ids(hits)) == SOME
    assert len(hits) == len(SOME)


def test_bm25_top_k_of_the_allowed_products(bm25: SqliteBm25Index) -> None:
    everything = bm25.search("widget", k=COUNT)
    assert len(everything) == COUNT
    allowed_order = [hit.product_id for hit in everything if hit.product_id in SOME]

    hits = bm25.search("widget", k=5, search_filter=SearchFilter(product_ids=SOME))

    assert ids(hits) == allowed_order[:5]
    assert hits == [hit for hit in everything if hit.product_id in SOME][:5]


def test_bm25_allowed_products_must_still_match_the_query(bm25: SqliteBm25Index) -> None:
    search_filter = SearchFilter(product_ids=frozenset({"p001", "p002"}))

    # Only p001's title holds the token "1" ("10", "11" ... are other tokens).
    assert ids(bm25.search("1", k=COUNT, search_filter=search_filter)) == ["p001"]
    assert bm25.search("gadget", k=COUNT, search_filter=search_filter) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"brands": ("GLOBEX",)},
        {"price_min": 10.0, "price_max": 40.0},
        {"brands": ("Acme", "Initech"), "price_max": 50.0},
    ],
    ids=["brand", "price", "brand+price"],
)
def test_bm25_product_ids_combine_with_other_filters(
    bm25: SqliteBm25Index, extra: dict[str, object]
) -> None:
    search_filter = SearchFilter(product_ids=SOME, **extra)  # type: ignore[arg-type]
    expected = {p.id for p in PRODUCTS if search_filter.matches(p)}
    assert 0 < len(expected) < len(SOME)

    hits = bm25.search("widget", k=COUNT, search_filter=search_filter)

    assert set(ids(hits)) == expected


@pytest.mark.parametrize("allowed", [frozenset(), UNKNOWN], ids=["empty", "unknown"])
def test_bm25_no_allowed_product_gives_no_hits(
    bm25: SqliteBm25Index, allowed: frozenset[str]
) -> None:
    assert bm25.search("widget", k=5, search_filter=SearchFilter(product_ids=allowed)) == []


def test_bm25_many_allowed_ids(bm25: SqliteBm25Index) -> None:
    # Far more ids, brands and categories than SQLite's bound-parameter limit (32,766).
    allowed = SOME | {f"missing-{i}" for i in range(300_000)}
    brands = tuple({p.brand or "" for p in PRODUCTS} | {f"brand-{i}" for i in range(50_000)})
    search_filter = SearchFilter(product_ids=allowed, brands=brands)

    hits = bm25.search("widget", k=COUNT, search_filter=search_filter)

    assert set(ids(hits)) == {p.id for p in PRODUCTS if search_filter.matches(p)}
    assert set(ids(hits)) <= SOME


def test_bm25_ids_with_quotes_are_parameters_not_sql(tmp_path: Path) -> None:
    odd = [Product(id="a'b", title="widget"), Product(id='c"d) OR 1=1 --', title="widget")]
    with SqliteBm25Index.build(tmp_path / "odd.sqlite", [*PRODUCTS[:3], *odd]) as index:
        hits = index.search(
            "widget", k=10, search_filter=SearchFilter(product_ids=frozenset({"a'b"}))
        )

    assert ids(hits) == ["a'b"]
