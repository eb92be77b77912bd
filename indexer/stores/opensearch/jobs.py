"""Catalog indexing jobs on OpenSearch: zero-downtime full reindex, upsert and delete.

Each job is one function with plain inputs (products or ids, a settings section, an
embedder), so a Celery task can wrap it. A full reindex:

1. registers the index template for ``<alias>-v*`` and creates the next versioned index;
2. embeds and bulk-loads the catalog in slices (refresh off while loading);
3. verifies the document count and a sample query (k-NN and BM25 find the first product);
4. swaps the alias atomically and marks the replaced index retired;
5. deletes retired indexes whose grace period has passed (this run's or earlier runs').

Any failure before the swap deletes the new index and leaves the alias as it was. Rejected
documents fail the job with every one listed (:class:`BulkIndexingError`). Steps 1-3 are
:func:`build_index_version` (in turn :func:`create_index_version`, :func:`load_into` and
:func:`verify_index_version`, which a sharded build runs as separate tasks), steps 4-5
:func:`publish_index`. With ``staged_for`` a reindex does steps 1-3 alone, for a candidate
bi-encoder whose promotion swaps the alias.

:func:`~indexer.stores.opensearch.copy.copy_embedded_index` does the same full reindex from
a built embedded index, embedding nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from indexer.catalog import Product, TextTemplate
from indexer.jobs import ProductEmbedder
from indexer.progress import progress_bar
from indexer.stores.base import ModelIdentity, StoreError
from indexer.stores.opensearch.aliases import (
    BUILD,
    STAGED_FOR,
    alias_targets,
    mark_retired,
    next_index_name,
    prune_retired,
    staged_for,
    swap_alias,
    versioned_indexes,
)
from indexer.stores.opensearch.bulk import BulkReport, bulk_options, run_bulk
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.config import OpenSearchConfig
from indexer.stores.opensearch.mapping import META_KEY, index_meta, index_template, product_document
from indexer.stores.opensearch.store import OpenSearchIndex, open_opensearch_index

logger = logging.getLogger(__name__)

EMBED_SLICE = 1024
"""Products embedded and sent per slice, so memory stays flat on large catalogs."""
SAMPLE_K = 10


@dataclass(frozen=True, slots=True)
class ReindexResult:
    """What a full reindex did."""

    alias: str
    index: str
    count: int
    replaced: list[str]
    deleted: list[str]
    seconds: float

    @property
    def docs_per_s(self) -> float:
        """Products embedded and indexed per second, over the whole job."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


def _slices(products: Sequence[Product], size: int) -> Iterator[Sequence[Product]]:
    for start in range(0, len(products), size):
        yield products[start : start + size]


def load_into(
    client: Any,
    index: str,
    products: Sequence[Product],
    *,
    config: OpenSearchConfig,
    embedder: ProductEmbedder,
    template: TextTemplate,
    source: str,
    progress: bool = False,
) -> BulkReport:
    """Step 2: embed and bulk-index ``products`` into ``index``, slice by slice (their ids as
    document ids, so loading them again overwrites); BulkIndexingError lists rejected
    documents, naming ``source``."""
    report = BulkReport()
    options = bulk_options(config)
    with progress_bar(total=len(products), unit="doc", desc="index", disable=not progress) as bar:
        for chunk in _slices(products, EMBED_SLICE):
            texts = [template.render(p) for p in chunk]
            vectors = embedder.embed(texts)
            actions = [
                {
                    "_op_type": "index",
                    "_index": index,
                    "_id": p.id,
                    "_source": product_document(p, v, model_text=text),
                }
                for p, v, text in zip(chunk, vectors, texts, strict=True)
            ]
            report.merge(run_bulk(client, actions, options=options))
            bar.update(len(chunk))
    report.raise_for_failures(f"indexing {source} into {index}")
    return report


def _verify(index: OpenSearchIndex, products: Sequence[Product], embedder: ProductEmbedder) -> None:
    """Refuse an index whose count or sample query is wrong."""
    expected = len({p.id for p in products})
    count = len(index)
    if count != expected:
        raise StoreError(f"{index.alias}: {count} documents after loading, expected {expected}")
    sample = products[0]
    vector = embedder.embed([index.template.render(sample)])[0]
    dense = [hit.product_id for hit in index.search_vector(vector, SAMPLE_K)]
    if sample.id not in dense:
        raise StoreError(f"{index.alias}: k-NN for product {sample.id} does not find it: {dense}")
    if sample.title.strip() and not index.search_text(sample.title, SAMPLE_K):
        raise StoreError(f"{index.alias}: BM25 for {sample.title!r} finds nothing")


@dataclass(frozen=True, slots=True)
class BuiltIndex:
    """A versioned index built and verified, not behind the alias yet."""

    alias: str
    index: str
    meta: dict[str, Any]
    count: int


def build_index_version(
    products: Sequence[Product],
    *,
    config: OpenSearchConfig,
    embedder: ProductEmbedder,
    template: TextTemplate,
    source: str,
    client: Any,
    progress: bool = True,
    staged_for: str | None = None,
) -> BuiltIndex:
    """Steps 1-3 of a full reindex: create ``<alias>-v<n>``, load ``products``, verify.

    The alias is left as it is. ``staged_for``: the embedder version the index waits for
    (recorded in its ``_meta``, see :func:`~indexer.stores.opensearch.aliases.staged_for`).
    A failure deletes the new index.
    """
    if not products:
        raise ValueError(f"{source}: the catalog has no products")
    created = create_index_version(
        client,
        config=config,
        identity=embedder.identity,
        template=template,
        source=source,
        staged_for=staged_for,
    )
    logger.info(
        "building %s for alias %s: %d products", created.index, created.alias, len(products)
    )
    try:
        load_into(
            client,
            created.index,
            products,
            config=config,
            embedder=embedder,
            template=template,
            source=source,
            progress=progress,
        )
        return verify_index_version(client, created, products, config=config, embedder=embedder)
    except BaseException:
        delete_index_version(client, created)
        raise


def create_index_version(
    client: Any,
    *,
    config: OpenSearchConfig,
    identity: ModelIdentity,
    template: TextTemplate,
    source: str,
    staged_for: str | None = None,
    build: str | None = None,
) -> BuiltIndex:
    """Step 1: the next ``<alias>-v<n>``, empty, refresh off, its ``_meta`` naming the
    embedder (and ``build``, the sharded build that fills it); ``count`` is 0."""
    alias = config.index_alias
    prune_retired(client, alias, grace_s=config.reindex_grace_s)
    name = next_index_name(client, alias)
    client.indices.put_index_template(
        name=alias,
        body=index_template(config, dimension=identity.dimension, index_patterns=[f"{alias}-v*"]),
    )
    meta = index_meta(
        identity=identity, template=template, space_type=config.space_type, source=source
    )
    if staged_for is not None:
        meta[STAGED_FOR] = staged_for
    if build is not None:
        meta[BUILD] = build
    client.indices.create(
        index=name,
        body={
            "settings": {"index": {"refresh_interval": "-1"}},
            "mappings": {"_meta": {META_KEY: meta}},
        },
    )
    return BuiltIndex(alias=alias, index=name, meta=meta, count=0)


def verify_index_version(
    client: Any,
    created: BuiltIndex,
    products: Sequence[Product],
    *,
    config: OpenSearchConfig,
    embedder: ProductEmbedder,
) -> BuiltIndex:
    """Step 3: refresh on, yellow health, every product there and findable (the count and a
    sample query); StoreError otherwise. The index, with its count."""
    name = created.index
    client.indices.put_settings(index=name, body={"index": {"refresh_interval": None}})
    client.indices.refresh(index=name)
    health = client.cluster.health(index=name, wait_for_status="yellow")
    if health.get("timed_out"):
        raise StoreError(f"{name} is not yellow: {health.get('status')}")
    index = OpenSearchIndex(
        client,
        alias=name,
        meta=created.meta,
        ef_search=config.hnsw_ef_search,
        bulk=bulk_options(config),
    )
    _verify(index, products, embedder)
    return dataclasses.replace(created, count=len({p.id for p in products}))


def delete_index_version(client: Any, created: BuiltIndex) -> None:
    """Delete an index that failed its build (never the one behind the alias)."""
    if created.index in alias_targets(client, created.alias):
        raise StoreError(f"{created.index} serves behind {created.alias}; not deleting it")
    logger.error(
        "building %s failed; deleting it, alias %s unchanged", created.index, created.alias
    )
    client.indices.delete(index=created.index, ignore_unavailable=True)


def publish_index(client: Any, built: BuiltIndex, *, grace_s: float) -> tuple[list[str], list[str]]:
    """Steps 4-5: swap the alias to ``built``, retire what it replaced, prune; returns the
    indexes replaced and the indexes deleted."""
    metas = versioned_indexes(client, built.alias)
    replaced = swap_alias(client, built.alias, built.index)
    for old in replaced:
        mark_retired(client, old, metas.get(old, {}))
    return replaced, prune_retired(client, built.alias, grace_s=grace_s)


def reindex_catalog(
    products: Sequence[Product],
    *,
    config: OpenSearchConfig,
    embedder: ProductEmbedder,
    template: TextTemplate,
    source: str,
    client: Any | None = None,
    progress: bool = True,
    staged_for: str | None = None,
) -> ReindexResult:
    """Build a new versioned index of ``products``, verify it, and swap the alias to it.

    With ``staged_for`` (a bi-encoder version) the alias does not move: the index is marked
    staged for that version, whose promotion swaps it in (``ranker.opensearch_switch``), and
    an index staged for it earlier is retired.
    """
    started = time.perf_counter()
    client = client if client is not None else make_client(config)
    built = build_index_version(
        products,
        config=config,
        embedder=embedder,
        template=template,
        source=source,
        client=client,
        progress=progress,
        staged_for=staged_for,
    )
    if staged_for is None:
        replaced, deleted = publish_index(client, built, grace_s=config.reindex_grace_s)
    else:
        replaced, deleted = _retire_staged(client, built, staged_for), []
    result = ReindexResult(
        alias=built.alias,
        index=built.index,
        count=built.count,
        replaced=replaced,
        deleted=deleted,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "%s %s: %d products in %.1f s (%.0f docs/s)",
        f"alias {result.alias} ->" if staged_for is None else f"staged for {staged_for}:",
        result.index,
        result.count,
        result.seconds,
        result.docs_per_s,
    )
    return result


def _retire_staged(client: Any, built: BuiltIndex, version: str) -> list[str]:
    """Retire the indexes staged for ``version`` before ``built``; their names."""
    metas = versioned_indexes(client, built.alias)
    live = set(alias_targets(client, built.alias))
    replaced = [
        name
        for name, meta in metas.items()
        if name != built.index
        and name not in live
        and staged_for(meta) == version
        and "retired_at" not in meta
    ]
    for name in replaced:
        mark_retired(client, name, metas[name])
    return replaced


def upsert_catalog(
    products: Sequence[Product],
    *,
    config: OpenSearchConfig,
    embedder: ProductEmbedder,
    client: Any | None = None,
    progress: bool = False,
) -> BulkReport:
    """Insert or replace ``products`` in the index behind the alias, without a rebuild."""
    if not products:
        return BulkReport()
    index = open_opensearch_index(config, expected=embedder.identity, client=client)
    report = load_into(
        index.client,
        config.index_alias,
        products,
        config=config,
        embedder=embedder,
        template=index.template,
        source="the upserted products",
        progress=progress,
    )
    logger.info("upserted %d products into %s", report.succeeded, config.index_alias)
    return report


def delete_from_catalog(
    product_ids: Sequence[str], *, config: OpenSearchConfig, client: Any | None = None
) -> int:
    """Remove products from the index behind the alias; returns how many were there."""
    if not product_ids:
        return 0
    index = open_opensearch_index(config, client=client)
    removed = index.delete(product_ids)
    logger.info("deleted %d of %d products from %s", removed, len(product_ids), index.alias)
    return removed
