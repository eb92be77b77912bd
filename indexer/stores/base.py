"""The store contracts every backend implements, and the filter they all understand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from indexer.catalog import Product


class StoreError(RuntimeError):
    """A store that cannot be opened, saved or used as asked; the message says why."""


class StoreMismatchError(StoreError):
    """An index was built with another model or dimension than the one asked for."""


class StoreUnavailableError(StoreError):
    """The service behind a store cannot be reached now (refused, timed out, overloaded).

    Unlike other store errors, retrying later may work; a server answers 503 for it, or
    falls back to another index when it is configured to.
    """


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved product and its score (higher is better)."""

    product_id: str
    score: float


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which embedding model produced a set of vectors."""

    model_id: str
    weights_sha256: str
    dimension: int
    lineage: tuple[str, ...] = ()
    """Weights hashes of the models these weights were exported or quantized from."""

    def same_model_as(self, other: ModelIdentity) -> bool:
        """The same model and weights, or variants of the same weights: an ONNX or int8
        export and its source (or two exports of one source), whose parity checks bound how
        far their vectors differ, so one's vectors can be searched with the other's."""
        same_weights = self.weights_sha256.lower() == other.weights_sha256.lower()
        if self.model_id == other.model_id and same_weights:
            return True
        mine = {self.weights_sha256.lower(), *(digest.lower() for digest in self.lineage)}
        theirs = {other.weights_sha256.lower(), *(digest.lower() for digest in other.lineage)}
        return bool(mine & theirs) and bool(self.lineage or other.lineage)

    def compatible_with(self, other: ModelIdentity) -> bool:
        """:meth:`same_model_as` and the same dimension."""
        return self.dimension == other.dimension and self.same_model_as(other)


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Filters applied inside retrieval, so a filtered search still returns k hits when k exist.

    Matching is case-insensitive. ``categories`` matches any level of a product's category
    path. A price bound excludes products without a price. ``product_ids`` restricts the
    search to those products (the rerank task orders a given candidate list this way).
    Empty means "no constraint".
    """

    brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    price_min: float | None = None
    price_max: float | None = None
    product_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_min > self.price_max
        ):
            raise ValueError(f"price_min {self.price_min} is above price_max {self.price_max}")

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every product through."""
        return not (
            self.brands
            or self.categories
            or self.price_min is not None
            or self.price_max is not None
            or self.product_ids is not None
        )

    def matches(self, product: Product) -> bool:
        """Whether ``product`` passes this filter."""
        if self.product_ids is not None and product.id not in self.product_ids:
            return False
        if self.brands and product.brand.casefold() not in {b.casefold() for b in self.brands}:
            return False
        if self.categories:
            wanted = {c.casefold() for c in self.categories}
            if not wanted.intersection(c.casefold() for c in product.category):
                return False
        if self.price_min is not None or self.price_max is not None:
            if product.price is None:
                return False
            if self.price_min is not None and product.price < self.price_min:
                return False
            if self.price_max is not None and product.price > self.price_max:
                return False
        return True


FloatMatrix = npt.NDArray[np.float32]


@runtime_checkable
class StoredVectors(Protocol):
    """A vector store that hands back the vectors it stored (the embedded FAISS store does)."""

    identity: ModelIdentity

    def vectors(self, product_ids: Sequence[str]) -> FloatMatrix:
        """The stored vectors of ``product_ids``, shape ``(len(product_ids), dim)``."""


@runtime_checkable
class VectorStore(Protocol):
    """Nearest-neighbour search over product vectors (inner product on normalized vectors)."""

    identity: ModelIdentity

    def __len__(self) -> int: ...

    def upsert(self, products: Sequence[Product], vectors: FloatMatrix) -> None:
        """Insert or replace ``products`` with their vectors, shape ``(len(products), dim)``."""

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many were present."""

    def search(
        self, vector: FloatMatrix, k: int, search_filter: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` best hits for one query vector of shape ``(dim,)``, best first."""


@runtime_checkable
class HybridSearcher(Protocol):
    """A vector store that can also fuse its k-NN and BM25 hits itself, in one request.

    OpenSearch's ``hybrid`` query with a normalization search pipeline is one. The search
    pipeline calls :meth:`search_hybrid` instead of fusing by RRF when ``server_hybrid`` is
    true (a setting), and keeps client-side RRF otherwise.
    """

    @property
    def server_hybrid(self) -> bool:
        """Whether hybrid retrieval should run here rather than by client-side RRF."""

    def search_hybrid(
        self,
        query: str,
        vector: FloatMatrix,
        k: int,
        search_filter: SearchFilter | None = None,
        *,
        depth: int,
        weights: tuple[float, float],
    ) -> list[Hit]:
        """The ``k`` best fused hits; ``depth`` candidates per retriever, ``weights``
        (dense, lexical) as the settings give them."""


@runtime_checkable
class LexicalIndex(Protocol):
    """BM25 search over product text."""

    def __len__(self) -> int: ...

    def upsert(self, products: Sequence[Product]) -> None:
        """Insert or replace products."""

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many were present."""

    def search(self, query: str, k: int, search_filter: SearchFilter | None = None) -> list[Hit]:
        """The ``k`` best BM25 hits for ``query``, best first."""


@runtime_checkable
class ProductStore(Protocol):
    """Product documents by id."""

    def __len__(self) -> int: ...

    def upsert(self, products: Sequence[Product]) -> None:
        """Insert or replace products."""

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many were present."""

    def get_many(self, product_ids: Sequence[str]) -> list[Product | None]:
        """Products in the order asked, None where an id is unknown."""
