"""Product documents by id in one SQLite file, stored as the Product's JSON.

One connection per store (``check_same_thread=False``) behind a lock, so the HTTP server's
threads can share it. :meth:`SqliteProductStore.build` writes a fresh file beside the target
and moves it into place; readers keep the old file until they reopen.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

from pydantic import ValidationError

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


class SqliteProductStore(SqliteFile):
    """A :class:`~indexer.stores.base.ProductStore` in one SQLite file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, schema=_SCHEMA, what="a product store")

    @classmethod
    def open(cls, path: Path) -> Self:
        """Open the store at ``path``, creating an empty one if the file is missing."""
        return cls(path)

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
            with self._lock:
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    documents.update(
                        self._connection.execute(
                            "SELECT product_id, document FROM products "
                            f"WHERE product_id IN ({', '.join('?' * len(chunk))})",
                            chunk,
                        ).fetchall()
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"product lookup in {self.path} failed: {exc}") from exc
        parsed = {pid: self._parse(pid, document) for pid, document in documents.items()}
        return [parsed.get(product_id) for product_id in product_ids]

    def get(self, product_id: str) -> Product | None:
        """One product, or None."""
        return self.get_many([product_id])[0]

    def iter_products(self) -> Iterator[Product]:
        """Every product, in insertion order; reads in pages, so writes may interleave."""
        last_rowid = -1
        while True:
            try:
                with self._lock:
                    rows = self._connection.execute(
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
