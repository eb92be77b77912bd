"""FaissStore: exact and HNSW search, filters inside retrieval, updates, save and load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pytest

from indexer.catalog import Product
from indexer.stores.base import (
    Hit,
    ModelIdentity,
    SearchFilter,
    StoreError,
    StoreMismatchError,
    VectorStore,
)
from indexer.stores.faiss_store import FaissStore, IndexKind

DIM = 16
IDENTITY = ModelIdentity(model_id="test/model-a", weights_sha256="a1" * 32, dimension=DIM)
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "")
CATEGORY_PATHS = (
    ("Home", "Kitchen", "Knives"),
    ("Home", "Kitchen", "Pans"),
    ("Home", "Bath"),
    ("Sports", "Outdoor", "Tents"),
    ("Sports", "Fitness"),
    (),
)

Matrix = npt.NDArray[np.float32]


def make_products(n: int, *, seed: int = 0) -> list[Product]:
    rng = np.random.default_rng(seed)
    products = []
    for i in range(n):
        price = None if i % 7 == 0 else round(float(rng.uniform(1, 200)), 2)
        products.append(
            Product(
                id=f"p{i:04d}",
                title=f"product {i}",
                brand=BRANDS[int(rng.integers(len(BRANDS)))],
                category=CATEGORY_PATHS[int(rng.integers(len(CATEGORY_PATHS)))],
                price=price,
            )
        )
    return products


def make_vectors(n: int, *, seed: int = 0, dim: int = DIM) -> Matrix:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def unit(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return np.asarray(matrix / norms, dtype=np.float32)


def brute_force(
    products: list[Product],
    vectors: Matrix,
    query: Matrix,
    k: int,
    search_filter: SearchFilter | None = None,
) -> list[tuple[str, float]]:
    scores = unit(vectors) @ unit(query)
    ranked = sorted(range(len(products)), key=lambda row: (-scores[row], products[row].id))
    allowed = [
        row for row in ranked if search_filter is None or search_filter.matches(products[row])
    ]
    return [(products[row].id, float(scores[row])) for row in allowed[:k]]


def ids(hits: list[Hit]) -> list[str]:
    return [hit.product_id for hit in hits]


def build(n: int = 200, **options: Any) -> tuple[FaissStore, list[Product], Matrix]:
    products = make_products(n)
    vectors = make_vectors(n)
    return FaissStore.build(IDENTITY, products, vectors, **options), products, vectors


def test_satisfies_the_vector_store_protocol() -> None:
    assert isinstance(FaissStore(IDENTITY), VectorStore)


def test_flat_search_equals_brute_force() -> None:
    store, products, vectors = build(200)
    assert store.kind is IndexKind.FLAT
    assert store.description == "IDMap2,Flat"
    assert len(store) == 200
    for query in make_vectors(5, seed=1):
        hits = store.search(query, 10)
        expected = brute_force(products, vectors, query, 10)
        assert ids(hits) == [pid for pid, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


def test_search_accepts_a_one_row_matrix_and_caps_k() -> None:
    store, _, _ = build(5)
    query = make_vectors(1, seed=1)
    assert ids(store.search(query, 3)) == ids(store.search(query[0], 3))
    assert len(store.search(query[0], 50)) == 5


def test_empty_store_returns_nothing() -> None:
    assert FaissStore(IDENTITY).search(make_vectors(1)[0], 5) == []


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (make_vectors(3, dim=DIM + 1), "dimension 17.*expects dimension 16"),
        (make_vectors(2), r"shape \(3, 16\)"),
        (np.where(np.arange(DIM) == 3, np.nan, make_vectors(3)).astype(np.float32), "p0000"),
        (np.vstack([make_vectors(2), np.full((1, DIM), np.inf)]), "'p0002'.*non-finite"),
        (
            np.vstack([make_vectors(2), np.zeros((1, DIM))]),
            "'p0002'.*norm 0.0 and cannot be normalized",
        ),
    ],
)
def test_upsert_refuses_bad_vectors(vectors: Matrix, message: str) -> None:
    store = FaissStore(IDENTITY)
    with pytest.raises(StoreError, match=message):
        store.upsert(make_products(3), vectors)
    assert len(store) == 0


def test_search_refuses_bad_queries() -> None:
    store, _, _ = build(10)
    with pytest.raises(StoreError, match=r"dimension 8.*expects dimension 16"):
        store.search(np.ones(8, dtype=np.float32), 3)
    with pytest.raises(StoreError, match="non-finite"):
        store.search(np.full(DIM, np.nan, dtype=np.float32), 3)
    with pytest.raises(StoreError, match="shape"):
        store.search(make_vectors(2), 3)
    with pytest.raises(ValueError, match="k must be positive"):
        store.search(make_vectors(1)[0], 0)


def test_upsert_replaces_a_vector_without_rebuilding() -> None:
    store, products, _ = build(100)
    index = store._index
    query = make_vectors(1, seed=7)[0]
    assert ids(store.search(query, 1)) != ["p0050"]

    store.upsert([products[50]], query[None, :] * 3.0)
    assert store._index is index
    assert index.ntotal == 100
    assert len(store) == 100
    hit = store.search(query, 1)[0]
    assert hit.product_id == "p0050"
    assert hit.score == pytest.approx(1.0, abs=1e-5)

    new = Product(id="new", title="new")
    store.upsert([new], make_vectors(1, seed=9))
    assert store._index is index
    assert index.ntotal == 101
    assert len(store) == 101
    assert "new" in store


def test_upsert_with_a_repeated_id_keeps_the_last_vector() -> None:
    store = FaissStore(IDENTITY)
    product = make_products(1)[0]
    vectors = make_vectors(2)
    store.upsert([product, product], vectors)
    assert len(store) == 1
    assert store.search(vectors[1], 1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_delete_removes_products() -> None:
    store, _, vectors = build(50)
    assert store.delete(["p0003", "p0004", "missing", "p0003"]) == 2
    assert len(store) == 48
    assert store._index.ntotal == 48
    assert store.delete(["p0003"]) == 0
    hits = store.search(vectors[3], 50)
    assert len(hits) == 48
    assert not {"p0003", "p0004"} & set(ids(hits))


# ---------------------------------------------------------------- save and load


def test_save_load_round_trip(tmp_path: Path) -> None:
    store, _, _ = build(120)
    store.delete(["p0001"])
    store.save(tmp_path / "vectors")
    loaded = FaissStore.load(tmp_path / "vectors", expected=IDENTITY)
    assert len(loaded) == len(store) == 119
    assert loaded.kind is store.kind
    assert loaded.identity == IDENTITY
    search_filter = SearchFilter(categories=("kitchen",), price_max=150)
    for query in make_vectors(5, seed=3):
        assert loaded.search(query, 10) == store.search(query, 10)
        assert loaded.search(query, 10, search_filter) == store.search(query, 10, search_filter)


def test_manifest_records_model_and_index(tmp_path: Path) -> None:
    store, _, _ = build(30)
    store.save(tmp_path / "vectors")
    manifest = json.loads((tmp_path / "vectors" / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["model_id"] == IDENTITY.model_id
    assert manifest["weights_sha256"] == IDENTITY.weights_sha256
    assert manifest["dimension"] == DIM
    assert manifest["count"] == 30
    assert manifest["index_kind"] == "flat"
    assert manifest["index_description"] == "IDMap2,Flat"
    assert manifest["metric"] == "inner_product"
    assert manifest["built_at"].endswith("+00:00")
    assert manifest["files"]["id_map"] == "ids.json"
    for name in manifest["files"].values():
        assert (tmp_path / "vectors" / name).is_file()
    assert FaissStore.read_manifest(tmp_path / "vectors") == manifest


def test_load_logs_the_index_description(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    build(10)[0].save(tmp_path / "vectors")
    with caplog.at_level("INFO", logger="indexer.stores.faiss_store"):
        FaissStore.load(tmp_path / "vectors")
    assert "IDMap2,Flat" in caplog.text


@pytest.mark.parametrize(
    ("other", "needles"),
    [
        (
            ModelIdentity("test/model-b", "a1" * 32, DIM),
            ["test/model-a", "test/model-b", "a1a1a1a1a1a1", "shoprank index"],
        ),
        (
            ModelIdentity("test/model-a", "b2" * 32, DIM),
            ["test/model-a", "a1a1a1a1a1a1", "b2b2b2b2b2b2", "shoprank index"],
        ),
        (
            ModelIdentity("test/model-a", "a1" * 32, 32),
            ["dimension 16", "dimension 32", "shoprank index"],
        ),
    ],
)
def test_load_refuses_another_model(
    tmp_path: Path, other: ModelIdentity, needles: list[str]
) -> None:
    build(10)[0].save(tmp_path / "vectors")
    with pytest.raises(StoreMismatchError) as caught:
        FaissStore.load(tmp_path / "vectors", expected=other)
    for needle in needles:
        assert needle in str(caught.value)
    assert str(tmp_path / "vectors") in str(caught.value)


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no FAISS index") as caught:
        FaissStore.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(caught.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"manifest\.json is missing"):
        FaissStore.load(tmp_path / "empty")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("manifest.json", b"{not json", "manifest.json"),
        ("manifest.json", b'{"format_version": 99}', "format version 99"),
        ("manifest.json", b'{"format_version": 1}', "malformed"),
        ("index.faiss", b"garbage", "index.faiss"),
        ("ids.json", b"[]", "ids.json"),
        ("filters.npz", b"garbage", "filters.npz"),
    ],
)
def test_load_corrupt_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    build(10)[0].save(tmp_path / "vectors")
    (tmp_path / "vectors" / name).write_bytes(content)
    with pytest.raises(StoreError, match=message):
        FaissStore.load(tmp_path / "vectors")


def test_load_detects_a_missing_file(tmp_path: Path) -> None:
    build(10)[0].save(tmp_path / "vectors")
    (tmp_path / "vectors" / "ids.json").unlink()
    with pytest.raises(StoreError, match=r"ids\.json"):
        FaissStore.load(tmp_path / "vectors")


def test_failed_save_keeps_the_previous_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "vectors"
    store, _, _ = build(20)
    store.save(target)
    store.upsert([Product(id="extra")], make_vectors(1, seed=5))

    def fail(index: Any, path: str) -> None:
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", fail)
    with pytest.raises(StoreError, match="disk full"):
        store.save(target)
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors"]
    assert len(FaissStore.load(target)) == 20


# ---------------------------------------------------------------- HNSW

HNSW_OPTIONS: dict[str, Any] = {"hnsw_threshold": 50, "hnsw_m": 16, "ef_search": 64}


def test_hnsw_recall_against_exact() -> None:
    store, products, vectors = build(300, **HNSW_OPTIONS)
    assert store.kind is IndexKind.HNSW
    assert store.description == "IDMap2,HNSW16,Flat"
    queries = make_vectors(50, seed=11)
    found = 0
    for query in queries:
        exact = {pid for pid, _ in brute_force(products, vectors, query, 10)}
        found += len(exact & set(ids(store.search(query, 10))))
    assert found / (10 * len(queries)) >= 0.95


def test_hnsw_upsert_is_incremental_and_tombstones_old_vectors() -> None:
    store, products, _ = build(300, **HNSW_OPTIONS)
    index = store._index
    query = make_vectors(1, seed=13)[0]
    store.upsert([products[7]], query[None, :])
    store.upsert([Product(id="new")], make_vectors(1, seed=14))
    assert store._index is index
    assert index.ntotal == 302
    assert store.tombstones == 1
    assert len(store) == 301
    hits = store.search(query, 301)
    assert ids(hits)[0] == "p0007"
    assert ids(hits).count("p0007") == 1
    assert len(hits) == 301


def test_hnsw_deleted_products_are_never_returned() -> None:
    store, products, vectors = build(300, **HNSW_OPTIONS)
    deleted = [p.id for p in products[::10]]
    assert store.delete(deleted) == 30
    assert store.tombstones == 30
    assert len(store) == 270
    for row in range(0, 300, 10):
        hits = store.search(vectors[row], 10)
        assert len(hits) == 10
        assert not set(deleted) & set(ids(hits))
    assert not set(deleted) & set(ids(store.search(vectors[0], 300)))


def test_hnsw_save_compacts_above_twenty_percent_tombstones(tmp_path: Path) -> None:
    store, products, vectors = build(300, **HNSW_OPTIONS)
    store.delete([p.id for p in products[:40]])  # 13%: kept as tombstones
    store.save(tmp_path / "a")
    assert store.tombstones == 40
    loaded = FaissStore.load(tmp_path / "a")
    assert loaded.tombstones == 40
    assert not {p.id for p in products[:40]} & set(ids(loaded.search(vectors[0], 300)))

    store.delete([p.id for p in products[40:70]])  # 23%: compacted on save
    store.save(tmp_path / "b")
    assert store.tombstones == 0
    assert store._index.ntotal == 230
    manifest = FaissStore.read_manifest(tmp_path / "b")
    assert (manifest["count"], manifest["slots"], manifest["tombstones"]) == (230, 230, 0)
    loaded = FaissStore.load(tmp_path / "b")
    for query in make_vectors(5, seed=17):
        assert ids(loaded.search(query, 10)) == ids(store.search(query, 10))
    assert ids(store.search(vectors[100], 1)) == ["p0100"]


def test_flat_becomes_hnsw_when_saved_past_the_threshold(tmp_path: Path) -> None:
    store, _, _ = build(40, **HNSW_OPTIONS)
    assert store.kind is IndexKind.FLAT
    store.upsert(make_products(60)[40:], make_vectors(60)[40:])
    assert store.kind is IndexKind.FLAT
    store.save(tmp_path / "vectors")
    assert store.description == "IDMap2,HNSW16,Flat"
    loaded = FaissStore.load(tmp_path / "vectors")
    assert loaded.kind is IndexKind.HNSW
    assert FaissStore.read_manifest(tmp_path / "vectors")["index_description"] == (
        "IDMap2,HNSW16,Flat"
    )
    assert ids(loaded.search(make_vectors(60)[45], 1)) == ["p0045"]


# ---------------------------------------------------------------- filters


def rare_brand_catalog(n: int = 500, rare: int = 12) -> tuple[list[Product], Matrix]:
    rare_rows = {5 + 41 * j for j in range(rare)}
    products = [
        p.model_copy(
            update={"brand": ("RARE", "Rare", "rare")[i % 3] if i in rare_rows else "Acme"}
        )
        for i, p in enumerate(make_products(n))
    ]
    assert sum(p.brand.casefold() == "rare" for p in products) == rare
    return products, make_vectors(n)


STORE_VARIANTS: dict[str, dict[str, Any]] = {
    "flat": {},
    "hnsw-exact": HNSW_OPTIONS,
    "hnsw-graph": {**HNSW_OPTIONS, "exact_filter_max_ids": 0, "exact_filter_fraction": 0.0},
}


def variant_store(name: str, products: list[Product], vectors: Matrix) -> FaissStore:
    options = dict(STORE_VARIANTS[name])
    exact_ids = options.pop("exact_filter_max_ids", None)
    exact_fraction = options.pop("exact_filter_fraction", None)
    store = FaissStore.build(IDENTITY, products, vectors, **options)
    if exact_ids is not None:
        store.exact_filter_max_ids = exact_ids
        store.exact_filter_fraction = exact_fraction
    return store


@pytest.mark.parametrize("variant", sorted(STORE_VARIANTS))
@pytest.mark.parametrize("k", [10, 20])
def test_selective_filter_returns_k_when_k_exist(variant: str, k: int) -> None:
    products, vectors = rare_brand_catalog()
    store = variant_store(variant, products, vectors)
    search_filter = SearchFilter(brands=("rare",))
    for query in make_vectors(5, seed=19):
        hits = store.search(query, k, search_filter)
        assert len(hits) == min(k, 12)
        by_id = {p.id: p for p in products}
        assert all(search_filter.matches(by_id[h.product_id]) for h in hits)
        expected = brute_force(products, vectors, query, k, search_filter)
        assert ids(hits) == [pid for pid, _ in expected]


def test_hnsw_graph_search_falls_back_to_exact_when_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    products, vectors = rare_brand_catalog()
    store = variant_store("hnsw-graph", products, vectors)
    monkeypatch.setattr(store, "_faiss_search", lambda *args, **kwargs: [])
    query = make_vectors(1, seed=23)[0]
    search_filter = SearchFilter(brands=("Acme",))
    hits = store.search(query, 10, search_filter)
    assert ids(hits) == [pid for pid, _ in brute_force(products, vectors, query, 10, search_filter)]
    assert len(store.search(query, 10)) == 10


FILTERS = [
    SearchFilter(brands=("acme",)),
    SearchFilter(brands=("GLOBEX", "initech")),
    SearchFilter(brands=("",)),
    SearchFilter(brands=("no such brand",)),
    SearchFilter(categories=("kitchen",)),
    SearchFilter(categories=("HOME",)),
    SearchFilter(categories=("tents", "fitness")),
    SearchFilter(categories=("nowhere",)),
    SearchFilter(price_min=50),
    SearchFilter(price_max=20.5),
    SearchFilter(price_min=10, price_max=60),
    SearchFilter(brands=("acme", "umbrella"), categories=("sports",), price_max=150),
    SearchFilter(),
]


@pytest.mark.parametrize("variant", sorted(STORE_VARIANTS))
def test_filters_equal_search_filter_matches(variant: str) -> None:
    products = make_products(300, seed=29)
    vectors = make_vectors(300, seed=29)
    store = variant_store(variant, products, vectors)
    store.delete(["p0002", "p0003"])
    live = [p for p in products if p.id not in {"p0002", "p0003"}]
    query = make_vectors(1, seed=31)[0]
    for search_filter in FILTERS:
        expected = {p.id for p in live if search_filter.matches(p)}
        assert set(ids(store.search(query, 300, search_filter))) == expected, search_filter


def test_filters_follow_upserted_metadata() -> None:
    products, vectors = rare_brand_catalog(100, rare=3)
    store = FaissStore.build(IDENTITY, products, vectors)
    store.upsert([products[0].model_copy(update={"brand": "Rare", "price": None})], vectors[:1])
    hits = store.search(vectors[0], 10, SearchFilter(brands=("rare",)))
    assert "p0000" in ids(hits)
    assert len(hits) == 4
    priced = ids(store.search(vectors[0], 100, SearchFilter(price_min=0)))
    assert "p0000" not in priced
    assert len(priced) == sum(p.price is not None for p in products[1:])


def test_load_accepts_an_export_of_the_model_that_built_it(tmp_path: Path) -> None:
    build(10)[0].save(tmp_path / "vectors")
    int8 = ModelIdentity("test/model-a-onnx-qint8", "c3" * 32, DIM, lineage=("a1" * 32,))

    loaded = FaissStore.load(tmp_path / "vectors", expected=int8)

    assert loaded.identity == IDENTITY
    unrelated = ModelIdentity("test/model-a-onnx-qint8", "c3" * 32, DIM, lineage=("d4" * 32,))
    with pytest.raises(StoreMismatchError):
        FaissStore.load(tmp_path / "vectors", expected=unrelated)


def test_an_index_built_by_an_export_opens_with_its_source(tmp_path: Path) -> None:
    int8 = ModelIdentity("test/model-a-onnx-qint8", "c3" * 32, DIM, lineage=("e5" * 32, "a1" * 32))
    products = make_products(5)
    FaissStore.build(int8, products, make_vectors(5)).save(tmp_path / "vectors")

    loaded = FaissStore.load(tmp_path / "vectors", expected=IDENTITY)

    assert loaded.identity == int8
    assert IDENTITY.same_model_as(int8)
    assert not IDENTITY.compatible_with(ModelIdentity("x", "c3" * 32, 8, lineage=("a1" * 32,)))
