"""Product documents by id in one SQLite file, stored as the Product's JSON.

Writes go through one connection per store (``check_same_thread=False``) behind a lock;
reads through each thread's own read-only connection, so the HTTP server's threads read in
parallel (see :mod:`indexer.stores.sqlite_file`). :meth:`SqliteProductStore.build` writes a
fresh file beside the target and moves it into place; readers keep the old file until they
reopen.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

from pydantic import ValidationError

from indexer.caching import TextCache
from indexer.catalog import Product
from indexer.stores.base import StoreError
from indexer.stores.sqlite_file import SqliteFile, building

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    rowid INTEGER PRIMARY KEY,
    product_id TEXT NOT NULL UNIQUE,
    document TEXT NOT NULL
);
"""
_CHUNK = 500  # stays under SQLite's oldest limit of 999 bound parameters
_PAGE = 1_000
PARSED_CACHE_SIZE = 20_000
"""Documents whose parsed Product :meth:`SqliteProductStore.get_many` keeps (LRU, keyed by
the stored JSON, so an upserted product is parsed afresh)."""


class SqliteProductStore(SqliteFile):
    """A :class:`~indexer.stores.base.ProductStore` in one SQLite file."""

    def __init__(self, path: Path, *, parsed_cache_size: int = PARSED_CACHE_SIZE) -> None:
        super().__init__(path, schema=_SCHEMA, what="a product store")
        self._parsed: TextCache[Product] = TextCache(parsed_cache_size)

    @classmethod
    def open(cls, path: Path, *, parsed_cache_size: int = PARSED_CACHE_SIZE) -> Self:
        """Open the store at ``path``, creating an empty one if the file is missing;
        ``parsed_cache_size``: documents whose parsed products are kept (0: none)."""
        return cls(path, parsed_cache_size=parsed_cache_size)

    @classmethod
    def build(cls, path: Path, products: Sequence[Product]) -> Self:
        """Write a fresh store of ``products`` to a temp file, then move it onto ``path``."""
        with building(path, cls) as store:
            store.upsert(products)
        logger.info("built product store of %d products at %s", len(products), path)
        return cls(path)

    def upsert(self, products: Sequence[Product]) -> None:
        """Insert or replace products, in one transaction."""
        rows = [(product.id, product.model_dump_json()) for product in products]
        try:
            with self._write() as connection:
                connection.executemany(
                    "INSERT INTO products (product_id, document) VALUES (?, ?) "
                    "ON CONFLICT (product_id) DO UPDATE SET document = excluded.document",
                    rows,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"product upsert into {self.path} failed: {exc}") from exc

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products, in one transaction; returns how many were present."""
        unique = list(dict.fromkeys(product_ids))
        removed = 0
        try:
            with self._write() as connection:
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    cursor = connection.execute(
                        f"DELETE FROM products WHERE product_id IN ({', '.join('?' * len(chunk))})",
                        chunk,
                    )
                    removed += cursor.rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"product delete from {self.path} failed: {exc}") from exc
        return removed

    def _parse(self, product_id: str, document: str) -> Product:
        try:
            return Product.model_validate_json(document)
        except ValidationError as exc:
            raise StoreError(
                f"product {product_id!r} in {self.path} does not parse: {exc}"
            ) from exc

    def get_many(self, product_ids: Sequence[str]) -> list[Product | None]:
        """Products in the order asked, None where an id is unknown."""
        unique = list(dict.fromkeys(product_ids))
        documents: dict[str, str] = {}
        try:
            with self._reading() as connection:
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    documents.update(
                        connection.execute(
                            "SELECT product_id, document FROM products "
                            f"WHERE product_id IN ({', '.join('?' * len(chunk))})",
                            chunk,
                        ).fetchall()
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"product lookup in {self.path} failed: {exc}") from exc
        product_id_of = {document: pid for pid, document in documents.items()}
        products = self._parsed.get_many(
            list(documents.values()),
            lambda missing: [self._parse(product_id_of[d], d) for d in missing],
        )
        parsed = dict(zip(documents, products, strict=True))
        return [parsed.get(product_id) for product_id in product_ids]

    def get(self, product_id: str) -> Product | None:
        """One product, or None."""
        return self.get_many([product_id])[0]

    def iter_products(self) -> Iterator[Product]:
        """Every product, in insertion order; reads in pages, so writes may interleave."""
        last_rowid = -1
        while True:
            try:
                with self._reading() as connection:
                    rows = connection.execute(
                        "SELECT rowid, product_id, document FROM products WHERE rowid > ? "
                        "ORDER BY rowid LIMIT ?",
                        (last_rowid, _PAGE),
                    ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"reading products from {self.path} failed: {exc}") from exc
            if not rows:
                return
            for rowid, product_id, document in rows:
                last_rowid = rowid
                yield self._parse(product_id, document)
