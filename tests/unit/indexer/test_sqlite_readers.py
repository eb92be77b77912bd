"""Per-thread read connections of the SQLite stores: the same answers as one shared
connection, from many threads at once, and the same view of writes and replaced files."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from indexer.catalog import Product
from indexer.stores.lexical import SqliteBm25Index
from indexer.stores.product_store import SqliteProductStore

T = TypeVar("T")

WORDS = ("steel", "knife", "mat", "silicone", "tent", "bottle", "green", "clear", "case")
CATALOG = [
    Product(
        id=f"p{i:03d}",
        title=" ".join(WORDS[(i + j) % len(WORDS)] for j in range(1 + i % 4)),
        brand=("Acme", "Globex", "Initech")[i % 3],
        description=" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(i % 9)),
        category=("Home", ("Kitchen", "Outdoor")[i % 2]),
        price=float(i),
    )
    for i in range(120)
]
QUERIES = [*WORDS, "steel knife", "green tent", "silicone case", "clear bottle mat"]


def in_threads(work: Callable[[int], T], *, threads: int = 8, calls: int = 64) -> list[T]:
    """``work(i)`` for ``calls`` values of i, from ``threads`` threads started together."""
    start = threading.Barrier(threads)

    def first_wait(i: int) -> T:
        if i < threads:
            start.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(first_wait, range(calls)))


@pytest.fixture
def lexical(tmp_path: Path) -> SqliteBm25Index:
    return SqliteBm25Index.build(tmp_path / "bm25.sqlite", CATALOG)


def test_concurrent_searches_match_one_thread_and_use_own_connections(
    lexical: SqliteBm25Index,
) -> None:
    expected = {query: lexical.search(query, 20) for query in QUERIES}
    assert all(expected[query] for query in QUERIES)
    found = in_threads(lambda i: lexical.search(QUERIES[i % len(QUERIES)], 20))
    assert found == [expected[QUERIES[i % len(QUERIES)]] for i in range(64)]
    assert len(lexical._readers) > 1  # one read-only connection per reading thread


def test_concurrent_product_fetches_match_one_thread(tmp_path: Path) -> None:
    store = SqliteProductStore.build(tmp_path / "products.sqlite", CATALOG)
    ids = [[f"p{(i * 13 + j) % 130:03d}" for j in range(50)] for i in range(16)]
    expected = [store.get_many(batch) for batch in ids]
    assert any(None in batch for batch in expected)  # ids past p119 are unknown
    found = in_threads(lambda i: store.get_many(ids[i % 16]))
    assert found == [expected[i % 16] for i in range(64)]


def test_readers_see_the_writers_commits(lexical: SqliteBm25Index) -> None:
    in_threads(lambda i: lexical.search("knife", 5))  # every thread opens its reader
    lexical.upsert([Product(id="new", title="zeppelin")])
    assert [hit.product_id for hit in in_threads(lambda i: lexical.search("zeppelin", 5)[0])] == [
        "new"
    ] * 64
    lexical.delete(["new"])
    assert in_threads(lambda i: lexical.search("zeppelin", 5)) == [[]] * 64


def test_readers_cannot_write(lexical: SqliteBm25Index) -> None:
    with lexical._reading() as connection, pytest.raises(sqlite3.OperationalError):
        connection.execute("DELETE FROM products")
    assert len(lexical) == len(CATALOG)


def test_a_replaced_file_is_still_read_from_the_file_opened(tmp_path: Path) -> None:
    path = tmp_path / "bm25.sqlite"
    opened = SqliteBm25Index.build(path, CATALOG[:10])
    SqliteBm25Index.build(path, [Product(id="other", title="zeppelin")]).close()
    # threads that had no reader yet read the old file too, as the shared connection does
    assert in_threads(lambda i: opened.search("zeppelin", 5)) == [[]] * 64
    assert in_threads(lambda i: len(opened)) == [10] * 64
    with SqliteBm25Index.open(path) as reopened:
        assert [hit.product_id for hit in reopened.search("zeppelin", 5)] == ["other"]


def test_close_closes_every_reader(lexical: SqliteBm25Index) -> None:
    in_threads(lambda i: lexical.search("knife", 5))
    readers = list(lexical._readers)
    lexical.close()
    for reader in readers:
        with pytest.raises(sqlite3.ProgrammingError):
            reader.execute("SELECT 1")
