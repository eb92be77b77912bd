"""The BM25 index's vocabulary: how many products use each word, kept exact by every
write, and counted once for an index written before it was kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from indexer.catalog import Product
from indexer.stores.lexical import SqliteBm25Index, WordUse

CATALOG = [
    Product(id="seat", title="Round toilet seat", brand="Acme", category=("Bath",)),
    Product(id="bowl", title="Toilet bowl cleaner", description="Cleans the BOWL."),
    Product(id="drill", title="Cordless drill", bullet_points=("18V", "Two batteries")),
]


def _words(*texts: str) -> set[str]:
    return {word for text in texts for word in text.lower().replace(".", " ").split()}


def _counted(products: list[Product]) -> dict[str, WordUse]:
    documents: dict[str, int] = {}
    named: dict[str, int] = {}
    for product in products:
        name = _words(product.title, product.brand, product.color, *product.category)
        for word in name | _words(product.description, *product.bullet_points):
            documents[word] = documents.get(word, 0) + 1
            named[word] = named.get(word, 0) + (word in name)
    return {word: WordUse(documents[word], named[word]) for word in documents}


def test_counts_the_products_using_each_word(tmp_path: Path) -> None:
    with SqliteBm25Index.open(tmp_path / "bm25.sqlite") as index:
        index.upsert(CATALOG)

        vocabulary = index.vocabulary()

    assert vocabulary == _counted(CATALOG)
    assert vocabulary["toilet"] == WordUse(documents=2, named=2)
    assert vocabulary["bowl"] == WordUse(1, 1)  # twice in one product, one product
    assert vocabulary["18v"] == WordUse(1, 0)  # a bullet point: text, not a name
    assert vocabulary["bath"] == WordUse(1, 1)  # a category names the product


def test_upserts_and_deletes_keep_it_exact(tmp_path: Path) -> None:
    renamed = CATALOG[0].model_copy(update={"title": "Garden hose", "category": ("Garden",)})
    with SqliteBm25Index.open(tmp_path / "bm25.sqlite") as index:
        index.upsert(CATALOG)
        index.upsert([renamed])
        assert index.vocabulary() == _counted([renamed, *CATALOG[1:]])
        assert index.delete(["bowl", "missing"]) == 1

        vocabulary = index.vocabulary()

    assert vocabulary == _counted([renamed, CATALOG[2]])
    assert "toilet" not in vocabulary
    assert "cleaner" not in vocabulary


def test_an_index_from_before_the_vocabulary_has_it_counted_on_open(tmp_path: Path) -> None:
    path = tmp_path / "bm25.sqlite"
    SqliteBm25Index.build(path, CATALOG).close()
    with sqlite3.connect(path) as connection:  # as an older shoprank wrote it
        connection.execute("DROP TABLE vocabulary")
        connection.execute("CREATE TABLE vocabulary (word TEXT PRIMARY KEY, documents INTEGER)")
        connection.execute("DELETE FROM meta WHERE key = 'vocabulary'")

    with SqliteBm25Index.open(path) as reopened:
        assert reopened.vocabulary() == _counted(CATALOG)
        reopened.upsert([CATALOG[0].model_copy(update={"id": "seat-2"})])
        assert reopened.vocabulary()["toilet"] == WordUse(3, 3)
    with SqliteBm25Index.open(path) as again:  # counted once, then kept
        assert again.vocabulary()["toilet"] == WordUse(3, 3)
