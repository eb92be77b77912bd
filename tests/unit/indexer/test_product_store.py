"""SqliteProductStore: documents by id, updates, atomic builds."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from indexer.catalog import Product
from indexer.stores.base import ProductStore, StoreError
from indexer.stores.product_store import SqliteProductStore

PRODUCTS = [
    Product(
        id="B01",
        title="Chef knife",
        description="Sharp.",
        bullet_points=("Steel", "20 cm"),
        brand="Acme",
        color="Silver",
        category=("Home", "Kitchen"),
        price=29.99,
        attributes={"rating": 4.5, "prime": True, "size": None, "count": 3, "note": "é"},
    ),
    Product(id="B02", title="Baking mat"),
    Product(id="B03", title="Tent", price=150.0),
]


@pytest.fixture
def store(tmp_path: Path) -> SqliteProductStore:
    products = SqliteProductStore.open(tmp_path / "products.sqlite")
    products.upsert(PRODUCTS)
    return products


def test_satisfies_the_product_store_protocol(store: SqliteProductStore) -> None:
    assert isinstance(store, ProductStore)
    assert len(store) == 3


def test_round_trip_is_exact(store: SqliteProductStore) -> None:
    assert store.get_many(["B01", "B02", "B03"]) == PRODUCTS
    assert store.get("B01") == PRODUCTS[0]


def test_get_many_keeps_order_and_marks_unknown_ids(store: SqliteProductStore) -> None:
    got = store.get_many(["B03", "nope", "B01", "B03"])
    assert got == [PRODUCTS[2], None, PRODUCTS[0], PRODUCTS[2]]
    assert store.get_many([]) == []
    assert store.get("nope") is None


def test_get_many_handles_more_ids_than_sqlite_parameters(tmp_path: Path) -> None:
    products = [Product(id=f"p{i}") for i in range(1200)]
    store = SqliteProductStore.build(tmp_path / "products.sqlite", products)
    wanted = [f"p{i}" for i in reversed(range(1200))]
    assert [p.id if p else None for p in store.get_many(wanted)] == wanted
    assert store.delete(wanted[:1100]) == 1100
    assert len(store) == 100


def test_upsert_replaces_and_delete_removes(store: SqliteProductStore) -> None:
    store.upsert([PRODUCTS[1].model_copy(update={"title": "Silicone baking mat"})])
    assert len(store) == 3
    replaced = store.get("B02")
    assert replaced is not None
    assert replaced.title == "Silicone baking mat"
    assert [p.id for p in store.iter_products()] == ["B01", "B02", "B03"]
    assert store.delete(["B02", "B02", "missing"]) == 1
    assert store.get("B02") is None
    assert len(store) == 2
    assert store.delete(["B02"]) == 0


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "products.sqlite"
    with SqliteProductStore.open(path) as store:
        store.upsert(PRODUCTS)
    with SqliteProductStore.open(path) as reopened:
        assert list(reopened.iter_products()) == PRODUCTS


def test_build_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "products.sqlite"
    SqliteProductStore.build(path, PRODUCTS).close()
    with SqliteProductStore.build(path, PRODUCTS[:1]) as rebuilt:
        assert len(rebuilt) == 1

    def fail(self: SqliteProductStore, products: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(SqliteProductStore, "upsert", fail)
    with pytest.raises(StoreError, match="disk full"):
        SqliteProductStore.build(path, PRODUCTS)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["products.sqlite"]
    with SqliteProductStore.open(path) as kept:
        assert [p.id for p in kept.iter_products()] == ["B01"]


def test_corrupt_document_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "products.sqlite"
    SqliteProductStore.build(path, PRODUCTS).close()
    with sqlite3.connect(path) as connection:
        connection.execute(
            "UPDATE products SET document = '{\"id\": \"\"}' WHERE product_id = 'B02'"
        )
    with SqliteProductStore.open(path) as store, pytest.raises(StoreError, match="'B02'"):
        store.get_many(["B02"])


def test_shared_across_threads(store: SqliteProductStore) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(10):
                store.upsert([Product(id=f"t{worker}-{i}")])
                assert store.get(f"t{worker}-{i}") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) == 3 + 40
