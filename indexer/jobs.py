"""Indexing jobs: full builds and incremental upserts and deletes of the embedded index.

An index directory holds three stores and a manifest::

    <index_dir>/manifest.json    catalog source, count, text template, embedder identity
    <index_dir>/dense/           FAISS vectors (FaissStore)
    <index_dir>/lexical.sqlite   BM25 (SQLite FTS5)
    <index_dir>/products.sqlite  product documents

A full build writes a new directory next to the old one and swaps it in, so readers see the
old index or the new one, never a half-built one. Incremental jobs change the stores in
place; each is idempotent, so a job that failed midway is fixed by running it again.
Each job is one function with plain inputs, so a Celery task can wrap it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from indexer.catalog import Product, TextTemplate
from indexer.stores.atomic import atomic_directory, write_json_atomic
from indexer.stores.base import FloatMatrix, ModelIdentity, StoreError
from indexer.stores.faiss_store import FaissStore
from indexer.stores.lexical import SqliteBm25Index
from indexer.stores.product_store import SqliteProductStore

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
DENSE_DIR = "dense"
LEXICAL_FILE = "lexical.sqlite"
PRODUCTS_FILE = "products.sqlite"
FORMAT_VERSION = 1


class ProductEmbedder(Protocol):
    """What indexing needs of an embedder."""

    identity: ModelIdentity

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> FloatMatrix:
        """Unit vectors, one row per text."""


@dataclass(frozen=True)
class IndexLayout:
    """Paths inside one index directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def dense(self) -> Path:
        return self.root / DENSE_DIR

    @property
    def lexical(self) -> Path:
        return self.root / LEXICAL_FILE

    @property
    def products(self) -> Path:
        return self.root / PRODUCTS_FILE


@dataclass
class OpenedIndex:
    """The three stores of an index directory, and its manifest."""

    vector_store: FaissStore
    lexical_index: SqliteBm25Index
    product_store: SqliteProductStore
    manifest: dict[str, Any]

    @property
    def template(self) -> TextTemplate:
        """The text template the index was built with."""
        return TextTemplate(str(self.manifest["text_template"]))

    def close(self) -> None:
        """Close the SQLite connections."""
        self.lexical_index.close()
        self.product_store.close()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def build_index(
    products: Sequence[Product],
    index_dir: Path,
    *,
    embedder: ProductEmbedder,
    template: TextTemplate,
    source: str,
    hnsw_threshold: int,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    progress: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed ``products`` and build all three stores, swapped in as ``index_dir``;
    ``extra``: more fields for the manifest."""
    if not products:
        raise ValueError(f"{source}: the catalog has no products")
    vectors = embedder.embed([template.render(product) for product in products], progress=progress)
    return write_index(
        products,
        vectors,
        index_dir,
        identity=embedder.identity,
        template=template,
        source=source,
        hnsw_threshold=hnsw_threshold,
        hnsw_m=hnsw_m,
        ef_construction=ef_construction,
        ef_search=ef_search,
        extra=extra,
    )


def write_index(
    products: Sequence[Product],
    vectors: FloatMatrix,
    index_dir: Path,
    *,
    identity: ModelIdentity,
    template: TextTemplate,
    source: str,
    hnsw_threshold: int,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build all three stores from ``products`` and their ``vectors`` (one row each, by
    ``identity``'s model) in a staging directory, and swap it in as ``index_dir``;
    ``extra``: more fields for the manifest."""
    if not products:
        raise ValueError(f"{source}: the catalog has no products")
    if vectors.shape != (len(products), identity.dimension):
        raise ValueError(
            f"{source}: vectors of shape {vectors.shape} for {len(products)} products of "
            f"dimension {identity.dimension}"
        )
    with atomic_directory(Path(index_dir)) as staging:
        layout = IndexLayout(staging)
        dense = FaissStore.build(
            identity,
            products,
            vectors,
            hnsw_threshold=hnsw_threshold,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            ef_search=ef_search,
        )
        dense.save(layout.dense)
        SqliteBm25Index.build(layout.lexical, products).close()
        SqliteProductStore.build(layout.products, products).close()
        manifest = {
            "format_version": FORMAT_VERSION,
            "source": source,
            "count": len(products),
            "text_template": template.template,
            "embedder": {
                "model_id": identity.model_id,
                "weights_sha256": identity.weights_sha256,
                "dimension": identity.dimension,
            },
            "dense_index": dense.description,
            "built_at": _now(),
            "updated_at": _now(),
            **(extra or {}),
        }
        write_json_atomic(layout.manifest, manifest)
    logger.info("built index %s: %d products, %s", index_dir, len(products), dense.description)
    return manifest


def read_index_manifest(index_dir: Path) -> dict[str, Any]:
    """The manifest of an index directory; a clear error when there is none."""
    path = IndexLayout(Path(index_dir)).manifest
    if not path.is_file():
        raise StoreError(f"{index_dir}: no index here; build one with `shoprank index`")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: corrupt index manifest: {exc}") from exc
    return manifest


def open_index(index_dir: Path, *, expected: ModelIdentity | None = None) -> OpenedIndex:
    """Open an index; refuses one built with another embedding model or dimension."""
    layout = IndexLayout(Path(index_dir))
    manifest = read_index_manifest(layout.root)
    vector_store = FaissStore.load(layout.dense, expected=expected)
    return OpenedIndex(
        vector_store=vector_store,
        lexical_index=SqliteBm25Index.open(layout.lexical),
        product_store=SqliteProductStore.open(layout.products),
        manifest=manifest,
    )


def upsert_products(
    index_dir: Path, products: Sequence[Product], *, embedder: ProductEmbedder
) -> int:
    """Insert or replace products in every store, without a full rebuild."""
    if not products:
        return 0
    index = open_index(index_dir, expected=embedder.identity)
    try:
        vectors = embedder.embed([index.template.render(p) for p in products])
        index.product_store.upsert(products)
        index.lexical_index.upsert(products)
        index.vector_store.upsert(products, vectors)
        index.vector_store.save(IndexLayout(Path(index_dir)).dense)
        _touch_manifest(index, Path(index_dir))
    finally:
        index.close()
    logger.info("upserted %d products into %s", len(products), index_dir)
    return len(products)


def delete_products(index_dir: Path, product_ids: Sequence[str]) -> int:
    """Remove products from every store; returns how many the vector store held."""
    if not product_ids:
        return 0
    index = open_index(index_dir)
    try:
        index.product_store.delete(product_ids)
        index.lexical_index.delete(product_ids)
        removed = index.vector_store.delete(product_ids)
        index.vector_store.save(IndexLayout(Path(index_dir)).dense)
        _touch_manifest(index, Path(index_dir))
    finally:
        index.close()
    logger.info("deleted %d of %d products from %s", removed, len(product_ids), index_dir)
    return removed


def _touch_manifest(index: OpenedIndex, index_dir: Path) -> None:
    manifest = dict(index.manifest)
    manifest["count"] = len(index.vector_store)
    manifest["updated_at"] = _now()
    write_json_atomic(IndexLayout(index_dir).manifest, manifest)
