"""A FAISS vector store: inner product on L2-normalized float32 vectors, filters inside search.

Index kind
    Below ``hnsw_threshold`` live products (default 200,000) the index is exact:
    ``IDMap2,Flat`` (an ``IndexIDMap2`` over ``IndexFlatIP``). At or above it, it is
    ``IDMap2,HNSW{m},Flat`` (``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``). Why 200k: an
    exact query costs N x 384 multiply-adds, 77M at 200k, and streams the whole matrix
    (300 MB) from memory, so it is bandwidth-bound: measured single-query medians with faiss
    1.15 on our 2-core dev box were 16 / 24 / 32 ms at 50k / 100k / 200k vectors (batched
    queries amortize the scan). Below that size HNSW's build time (minutes), its extra memory
    (graph links on top of the same raw vectors) and its recall loss cost more than the
    milliseconds it saves; lower the threshold where latency budgets are tighter. The kind
    is chosen whenever the index is (re)built:
    by :meth:`FaissStore.build`, by :meth:`FaissStore.compact`, and by :meth:`FaissStore.save`,
    which compacts first when a Flat index has reached the threshold or when more than 20% of
    the slots are dead. Incremental :meth:`~FaissStore.upsert` / :meth:`~FaissStore.delete`
    never rebuild, so an index only changes kind at one of those points; a shrunken HNSW
    index turns back into Flat at its next compaction.

Ids
    Product ids (strings) map to sequential int64 "slots", the ids FAISS sees. Replacing or
    deleting a product retires its slot: Flat removes the vector (``remove_ids``), HNSW
    cannot remove, so the slot stays in the graph as a tombstone, excluded at search time by
    an ``IDSelector``. The next compaction drops dead slots and renumbers. Flat removal
    shifts the vectors behind the removed ones (O(N) per call), so replace products in
    batches rather than one call per product.

Filters
    Per slot we keep the casefolded brand (as a code into a vocabulary), the price (NaN for
    none) and the casefolded categories (a flat code array plus the owning slot of each
    code). A :class:`SearchFilter` becomes a boolean mask over slots, passed to FAISS as an
    ``IDSelectorBitmap`` (one bit per slot: cheaper to build than ``IDSelectorBatch``'s hash
    set for large allowed sets, and O(1) per membership test), so a filtered query returns
    k hits whenever k products match. On HNSW, small allowed sets (fewer than
    ``exact_filter_max_ids`` ids or ``exact_filter_fraction`` of the live products), and any
    filtered graph search that comes back short, are answered by exact search over the
    allowed vectors (reconstructed in chunks).

Thread safety: one re-entrant lock serializes every call on a store, searches included
(each FAISS search already uses all cores through OpenMP).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import faiss as _faiss
import numpy as np

from indexer.catalog import Product
from indexer.stores.base import (
    FloatMatrix,
    Hit,
    ModelIdentity,
    SearchFilter,
    StoreError,
    StoreMismatchError,
)
from indexer.stores.faiss_files import (
    FILTERS_NAME,
    FORMAT_VERSION,
    ID_MAP_NAME,
    INDEX_NAME,
    MANIFEST_NAME,
    METRIC,
    REBUILD_HINT,
    read_files,
    read_manifest,
    write_files,
)
from indexer.stores.faiss_filters import BoolArray, FilterColumns, GrowableArray, IdArray
from indexer.stores.faiss_vectors import exact_search, index_search, stored_vectors, unit_rows

logger = logging.getLogger(__name__)

# faiss's bundled stubs are incomplete (no SearchParametersHNSW, not the one-argument
# IDSelectorBitmap the Python wrapper adds), so it is used untyped here.
faiss: Any = _faiss

DEFAULT_HNSW_THRESHOLD = 200_000
DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_SEARCH = 128
DEFAULT_EXACT_FILTER_MAX_IDS = 20_000
DEFAULT_EXACT_FILTER_FRACTION = 0.05
COMPACT_DEAD_FRACTION = 0.2
MAX_EF_SCALE = 20


class IndexKind(StrEnum):
    """Which FAISS index backs the store."""

    FLAT = "flat"
    HNSW = "hnsw"


def _short(sha256: str) -> str:
    return f"{sha256[:12]}…" if len(sha256) > 12 else sha256


class FaissStore:
    """A :class:`~indexer.stores.base.VectorStore` on FAISS, saved to a directory of its own."""

    def __init__(
        self,
        identity: ModelIdentity,
        *,
        hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
        hnsw_m: int = DEFAULT_HNSW_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
        exact_filter_max_ids: int = DEFAULT_EXACT_FILTER_MAX_IDS,
        exact_filter_fraction: float = DEFAULT_EXACT_FILTER_FRACTION,
    ) -> None:
        if identity.dimension < 1:
            raise ValueError(f"dimension must be positive, got {identity.dimension}")
        if hnsw_threshold < 0:
            raise ValueError(f"hnsw_threshold must be >= 0, got {hnsw_threshold}")
        if hnsw_m < 2:
            raise ValueError(f"hnsw_m must be >= 2, got {hnsw_m}")
        if ef_construction < 1 or ef_search < 1:
            raise ValueError(
                f"ef_construction and ef_search must be positive, got {ef_construction}, "
                f"{ef_search}"
            )
        if exact_filter_max_ids < 0 or not 0.0 <= exact_filter_fraction <= 1.0:
            raise ValueError(
                "exact_filter_max_ids must be >= 0 and exact_filter_fraction within [0, 1]"
            )
        self.identity = identity
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_filter_max_ids = exact_filter_max_ids
        self.exact_filter_fraction = exact_filter_fraction
        self._lock = threading.RLock()
        self._kind = IndexKind.FLAT
        self._index: Any = self._new_index(IndexKind.FLAT)
        self._slot_ids: list[str | None] = []
        self._slot_of: dict[str, int] = {}
        self._live = GrowableArray(np.bool_)
        self._filters = FilterColumns()

    # ----------------------------------------------------------------- properties

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._slot_of

    @property
    def kind(self) -> IndexKind:
        """Flat (exact) or HNSW."""
        return self._kind

    @property
    def description(self) -> str:
        """The FAISS factory string of the current index, e.g. ``IDMap2,HNSW32,Flat``."""
        return self._describe(self._kind)

    @property
    def tombstones(self) -> int:
        """Dead slots whose vectors are still in the index (HNSW only)."""
        return self._dead_slots() if self._kind is IndexKind.HNSW else 0

    # ----------------------------------------------------------------- building

    def _describe(self, kind: IndexKind) -> str:
        return "IDMap2,Flat" if kind is IndexKind.FLAT else f"IDMap2,HNSW{self.hnsw_m},Flat"

    def _kind_for(self, count: int) -> IndexKind:
        return IndexKind.HNSW if count >= self.hnsw_threshold else IndexKind.FLAT

    def _new_index(self, kind: IndexKind) -> Any:
        index = faiss.index_factory(
            self.identity.dimension, self._describe(kind), faiss.METRIC_INNER_PRODUCT
        )
        if kind is IndexKind.HNSW:
            hnsw = faiss.downcast_index(index.index).hnsw
            hnsw.efConstruction = self.ef_construction
            hnsw.efSearch = self.ef_search
        return index

    @classmethod
    def build(
        cls,
        identity: ModelIdentity,
        products: Sequence[Product],
        vectors: FloatMatrix,
        *,
        hnsw_threshold: int = DEFAULT_HNSW_THRESHOLD,
        hnsw_m: int = DEFAULT_HNSW_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        ef_search: int = DEFAULT_EF_SEARCH,
    ) -> Self:
        """A fresh store over ``products``; HNSW when there are ``hnsw_threshold`` or more."""
        store = cls(
            identity,
            hnsw_threshold=hnsw_threshold,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            ef_search=ef_search,
        )
        products, matrix = store._prepare(products, vectors)
        kind = store._kind_for(len(products))
        store._log_build(kind, len(products))
        store._kind = kind
        store._index = store._new_index(kind)
        store._append(products, matrix)
        return store

    def _log_build(self, kind: IndexKind, count: int) -> None:
        vector_bytes = count * self.identity.dimension * 4
        link_bytes = count * self.hnsw_m * 2 * 4 if kind is IndexKind.HNSW else 0
        logger.info(
            "building FAISS %s over %d vectors of dimension %d (~%.1f MiB)",
            self._describe(kind),
            count,
            self.identity.dimension,
            (vector_bytes + link_bytes + count * 16) / 2**20,
        )

    # ----------------------------------------------------------------- validation

    def _as_unit_rows(self, vectors: Any, rows: int, name: Callable[[int], str]) -> FloatMatrix:
        return unit_rows(vectors, rows, self.identity, name)

    def _prepare(
        self, products: Sequence[Product], vectors: FloatMatrix
    ) -> tuple[list[Product], FloatMatrix]:
        """Validate and normalize; a product id given twice keeps its last vector."""
        matrix = self._as_unit_rows(
            vectors, len(products), lambda row: f"product {products[row].id!r}"
        )
        last = {product.id: row for row, product in enumerate(products)}
        if len(last) == len(products):
            return list(products), matrix
        rows = sorted(last.values())
        return [products[row] for row in rows], matrix[rows]

    def _query_row(self, vector: FloatMatrix) -> FloatMatrix:
        query = np.asarray(vector)
        if query.ndim == 2 and query.shape[0] == 1:
            query = query[0]
        if query.ndim != 1:
            raise StoreError(
                f"expected one query vector of shape ({self.identity.dimension},), "
                f"got {query.shape}"
            )
        return self._as_unit_rows(query[None, :], 1, lambda _: "the query")

    # ----------------------------------------------------------------- updates

    def _dead_slots(self) -> int:
        return len(self._slot_ids) - len(self._slot_of)

    def _retire(self, product_ids: Iterable[str]) -> int:
        slots = [
            self._slot_of.pop(pid) for pid in dict.fromkeys(product_ids) if pid in self._slot_of
        ]
        if not slots:
            return 0
        slot_array = np.asarray(slots, dtype=np.int64)
        if self._kind is IndexKind.FLAT:
            removed = int(self._index.remove_ids(slot_array))
            if removed != len(slots):
                raise StoreError(f"FAISS removed {removed} of {len(slots)} vectors; index corrupt")
        self._live.values[slot_array] = False
        for slot in slots:
            self._slot_ids[slot] = None
        return len(slots)

    def _append(self, products: Sequence[Product], matrix: FloatMatrix) -> None:
        first = len(self._slot_ids)
        ids = np.arange(first, first + len(products), dtype=np.int64)
        self._index.add_with_ids(matrix, ids)
        for offset, product in enumerate(products):
            self._slot_ids.append(product.id)
            self._slot_of[product.id] = first + offset
        self._live.extend(np.ones(len(products), dtype=np.bool_))
        self._filters.append(first, products)

    def upsert(self, products: Sequence[Product], vectors: FloatMatrix) -> None:
        """Insert or replace ``products``; vectors of shape ``(len(products), dim)``."""
        if not products and np.asarray(vectors).size == 0:
            return
        unique, matrix = self._prepare(products, vectors)
        with self._lock:
            self._retire(p.id for p in unique)
            self._append(unique, matrix)

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many were present."""
        with self._lock:
            return self._retire(product_ids)

    def vectors(self, product_ids: Sequence[str]) -> FloatMatrix:
        """The stored vectors of ``product_ids``, shape ``(len(product_ids), dim)``."""
        missing = [pid for pid in product_ids if pid not in self._slot_of]
        if missing:
            raise StoreError(f"{len(missing)} product(s) have no vector, e.g. {missing[:5]}")
        slots = np.fromiter((self._slot_of[pid] for pid in product_ids), dtype=np.int64)
        return self._live_vectors(slots)

    def _live_vectors(self, slots: IdArray) -> FloatMatrix:
        return stored_vectors(self._index, slots, self.identity.dimension)

    def compact(self) -> None:
        """Rebuild the index from the live products: drops dead slots, renumbers, re-picks kind."""
        with self._lock:
            live = self._live.values.copy()
            slots = np.flatnonzero(live).astype(np.int64)
            vectors = self._live_vectors(slots)
            kind = self._kind_for(len(slots))
            self._log_build(kind, len(slots))
            index = self._new_index(kind)
            index.add_with_ids(vectors, np.arange(len(slots), dtype=np.int64))
            self._filters = self._filters.keep(live)
            self._slot_ids = [self._slot_ids[int(s)] for s in slots]
            self._slot_of = {
                pid: slot for slot, pid in enumerate(self._slot_ids) if pid is not None
            }
            self._live = GrowableArray(np.bool_, np.ones(len(slots), dtype=np.bool_))
            self._index = index
            self._kind = kind

    def _needs_compaction(self) -> bool:
        if self._kind is IndexKind.FLAT and len(self) >= self.hnsw_threshold:
            return True
        slots = len(self._slot_ids)
        return slots > 0 and self._dead_slots() / slots > COMPACT_DEAD_FRACTION

    # ----------------------------------------------------------------- search

    def _slot_mask(self, product_ids: Iterable[str]) -> BoolArray:
        """Slots of the given live products."""
        mask = np.zeros(len(self._slot_ids), dtype=np.bool_)
        slots = [self._slot_of[pid] for pid in product_ids if pid in self._slot_of]
        mask[slots] = True
        return mask

    def search(
        self, vector: FloatMatrix, k: int, search_filter: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` best hits (cosine similarity, best first) for one query vector."""
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        query = self._query_row(vector)
        with self._lock:
            if not self._slot_of:
                return []
            mask: BoolArray | None = None
            if search_filter is not None and not search_filter.is_empty:
                mask = self._filters.mask(search_filter) & self._live.values
                if search_filter.product_ids is not None:
                    mask &= self._slot_mask(search_filter.product_ids)
                allowed = int(mask.sum())
            else:
                allowed = len(self)
                if self.tombstones:
                    mask = self._live.values.copy()
            if allowed == 0:
                return []
            wanted = min(k, allowed)
            if self._kind is IndexKind.FLAT:
                return self._faiss_search(query, wanted, mask, ef=0)
            return self._hnsw_search(query, wanted, mask, allowed)

    def _hnsw_search(
        self, query: FloatMatrix, wanted: int, mask: BoolArray | None, allowed: int
    ) -> list[Hit]:
        filtered = mask is not None and allowed < len(self)
        if filtered and (
            allowed < self.exact_filter_max_ids or allowed < self.exact_filter_fraction * len(self)
        ):
            return self._exact_search(query, wanted, mask)
        scale = min(math.ceil(len(self._slot_ids) / allowed), MAX_EF_SCALE)
        ef = max(self.ef_search, wanted) * scale
        hits = self._faiss_search(query, wanted, mask, ef=ef)
        if len(hits) < wanted:
            logger.debug(
                "HNSW returned %d of %d hits (%d allowed); falling back to exact search",
                len(hits),
                wanted,
                allowed,
            )
            return self._exact_search(query, wanted, mask)
        return hits

    def _faiss_search(
        self, query: FloatMatrix, wanted: int, mask: BoolArray | None, *, ef: int
    ) -> list[Hit]:
        hnsw_ef = ef if self._kind is IndexKind.HNSW else None
        slots, scores = index_search(self._index, query, wanted, mask, hnsw_ef=hnsw_ef)
        return self._hits(slots, scores)

    def _exact_search(self, query: FloatMatrix, wanted: int, mask: BoolArray | None) -> list[Hit]:
        allowed = np.flatnonzero(self._live.values if mask is None else mask).astype(np.int64)
        slots, scores = exact_search(self._index, allowed, query, wanted)
        return self._hits(slots, scores)

    def _hits(self, slots: Iterable[Any], scores: Iterable[Any]) -> list[Hit]:
        hits = []
        for slot, score in zip(slots, scores, strict=True):
            product_id = self._slot_ids[int(slot)] if slot >= 0 else None
            if product_id is not None:
                hits.append(Hit(product_id=product_id, score=float(score)))
        return hits

    # ----------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        """Write the store to directory ``path`` atomically; compacts first when due."""
        path = Path(path)
        with self._lock:
            if self._needs_compaction():
                self.compact()
            manifest = {
                "format_version": FORMAT_VERSION,
                "model_id": self.identity.model_id,
                "weights_sha256": self.identity.weights_sha256,
                "dimension": self.identity.dimension,
                "lineage": list(self.identity.lineage),
                "count": len(self),
                "slots": len(self._slot_ids),
                "tombstones": self.tombstones,
                "index_kind": self._kind.value,
                "index_description": self.description,
                "metric": METRIC,
                "normalized": True,
                "hnsw_threshold": self.hnsw_threshold,
                "hnsw": {
                    "m": self.hnsw_m,
                    "ef_construction": self.ef_construction,
                    "ef_search": self.ef_search,
                },
                "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "faiss_version": faiss.__version__,
                "files": {"index": INDEX_NAME, "id_map": ID_MAP_NAME, "filters": FILTERS_NAME},
            }
            id_map = {
                "slots": self._slot_ids,
                "brands": self._filters.brands.names,
                "categories": self._filters.categories.names,
            }
            try:
                write_files(path, self._index, manifest, id_map, self._filters.arrays())
            except (OSError, RuntimeError) as exc:
                if isinstance(exc, StoreError):
                    raise
                raise StoreError(f"could not save FAISS index to {path}: {exc}") from exc
        logger.info("saved FAISS %s with %d products to %s", self.description, len(self), path)

    @staticmethod
    def read_manifest(path: Path) -> dict[str, Any]:
        """The manifest of the index saved at ``path``."""
        return read_manifest(path)

    @staticmethod
    def _check_identity(path: Path, built: ModelIdentity, expected: ModelIdentity) -> None:
        if not built.same_model_as(expected):
            raise StoreMismatchError(
                f"index at {path} was built with model {built.model_id!r} (weights sha256 "
                f"{_short(built.weights_sha256)}), not {expected.model_id!r} (weights sha256 "
                f"{_short(expected.weights_sha256)}); {REBUILD_HINT}"
            )
        if built.dimension != expected.dimension:
            raise StoreMismatchError(
                f"index at {path} has dimension {built.dimension}, but model "
                f"{expected.model_id!r} produces dimension {expected.dimension}; {REBUILD_HINT}"
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        expected: ModelIdentity | None = None,
        ef_search: int | None = None,
    ) -> Self:
        """Open a store :meth:`save` wrote; refuses one built with another model or dimension."""
        path = Path(path)
        manifest = cls.read_manifest(path)
        try:
            built = ModelIdentity(
                model_id=str(manifest["model_id"]),
                weights_sha256=str(manifest["weights_sha256"]),
                dimension=int(manifest["dimension"]),
                lineage=tuple(str(digest) for digest in manifest.get("lineage", ())),
            )
            kind = IndexKind(manifest["index_kind"])
            hnsw = manifest["hnsw"]
            store = cls(
                built,
                hnsw_threshold=int(manifest["hnsw_threshold"]),
                hnsw_m=int(hnsw["m"]),
                ef_construction=int(hnsw["ef_construction"]),
                ef_search=int(ef_search if ef_search is not None else hnsw["ef_search"]),
            )
            files = {name: str(manifest["files"][name]) for name in ("index", "id_map", "filters")}
            count = int(manifest["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{path / MANIFEST_NAME} is malformed: {exc!r}") from exc
        if expected is not None:
            cls._check_identity(path, built, expected)
        for name in files.values():
            if Path(name).name != name:
                raise StoreError(f"{path / MANIFEST_NAME} names a file outside the index: {name}")
        store._restore(path, kind=kind, files=files, count=count)
        logger.info(
            "loaded FAISS %s from %s: %d products, dimension %d, model %s (weights sha256 %s)",
            store.description,
            path,
            len(store),
            built.dimension,
            built.model_id,
            _short(built.weights_sha256),
        )
        return store

    def _restore(self, path: Path, *, kind: IndexKind, files: dict[str, str], count: int) -> None:
        saved = read_files(path, files)
        index, slot_ids, arrays = saved.index, saved.slot_ids, saved.arrays
        live = np.array([pid is not None for pid in slot_ids], dtype=np.bool_)
        live_count = int(live.sum())
        expected_ntotal = live_count if kind is IndexKind.FLAT else len(slot_ids)
        problems = []
        if index.d != self.identity.dimension:
            problems.append(f"index dimension {index.d} != manifest {self.identity.dimension}")
        if index.ntotal != expected_ntotal:
            problems.append(f"index holds {index.ntotal} vectors, expected {expected_ntotal}")
        if live_count != count:
            problems.append(f"id map has {live_count} products, manifest says {count}")
        if not len(arrays["brand_codes"]) == len(arrays["prices"]) == len(slot_ids):
            problems.append("filter metadata and id map disagree on the number of slots")
        if problems:
            raise StoreError(f"FAISS index at {path} is inconsistent: {'; '.join(problems)}")

        if kind is IndexKind.HNSW:
            faiss.downcast_index(index.index).hnsw.efSearch = self.ef_search
        self._index = index
        self._kind = kind
        self._slot_ids = slot_ids
        self._slot_of = {pid: slot for slot, pid in enumerate(slot_ids) if pid is not None}
        self._live = GrowableArray(np.bool_, live)
        self._filters = FilterColumns(
            brands=saved.brands, categories=saved.categories, arrays=arrays
        )
