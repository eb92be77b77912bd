"""The store contracts (``indexer.stores.base``) on one OpenSearch alias.

One index document per product serves all three contracts, so :class:`OpenSearchIndex`
holds the connection and three thin views implement :class:`VectorStore`,
:class:`LexicalIndex` and :class:`ProductStore` for the search pipeline. Writes through the
views raise :class:`~indexer.stores.opensearch.bulk.BulkIndexingError` listing every
rejected document; bulk loads go through ``indexer.stores.opensearch.jobs``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.catalog import Product, TextTemplate
from indexer.redaction import redact
from indexer.stores.base import (
    FloatMatrix,
    Hit,
    ModelIdentity,
    SearchFilter,
    StoreError,
    StoreMismatchError,
)
from indexer.stores.opensearch.bulk import BulkOptions, BulkReport, bulk_options, run_bulk
from indexer.stores.opensearch.client import (
    import_opensearch,
    make_client,
    store_error,
    unreachable_reason,
)
from indexer.stores.opensearch.config import HybridNormalization, OpenSearchConfig, SpaceType
from indexer.stores.opensearch.mapping import (
    META_KEY,
    VECTOR_FIELD,
    bm25_query,
    hybrid_pipeline_body,
    hybrid_query,
    hybrid_weights,
    identity_from_meta,
    knn_query,
    product_document,
    product_fields,
    product_from_source,
    similarity_from_score,
)
from indexer.stores.opensearch.pinning import AliasPin
from indexer.stores.opensearch.pipelines import NEURAL_SEARCH, ensure_search_pipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerHybrid:
    """Server-side hybrid: the search pipeline to run the ``hybrid`` query through."""

    pipeline: str
    normalization: HybridNormalization


def server_hybrid_from(config: OpenSearchConfig) -> ServerHybrid | None:
    """What ``config`` says about server-side hybrid; None: client-side RRF."""
    if config.hybrid != "server":
        return None
    return ServerHybrid(pipeline=config.hybrid_pipeline, normalization=config.hybrid_normalization)


def _check_identity(found: ModelIdentity, expected: ModelIdentity | None, where: str) -> None:
    if expected is None:
        return
    if not found.compatible_with(expected):
        raise StoreMismatchError(
            f"{where} was built with model {found.model_id!r} "
            f"(weights {found.weights_sha256[:12]}, dimension {found.dimension}), not "
            f"{expected.model_id!r} (weights {expected.weights_sha256[:12]}, dimension "
            f"{expected.dimension}); rebuild it with `shoprank index --backend opensearch`"
        )


class OpenSearchIndex:
    """The products behind one alias: their text, filter fields and vectors.

    Reads raise :class:`~indexer.stores.base.StoreUnavailableError` when the cluster cannot
    be reached (refused, timed out, 429/502/503/504), and :class:`StoreError` otherwise.
    """

    def __init__(
        self,
        client: Any,
        *,
        alias: str,
        meta: Mapping[str, Any],
        ef_search: int,
        bulk: BulkOptions,
        url: str = "the cluster",
        search_timeout_s: float | None = None,
        hybrid: ServerHybrid | None = None,
        opened: str | None = None,
    ) -> None:
        """``opened``: the index behind ``alias`` whose ``meta`` this is (searches leave the
        alias for it when the alias moves to another embedder's index, see
        :mod:`~indexer.stores.opensearch.pinning`); None: ``alias`` names an index."""
        self.client = client
        self.url = redact(url)  # it names the cluster in errors: no credentials
        self.search_timeout_s = search_timeout_s
        self.alias = alias
        self.meta = dict(meta)
        self.identity = identity_from_meta(meta)
        self.space_type: SpaceType = (
            "cosinesimil" if meta.get("space_type") == "cosinesimil" else "innerproduct"
        )
        self.ef_search = ef_search
        self.bulk = bulk
        self.hybrid = hybrid
        self._hybrid_lock = threading.Lock()
        self._hybrid_ready: dict[str, Any] | None = None
        self.pin = AliasPin(client, alias=alias, opened=opened, identity=self.identity)

    @classmethod
    def open(
        cls,
        client: Any,
        *,
        alias: str,
        ef_search: int,
        bulk: BulkOptions,
        expected: ModelIdentity | None = None,
        url: str = "the cluster",
        search_timeout_s: float | None = None,
        hybrid: ServerHybrid | None = None,
    ) -> OpenSearchIndex:
        """Open the index behind ``alias``; refuses one built with another embedding model."""
        opensearchpy = import_opensearch()
        try:
            mappings = client.indices.get_mapping(index=alias)
        except opensearchpy.NotFoundError as exc:
            raise StoreError(
                f"OpenSearch has no index {alias!r}; build one with "
                "`shoprank index --backend opensearch`"
            ) from exc
        except opensearchpy.TransportError as exc:
            raise store_error(exc, url=url, what=f"reading index {alias!r}") from exc
        if len(mappings) != 1:
            raise StoreError(f"alias {alias!r} points to {len(mappings)} indexes, not one")
        name, body = next(iter(mappings.items()))
        meta = body.get("mappings", {}).get("_meta", {}).get(META_KEY)
        if not meta:
            raise StoreError(f"index {name!r} was not built by shoprank (no _meta.{META_KEY})")
        index = cls(
            client,
            alias=alias,
            meta=meta,
            ef_search=ef_search,
            bulk=bulk,
            url=url,
            search_timeout_s=search_timeout_s,
            hybrid=hybrid,
            opened=name if name != alias else None,
        )
        _check_identity(index.identity, expected, f"OpenSearch index {name!r}")
        return index

    @property
    def template(self) -> TextTemplate:
        """The text template the index was built with."""
        return TextTemplate(str(self.meta["text_template"]))

    def _timeout(self) -> dict[str, float]:
        return {} if self.search_timeout_s is None else {"request_timeout": self.search_timeout_s}

    def __len__(self) -> int:
        opensearchpy = import_opensearch()
        try:
            return int(self.client.count(index=self.alias, **self._timeout())["count"])
        except opensearchpy.TransportError as exc:
            raise store_error(exc, url=self.url, what=f"count of {self.alias!r}") from exc

    def unreachable_reason(self, timeout_s: float = 2.0) -> str | None:
        """None when the cluster answers within ``timeout_s``, else why it does not."""
        return unreachable_reason(self.client, url=self.url, timeout_s=timeout_s)

    def _write(self, actions: Sequence[Mapping[str, Any]], what: str) -> BulkReport:
        report = run_bulk(self.client, actions, options=self.bulk)
        report.raise_for_failures(f"{what} into {self.alias!r}")
        return report

    def upsert(self, products: Sequence[Product], vectors: FloatMatrix) -> None:
        """Index whole documents: product fields and vectors, shape ``(n, dim)``."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.shape != (len(products), self.identity.dimension):
            raise ValueError(
                f"expected vectors of shape ({len(products)}, {self.identity.dimension}), "
                f"got {matrix.shape}"
            )
        actions = [
            {
                "_op_type": "index",
                "_index": self.alias,
                "_id": p.id,
                "_source": product_document(p, row, model_text=self.template.render(p)),
            }
            for p, row in zip(products, matrix, strict=True)
        ]
        self._write(actions, "upsert")

    def upsert_fields(self, products: Sequence[Product]) -> None:
        """Insert or update product fields, keeping a stored vector."""
        actions = [
            {
                "_op_type": "update",
                "_index": self.alias,
                "_id": p.id,
                "doc": product_fields(p, model_text=self.template.render(p)),
                "doc_as_upsert": True,
            }
            for p in products
        ]
        self._write(actions, "update")

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many were present."""
        ids = list(dict.fromkeys(product_ids))
        actions = [{"_op_type": "delete", "_index": self.alias, "_id": pid} for pid in ids]
        return self._write(actions, "delete").succeeded

    def _search(self, body: Mapping[str, Any], extra: Mapping[str, Any]) -> list[Any]:
        """The raw hits of ``body`` on the alias, or on the index the store is pinned to."""
        response = self.client.search(index=self.pin.target, body=body, **extra)
        return list(response["hits"]["hits"])

    def _hits(
        self, body: Mapping[str, Any], *, dense: bool, pipeline: str | None = None
    ) -> list[Hit]:
        opensearchpy = import_opensearch()
        extra: dict[str, Any] = dict(self._timeout())
        if pipeline is not None:
            extra["search_pipeline"] = pipeline
        try:
            try:
                hits = self._search(body, extra)
            except opensearchpy.NotFoundError:
                if not self.pin.release():  # the index it stayed on was pruned meanwhile
                    raise
                hits = self._search(body, extra)
            if self.pin.moved_away(hits):
                hits = self._search(body, extra)
        except opensearchpy.TransportError as exc:
            raise store_error(exc, url=self.url, what=f"search on {self.pin.target!r}") from exc
        if dense:
            return [
                Hit(str(h["_id"]), similarity_from_score(float(h["_score"]), self.space_type))
                for h in hits
            ]
        return [Hit(str(h["_id"]), float(h["_score"])) for h in hits]

    def search_vector(
        self, vector: FloatMatrix, k: int, search_filter: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` nearest products to one vector of shape ``(dim,)``, best first."""
        row = np.asarray(vector, dtype=np.float32).reshape(-1)
        if row.shape != (self.identity.dimension,):
            raise ValueError(
                f"expected one query vector of shape ({self.identity.dimension},), "
                f"got {np.shape(vector)}"
            )
        if k < 1 or (search_filter is not None and search_filter.product_ids == frozenset()):
            return []
        body = knn_query(row, k=k, ef_search=self.ef_search, search_filter=search_filter)
        return self._hits(body, dense=True)

    def search_text(
        self, query: str, k: int, search_filter: SearchFilter | None = None
    ) -> list[Hit]:
        """The ``k`` best BM25 hits for ``query``, best first."""
        if k < 1 or not query.strip():
            return []
        if search_filter is not None and search_filter.product_ids == frozenset():
            return []
        return self._hits(bm25_query(query, k=k, search_filter=search_filter), dense=False)

    def ensure_hybrid_pipeline(self, weights: tuple[float, float]) -> str:
        """The hybrid search pipeline for ``weights`` (dense, lexical), created or updated
        on the cluster once per process and weights; raises when hybrid is client-side."""
        if self.hybrid is None:
            raise StoreError("server-side hybrid is off (opensearch.hybrid: client_rrf)")
        body = hybrid_pipeline_body(
            normalization=self.hybrid.normalization,
            weights=hybrid_weights(dense=weights[0], lexical=weights[1]),
        )
        with self._hybrid_lock:
            if self._hybrid_ready != body:
                ensure_search_pipeline(
                    self.client, self.hybrid.pipeline, body, requires=NEURAL_SEARCH, url=self.url
                )
                self._hybrid_ready = body
        return self.hybrid.pipeline

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
        """The ``k`` best hits of OpenSearch's ``hybrid`` query (k-NN and BM25, each with the
        filter, ``depth`` candidates each), fused by the normalization search pipeline;
        scores are the pipeline's combined scores."""
        row = np.asarray(vector, dtype=np.float32).reshape(-1)
        if row.shape != (self.identity.dimension,):
            raise ValueError(
                f"expected one query vector of shape ({self.identity.dimension},), "
                f"got {np.shape(vector)}"
            )
        if k < 1 or (search_filter is not None and search_filter.product_ids == frozenset()):
            return []
        pipeline = self.ensure_hybrid_pipeline(weights)
        body = hybrid_query(
            query,
            row,
            depth=max(k, depth),
            ef_search=self.ef_search,
            search_filter=search_filter,
        )
        return self._hits(body, dense=False, pipeline=pipeline)[:k]

    def get_many(self, product_ids: Sequence[str]) -> list[Product | None]:
        """Products in the order asked, None where an id is unknown."""
        if not product_ids:
            return []
        opensearchpy = import_opensearch()
        try:
            response = self.client.mget(
                index=self.alias,
                body={"ids": list(product_ids)},
                params={"_source_excludes": VECTOR_FIELD, **self._timeout()},
            )
        except opensearchpy.TransportError as exc:
            raise store_error(exc, url=self.url, what=f"fetching from {self.alias!r}") from exc
        return [
            product_from_source(doc["_source"]) if doc.get("found") else None
            for doc in response["docs"]
        ]


class _IndexView:
    """One contract's view of the shared :class:`OpenSearchIndex`: size and delete."""

    def __init__(self, index: OpenSearchIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def delete(self, product_ids: Sequence[str]) -> int:
        """Remove products; returns how many were present."""
        return self.index.delete(product_ids)


class _FieldsView(_IndexView):
    """A view whose upsert writes product fields and keeps the stored vectors."""

    def upsert(self, products: Sequence[Product]) -> None:
        """Insert or update product documents, keeping stored vectors."""
        self.index.upsert_fields(products)


class OpenSearchVectorStore(_IndexView):
    """:class:`~indexer.stores.base.VectorStore` on an :class:`OpenSearchIndex`."""

    def __init__(self, index: OpenSearchIndex) -> None:
        super().__init__(index)
        self.identity = index.identity

    def upsert(self, products: Sequence[Product], vectors: FloatMatrix) -> None:
        """Insert or replace products with their vectors."""
        self.index.upsert(products, vectors)

    def search(
        self, vector: FloatMatrix, k: int, search_filter: SearchFilter | None = None
    ) -> list[Hit]:
        """k-NN with the filter inside the graph search; scores are inner products (or cosines)."""
        return self.index.search_vector(vector, k, search_filter)

    @property
    def server_hybrid(self) -> bool:
        """Whether hybrid retrieval runs in OpenSearch (``opensearch.hybrid: server``)."""
        return self.index.hybrid is not None

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
        """Server-side hybrid (:class:`~indexer.stores.base.HybridSearcher`)."""
        return self.index.search_hybrid(
            query, vector, k, search_filter, depth=depth, weights=weights
        )


class OpenSearchLexicalIndex(_FieldsView):
    """:class:`~indexer.stores.base.LexicalIndex` (BM25, FTS5-like analysis) on the same index."""

    def search(self, query: str, k: int, search_filter: SearchFilter | None = None) -> list[Hit]:
        """The ``k`` best BM25 hits for ``query``, best first."""
        return self.index.search_text(query, k, search_filter)


class OpenSearchProductStore(_FieldsView):
    """:class:`~indexer.stores.base.ProductStore` on the same index (``_source``)."""

    def get_many(self, product_ids: Sequence[str]) -> list[Product | None]:
        """Products in the order asked, None where an id is unknown."""
        return self.index.get_many(product_ids)


def open_opensearch_index(
    config: OpenSearchConfig, *, expected: ModelIdentity | None = None, client: Any | None = None
) -> OpenSearchIndex:
    """Connect as ``config`` says and open the index behind its alias."""
    return OpenSearchIndex.open(
        client if client is not None else make_client(config),
        alias=config.index_alias,
        ef_search=config.hnsw_ef_search,
        bulk=bulk_options(config),
        expected=expected,
        url=config.url,
        search_timeout_s=config.search_timeout_s,
        hybrid=server_hybrid_from(config),
    )
