"""BM25 over product text with SQLite FTS5.

Why FTS5: it ships with Python's standard library (no extra dependency or service); its ACID
transactions give incremental upsert and delete without a rebuild; it scores with Okapi
BM25 and per-column weights; and the filter tables sit in the same database, so brand,
category and price filters run in the same SQL statement as the match and apply inside
retrieval (a filtered query still returns k hits when k products match).

Schema: ``products`` (rowid, product_id, casefolded brand, price), ``product_categories``
(one casefolded category per row, any level of the path) and the FTS5 table
``product_text`` sharing the products' rowids, tokenized with
``porter unicode61 remove_diacritics 2``. Column weights live in the ``meta`` table.
``vocabulary`` counts the products using each lowercase word of their text, and of their
name (title, brand, color, category), unstemmed and kept exact by every upsert and delete,
for query spelling correction (:mod:`ranker.spelling`); an index written before it existed
has it counted on first open.

User text never reaches FTS5 syntax: a query is cut into word tokens, each is quoted, and
the tokens are OR-ed.

Thread safety: writes go through one connection per index (``check_same_thread=False``)
behind a lock; searches through each thread's own read-only connection, so they run in
parallel (see :mod:`indexer.stores.sqlite_file`). Readers of a database that
:meth:`SqliteBm25Index.build` replaced keep the old file until they reopen it.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Self

from indexer.catalog import Product
from indexer.stores.base import Hit, SearchFilter, StoreError
from indexer.stores.sqlite_file import SqliteFile, building

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
TEXT_COLUMNS = ("title", "brand", "color", "bullet_points", "description", "category")
DEFAULT_COLUMN_WEIGHTS: Mapping[str, float] = {
    "title": 3.0,
    "brand": 2.0,
    "color": 1.0,
    "bullet_points": 1.0,
    "description": 0.5,
    "category": 0.5,
}
TOKENIZER = "porter unicode61 remove_diacritics 2"
MAX_QUERY_TOKENS = 64
WORD = re.compile(r"\w+", re.UNICODE)
"""A word of a query or a product text (lowercased before matching)."""

_VOCABULARY_TABLE = """CREATE TABLE IF NOT EXISTS vocabulary (
    word TEXT PRIMARY KEY,
    documents INTEGER NOT NULL,
    named INTEGER NOT NULL
) WITHOUT ROWID"""

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    rowid INTEGER PRIMARY KEY,
    product_id TEXT NOT NULL UNIQUE,
    brand_cf TEXT NOT NULL,
    price REAL
);
CREATE INDEX IF NOT EXISTS products_brand ON products (brand_cf);
CREATE INDEX IF NOT EXISTS products_price ON products (price);
CREATE TABLE IF NOT EXISTS product_categories (
    product_rowid INTEGER NOT NULL,
    category_cf TEXT NOT NULL,
    PRIMARY KEY (product_rowid, category_cf)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS product_categories_by_category
    ON product_categories (category_cf, product_rowid);
CREATE VIRTUAL TABLE IF NOT EXISTS product_text USING fts5(
    {", ".join(TEXT_COLUMNS)}, tokenize='{TOKENIZER}'
);
{_VOCABULARY_TABLE};
"""
VOCABULARY_VERSION = "2"
"""Counted again on open when the index's differs (1: no ``named`` count)."""
NAME_COLUMNS = ("title", "brand", "color", "category")
"""The columns that name a product; free text (bullet points, description) does not."""
_NAMED = tuple(TEXT_COLUMNS.index(column) for column in NAME_COLUMNS)


class WordUse(NamedTuple):
    """How many products use a word anywhere in their text, and in their name."""

    documents: int
    named: int


def query_tokens(query: str) -> list[str]:
    """The distinct lowercase word tokens of ``query``, in order (at most 64)."""
    tokens = list(dict.fromkeys(WORD.findall(query.lower())))
    if len(tokens) > MAX_QUERY_TOKENS:
        logger.debug("query has %d tokens; keeping the first %d", len(tokens), MAX_QUERY_TOKENS)
    return tokens[:MAX_QUERY_TOKENS]


def fts5_match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression OR-ing every quoted token of ``query``; None when it has none."""
    tokens = query_tokens(query)
    if not tokens:
        return None
    return " OR ".join('"' + token.replace('"', '""') + '"' for token in tokens)


def _text_columns(product: Product) -> tuple[str, ...]:
    """The product's values of :data:`TEXT_COLUMNS`, as the FTS5 table stores them."""
    return (
        product.title,
        product.brand,
        product.color,
        "\n".join(product.bullet_points),
        product.description,
        " > ".join(product.category),
    )


def text_words(columns: Sequence[str]) -> set[str]:
    """The distinct lowercase words of some text columns."""
    return {word for text in columns for word in WORD.findall(text.lower())}


def _words_used(columns: Sequence[str]) -> tuple[set[str], set[str]]:
    """The words of a product's text columns (in :data:`TEXT_COLUMNS` order), and of its
    name columns."""
    return text_words(columns), text_words([columns[i] for i in _NAMED])


def _count_words(
    connection: sqlite3.Connection, used: tuple[set[str], set[str]], delta: int
) -> None:
    """Add ``delta`` to the counts of each word a product uses (``_words_used``); words no
    product uses are dropped."""
    words, named = used
    connection.executemany(
        "INSERT INTO vocabulary (word, documents, named) VALUES (?, ?, ?) "
        "ON CONFLICT (word) DO UPDATE SET documents = documents + excluded.documents, "
        "named = named + excluded.named",
        [(word, delta, delta if word in named else 0) for word in words],
    )
    if delta < 0:
        connection.executemany(
            "DELETE FROM vocabulary WHERE word = ? AND documents <= 0", [(w,) for w in words]
        )


def _stored_words(connection: sqlite3.Connection, rowid: int) -> tuple[set[str], set[str]]:
    """The words of the text stored for ``rowid`` (none when it has no text row)."""
    row = connection.execute(
        f"SELECT {', '.join(TEXT_COLUMNS)} FROM product_text WHERE rowid = ?", (rowid,)
    ).fetchone()
    return _words_used([value or "" for value in row]) if row is not None else (set(), set())


def _one_of(column: str, values: list[str]) -> tuple[str, str]:
    """``column IN`` the values, as one JSON parameter: any number of values fits in one
    statement (one ``?`` per value would hit SQLite's variable limit)."""
    return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(values)


def _filter_sql(search_filter: SearchFilter | None) -> tuple[str, list[object]]:
    """A ``WHERE`` fragment over ``p`` (products) and its parameters."""
    if search_filter is None or search_filter.is_empty:
        return "", []
    clauses: list[str] = []
    params: list[object] = []
    if search_filter.brands:
        clause, values = _one_of("p.brand_cf", sorted({b.casefold() for b in search_filter.brands}))
        clauses.append(clause)
        params.append(values)
    if search_filter.categories:
        clause, values = _one_of(
            "c.category_cf", sorted({c.casefold() for c in search_filter.categories})
        )
        clauses.append(
            "EXISTS (SELECT 1 FROM product_categories c WHERE c.product_rowid = p.rowid "
            f"AND {clause})"
        )
        params.append(values)
    if search_filter.price_min is not None:
        clauses.append("p.price >= ?")
        params.append(search_filter.price_min)
    if search_filter.price_max is not None:
        clauses.append("p.price <= ?")
        params.append(search_filter.price_max)
    if search_filter.product_ids is not None:
        clause, values = _one_of("p.product_id", sorted(search_filter.product_ids))
        clauses.append(clause)
        params.append(values)
    return "".join(f" AND {clause}" for clause in clauses), params


class SqliteBm25Index(SqliteFile):
    """A :class:`~indexer.stores.base.LexicalIndex` in one SQLite file."""

    def __init__(self, path: Path, *, column_weights: Mapping[str, float] | None = None) -> None:
        super().__init__(path, schema=_SCHEMA, what="a BM25 index", foreign_keys=True)
        with self._opening():
            self.column_weights = self._settle_weights(column_weights)
            self._count_vocabulary_once()

    @classmethod
    def open(cls, path: Path, *, column_weights: Mapping[str, float] | None = None) -> Self:
        """Open the index at ``path``, creating an empty one if the file is missing.

        ``column_weights`` (title, brand, color, bullet_points, description, category; missing
        ones default) replace the stored weights; without them the stored ones are used.
        """
        return cls(path, column_weights=column_weights)

    @classmethod
    def build(
        cls,
        path: Path,
        products: Sequence[Product],
        *,
        column_weights: Mapping[str, float] | None = None,
    ) -> Self:
        """Write a fresh index of ``products`` to a temp file, then move it onto ``path``."""
        with building(path, lambda temp: cls(temp, column_weights=column_weights)) as index:
            index.upsert(products)
            with index._lock:
                index._connection.execute(
                    "INSERT INTO product_text (product_text) VALUES ('optimize')"
                )
        logger.info("built BM25 index of %d products at %s", len(products), path)
        return cls(path)

    # ------------------------------------------------------------------ plumbing

    def _create_schema(self, schema: str) -> None:
        """Create the schema in one ``BEGIN IMMEDIATE`` transaction."""
        with self._lock:
            try:
                self._connection.executescript(f"BEGIN IMMEDIATE;\n{schema}\nCOMMIT;")
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise

    def _count_vocabulary_once(self) -> None:
        """Count the vocabulary of an index written before it was kept, or kept in an older
        form (once)."""
        with self._lock:
            counted = self._connection.execute(
                "SELECT value FROM meta WHERE key = 'vocabulary'"
            ).fetchone()
        if counted is not None and counted[0] == VOCABULARY_VERSION:
            return
        with self._write() as connection:
            connection.execute("DROP TABLE vocabulary")
            connection.execute(_VOCABULARY_TABLE)
            rows = connection.execute(
                f"SELECT {', '.join(TEXT_COLUMNS)} FROM product_text"
            ).fetchall()
            for row in rows:
                _count_words(connection, _words_used([value or "" for value in row]), +1)
            connection.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('vocabulary', ?)",
                (VOCABULARY_VERSION,),
            )
        if rows:
            logger.info("%s: counted the vocabulary of its %d products", self.path, len(rows))

    def _settle_weights(self, given: Mapping[str, float] | None) -> dict[str, float]:
        with self._lock:
            row = self._connection.execute(
                "SELECT value FROM meta WHERE key = 'column_weights'"
            ).fetchone()
        stored: dict[str, float] | None = None
        if row is not None:
            try:
                stored = {name: float(json.loads(row[0])[name]) for name in TEXT_COLUMNS}
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"{self.path}: stored column weights are unreadable") from exc
        if given is None and stored is not None:
            return stored
        unknown = sorted(set(given or {}) - set(TEXT_COLUMNS))
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; columns: {list(TEXT_COLUMNS)}")
        weights = {**DEFAULT_COLUMN_WEIGHTS, **(given or {})}
        weights = {name: float(weights[name]) for name in TEXT_COLUMNS}
        if any(not weight >= 0 for weight in weights.values()):
            raise ValueError(f"column weights must be >= 0, got {weights}")
        if weights != stored:
            if stored is not None:
                logger.info("%s: column weights %s replace %s", self.path, weights, stored)
            with self._write() as connection:
                connection.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('column_weights', ?), "
                    "('schema_version', ?)",
                    (json.dumps(weights), str(SCHEMA_VERSION)),
                )
        return weights

    # ------------------------------------------------------------------ contract

    def upsert(self, products: Sequence[Product]) -> None:
        """Insert or replace products, in one transaction."""
        try:
            with self._write() as connection:
                for product in products:
                    self._upsert_one(connection, product)
        except sqlite3.Error as exc:
            raise StoreError(f"BM25 upsert into {self.path} failed: {exc}") from exc

    @staticmethod
    def _upsert_one(connection: sqlite3.Connection, product: Product) -> None:
        brand_cf = product.brand.casefold()
        row = connection.execute(
            "SELECT rowid FROM products WHERE product_id = ?", (product.id,)
        ).fetchone()
        if row is None:
            cursor = connection.execute(
                "INSERT INTO products (product_id, brand_cf, price) VALUES (?, ?, ?)",
                (product.id, brand_cf, product.price),
            )
            rowid = cursor.lastrowid
        else:
            rowid = row[0]
            connection.execute(
                "UPDATE products SET brand_cf = ?, price = ? WHERE rowid = ?",
                (brand_cf, product.price, rowid),
            )
            _count_words(connection, _stored_words(connection, rowid), -1)
            connection.execute("DELETE FROM product_text WHERE rowid = ?", (rowid,))
            connection.execute("DELETE FROM product_categories WHERE product_rowid = ?", (rowid,))
        columns = _text_columns(product)
        connection.execute(
            f"INSERT INTO product_text (rowid, {', '.join(TEXT_COLUMNS)}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rowid, *columns),
        )
        _count_words(connection, _words_used(columns), +1)
        connection.executemany(
            "INSERT OR IGNORE INTO product_categories (product_rowid, category_cf) VALUES (?, ?)",
            [(rowid, category.casefold()) for category in product.category],
        )

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products, in one transaction; returns how many were present."""
        removed = 0
        try:
            with self._write() as connection:
                for product_id in dict.fromkeys(product_ids):
                    row = connection.execute(
                        "SELECT rowid FROM products WHERE product_id = ?", (product_id,)
                    ).fetchone()
                    if row is None:
                        continue
                    _count_words(connection, _stored_words(connection, row[0]), -1)
                    connection.execute("DELETE FROM product_text WHERE rowid = ?", row)
                    connection.execute(
                        "DELETE FROM product_categories WHERE product_rowid = ?", row
                    )
                    connection.execute("DELETE FROM products WHERE rowid = ?", row)
                    removed += 1
        except sqlite3.Error as exc:
            raise StoreError(f"BM25 delete from {self.path} failed: {exc}") from exc
        return removed

    def vocabulary(self) -> dict[str, WordUse]:
        """Every word of the products' text, with how many products use it."""
        try:
            with self._reading() as connection:
                rows = connection.execute("SELECT word, documents, named FROM vocabulary")
                return {word: WordUse(documents, named) for word, documents, named in rows}
        except sqlite3.Error as exc:
            raise StoreError(f"reading the vocabulary of {self.path} failed: {exc}") from exc

    def search(self, query: str, k: int, search_filter: SearchFilter | None = None) -> list[Hit]:
        """The ``k`` best BM25 hits (higher is better), ties broken by product id."""
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        expression = fts5_match_expression(query)
        if expression is None:
            return []
        where, filter_params = _filter_sql(search_filter)
        weights = [self.column_weights[name] for name in TEXT_COLUMNS]
        sql = (
            "SELECT p.product_id, -bm25(product_text, ?, ?, ?, ?, ?, ?) AS score "
            "FROM product_text JOIN products p ON p.rowid = product_text.rowid "
            f"WHERE product_text MATCH ?{where} "
            "ORDER BY score DESC, p.product_id LIMIT ?"
        )
        params = [*weights, expression, *filter_params, k]
        try:
            with self._reading() as connection:
                rows = connection.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"BM25 search in {self.path} failed: {exc}") from exc
        return [Hit(product_id=product_id, score=float(score)) for product_id, score in rows]
