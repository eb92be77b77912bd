"""Copying a built embedded index into OpenSearch, its vectors included: nothing is embedded.

The new index gets the embedded index's products, text template and embedder identity, and
each product's vector read back from FAISS, through the same full reindex as a build
(``indexer.stores.opensearch.jobs.reindex_catalog``): a new versioned index, verified, then
the alias swapped to it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.jobs import open_index
from indexer.stores.base import FloatMatrix, ModelIdentity, StoreError
from indexer.stores.opensearch.config import OpenSearchConfig
from indexer.stores.opensearch.jobs import ReindexResult, reindex_catalog

logger = logging.getLogger(__name__)


class StoredVectors:
    """A :class:`~indexer.jobs.ProductEmbedder` that looks vectors up instead of computing them.

    Keyed by the rendered text, so a text embeds to what the embedder gave it when the
    index was built (equal texts have equal vectors); a text it has not seen is refused.
    """

    def __init__(self, identity: ModelIdentity, vectors: dict[str, FloatMatrix]) -> None:
        self.identity = identity
        self._vectors = vectors

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> FloatMatrix:
        """The stored vectors of ``texts``, shape ``(len(texts), dim)``."""
        unknown = [text for text in texts if text not in self._vectors]
        if unknown:
            raise StoreError(f"{len(unknown)} text(s) have no stored vector, e.g. {unknown[0]!r}")
        if not texts:
            return np.empty((0, self.identity.dimension), dtype=np.float32)
        return np.stack([self._vectors[text] for text in texts]).astype(np.float32)


def copy_embedded_index(
    index_dir: Path,
    *,
    config: OpenSearchConfig,
    client: Any | None = None,
    progress: bool = True,
) -> ReindexResult:
    """Reindex the embedded index in ``index_dir`` into OpenSearch, reusing its vectors.

    The new index gets the embedded index's products, text template and embedder identity,
    and each product's vector read back from FAISS: moving an index to OpenSearch costs no
    embedding, and serving refuses it with another embedder as it would the original.
    """
    embedded = open_index(index_dir)
    try:
        products = list(embedded.product_store.iter_products())
        template = embedded.template
        matrix = embedded.vector_store.vectors([p.id for p in products])
        vectors = {template.render(p): row for p, row in zip(products, matrix, strict=True)}
        source = str(embedded.manifest.get("source", index_dir))
        identity = embedded.vector_store.identity
    finally:
        embedded.close()
    logger.info("copying %d products and vectors from %s", len(products), index_dir)
    return reindex_catalog(
        products,
        config=config,
        embedder=StoredVectors(identity, vectors),
        template=template,
        source=f"{source} (vectors from the embedded index {index_dir})",
        client=client,
        progress=progress,
    )
