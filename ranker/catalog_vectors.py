"""Product vectors the index already holds, found by the product's text.

``POST /v1/rerank`` receives texts, not ids. When a text is exactly what the index embedded
for a product (its rendering by the index's text template), the dense prior can read that
product's stored vector instead of running the bi-encoder again. The lookup keeps one 64-bit
digest per product, sorted, beside the product ids (16 bytes a product), and reads the
vectors from the store on demand.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import StoredVectors, StoreError
from ranker.backends.base import FloatArray

if TYPE_CHECKING:
    from ranker.embedder import Embedder

logger = logging.getLogger(__name__)


def text_digest(text: str) -> int:
    """A 64-bit digest of a text (BLAKE2b); collisions are negligible at catalog sizes."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class CatalogVectors:
    """Maps product texts to the vectors ``store`` holds for those products."""

    def __init__(
        self, digests: npt.NDArray[np.uint64], product_ids: Sequence[str], store: StoredVectors
    ) -> None:
        if len(digests) != len(product_ids):
            raise ValueError(f"{len(digests)} digests for {len(product_ids)} product ids")
        order = np.argsort(digests, kind="stable")
        self._digests = digests[order]
        self._product_ids = [product_ids[i] for i in order]
        self.store = store

    def __len__(self) -> int:
        return len(self._product_ids)

    @classmethod
    def build(
        cls, products: Iterable[Product], template: TextTemplate, store: StoredVectors
    ) -> CatalogVectors:
        """Digest every product's text as ``template`` renders it."""
        ids: list[str] = []
        digests: list[int] = []
        for product in products:
            ids.append(product.id)
            digests.append(text_digest(template.render(product)))
        return cls(np.array(digests, dtype=np.uint64), ids, store)

    def find(self, texts: Sequence[str]) -> list[str | None]:
        """The product id whose text each one is, or None."""
        if not texts or not self._product_ids:
            return [None] * len(texts)
        wanted = np.array([text_digest(t) for t in texts], dtype=np.uint64)
        positions = np.searchsorted(self._digests, wanted)
        found: list[str | None] = []
        for digest, position in zip(wanted, positions, strict=True):
            hit = position < len(self._digests) and self._digests[position] == digest
            found.append(self._product_ids[position] if hit else None)
        return found

    def vectors(self, texts: Sequence[str]) -> list[FloatArray | None]:
        """The stored vector of each text that is a product's, else None.

        A store that cannot answer (a product deleted since start-up, for one) gives None
        for every text, so the caller embeds them.
        """
        ids = self.find(texts)
        known = [i for i, product_id in enumerate(ids) if product_id is not None]
        result: list[FloatArray | None] = [None] * len(texts)
        if not known:
            return result
        try:
            stored = self.store.vectors([str(ids[i]) for i in known])
        except StoreError as exc:
            logger.warning("stored product vectors unavailable, embedding instead: %s", exc)
            return result
        for i, vector in zip(known, stored, strict=True):
            result[i] = vector
        return result


class ProductVectors:
    """A bi-encoder's vectors of product texts: the index's where it holds the text
    (``stored``, built for that bi-encoder), else embedded; each text once."""

    def __init__(self, embedder: Embedder, stored: CatalogVectors | None) -> None:
        self.embedder = embedder
        self.stored = stored
        self.cache: dict[str, FloatArray] = {}

    def of(self, texts: Sequence[str], *, progress: bool = False) -> npt.NDArray[np.float32]:
        """``(len(texts), dim)`` unit vectors."""
        wanted = [t for t in dict.fromkeys(texts) if t not in self.cache]
        found = self.stored.vectors(wanted) if self.stored is not None else [None] * len(wanted)
        missing = [t for t, v in zip(wanted, found, strict=True) if v is None]
        embedded = iter(self.embedder.embed(missing, progress=progress)) if missing else iter(())
        for text, vector in zip(wanted, found, strict=True):
            self.cache[text] = vector if vector is not None else next(embedded)
        if not texts:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([self.cache[t] for t in texts]).astype(np.float32, copy=False)
