"""One indexing job for both backends: build, upsert or delete, embedded or OpenSearch.

``shoprank index`` and the workers' ``index`` task both call :func:`run_index_job`, so the
choice of backend and action lives here only. The backend is the request's, else
``settings.index.backend``. The actions:

- **build** (the default): a full build of the catalog (the sample catalog when none is
  given). Embedded, it swaps the new stores in as the index directory; on OpenSearch it
  builds a new versioned index, verifies it and swaps the alias to it;
- **upsert**: add or replace the catalog's products in place;
- **delete**: remove the products listed in a file (one id a line); it wins over upsert;
- **copy** (OpenSearch only): copy the built embedded index, vectors included, into a new
  OpenSearch index behind the alias, embedding nothing;
- **stage**: a full build with a candidate bi-encoder (``for_embedder``, a registry version)
  beside the serving index (embedded: a directory next to it; OpenSearch: a versioned index
  off the alias), which promoting that bi-encoder swaps in (``ranker.model_switch``).

Failures are raised as they come: ``CatalogError``/``ValueError`` for bad input,
``StoreError`` (``StoreUnavailableError`` when the cluster cannot be reached now,
``BulkIndexingError`` listing rejected documents), ``OSError``, and opensearch-py's
``TransportError``; :func:`failure_types` lists them for callers that report them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from ranker.errors import ShoprankError
from ranker.settings import Settings

if TYPE_CHECKING:
    from indexer.catalog import CatalogInput
    from indexer.jobs import ProductEmbedder

logger = logging.getLogger(__name__)

IndexBackend = Literal["embedded", "opensearch"]
IndexAction = Literal["build", "upsert", "delete", "copy", "stage"]
BACKENDS: tuple[str, ...] = get_args(IndexBackend)


class IndexRequestError(ShoprankError, ValueError):
    """An indexing request that contradicts itself (e.g. a copy that is also a delete)."""


@dataclass(frozen=True)
class IndexRequest:
    """What to index, and where; every field optional."""

    backend: IndexBackend | None = None
    """None: ``settings.index.backend``."""
    catalog: CatalogInput | None = None
    """None: the sample catalog (build and upsert); a CatalogFile brings its mapping."""
    upsert: bool = False
    delete: Path | None = None
    """A file of product ids to remove, one a line."""
    from_embedded: bool = False
    """OpenSearch only: copy the embedded index (``settings.index_path``) into it."""
    for_embedder: str | None = None
    """A candidate bi-encoder version to build the index for, beside the serving one."""

    @property
    def action(self) -> IndexAction:
        """What the request does."""
        if self.for_embedder is not None:
            return "stage"
        if self.from_embedded:
            return "copy"
        if self.delete is not None:
            return "delete"
        return "upsert" if self.upsert else "build"


@dataclass(frozen=True)
class IndexOutcome:
    """What an indexing job did, with one line for people (``summary``)."""

    backend: IndexBackend
    action: IndexAction
    count: int
    """Products built, upserted, deleted or copied."""
    target: str
    """The index directory, or the OpenSearch alias."""
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)


def resolve_backend(settings: Settings, request: IndexRequest) -> IndexBackend:
    """The request's backend, else the settings'."""
    return request.backend or settings.index.backend


def check_request(request: IndexRequest, backend: IndexBackend) -> None:
    """Raise IndexRequestError for a request that cannot be done as asked."""
    if request.backend is not None and request.backend not in BACKENDS:
        raise IndexRequestError(
            f"unknown index backend {request.backend!r}; choose {' or '.join(BACKENDS)}"
        )
    if request.for_embedder is not None and (
        request.upsert or request.delete is not None or request.from_embedded
    ):
        raise IndexRequestError(
            "an index for a candidate bi-encoder is a full build; drop upsert, delete and copy"
        )
    if request.from_embedded:
        if backend != "opensearch":
            raise IndexRequestError("copying the embedded index needs the opensearch backend")
        if request.catalog is not None or request.upsert or request.delete is not None:
            raise IndexRequestError("copying the embedded index takes no catalog, upsert or delete")


def failure_types(backend: IndexBackend) -> tuple[type[Exception], ...]:
    """The exceptions a job on ``backend`` raises for a failure to report (not a bug)."""
    from indexer.catalog import CatalogError
    from indexer.stores.base import StoreError

    types: tuple[type[Exception], ...] = (CatalogError, StoreError, OSError, ValueError)
    if backend == "opensearch":
        try:
            import opensearchpy
        except ImportError:
            return types
        return (*types, opensearchpy.TransportError)
    return types


def read_ids(path: Path) -> list[str]:
    """Product ids from a file, one a line, blanks skipped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def run_index_job(
    settings: Settings,
    request: IndexRequest,
    *,
    embedder: ProductEmbedder | None = None,
    progress: bool = True,
) -> IndexOutcome:
    """Do ``request`` on its backend; ``embedder``: the bi-encoder to embed with (default:
    :func:`ranker.loading.load_embedder`, loaded only when the action embeds)."""
    backend = resolve_backend(settings, request)
    check_request(request, backend)
    if request.for_embedder is not None:
        return _stage(settings, request.for_embedder, backend, request.catalog, progress)
    if backend == "opensearch":
        return _index_opensearch(settings, request, embedder=embedder, progress=progress)
    return _index_embedded(settings, request, embedder=embedder, progress=progress)


def _stage(
    settings: Settings,
    version: str,
    backend: IndexBackend,
    catalog: CatalogInput | None,
    progress: bool,
) -> IndexOutcome:
    """Build the index for candidate bi-encoder ``version`` beside the serving one."""
    promote = f"`shoprank models promote embedder {version}` swaps it in with the bi-encoder"
    if backend == "opensearch":
        from ranker.opensearch_switch import stage_opensearch_index

        result = stage_opensearch_index(settings, version, catalog=catalog, progress=progress)
        retired = f"; retired the earlier {', '.join(result.replaced)}" if result.replaced else ""
        return IndexOutcome(
            "opensearch",
            "stage",
            result.count,
            result.index,
            f"indexed {result.count} products for embedder {version} into {result.index} "
            f"beside alias {result.alias} in {result.seconds:.1f} s{retired}; {promote}",
            {"alias": result.alias, "replaced": result.replaced, "embedder": version},
        )
    from ranker.model_switch import stage_index, staged_index_path

    manifest = stage_index(settings, version, catalog=catalog, progress=progress)
    staged = staged_index_path(settings, version)
    return IndexOutcome(
        "embedded",
        "stage",
        int(manifest["count"]),
        str(staged),
        f"indexed {manifest['count']} products for embedder {version} in {staged}; {promote}",
        {"embedder": version},
    )


def _embedder(settings: Settings, embedder: ProductEmbedder | None) -> ProductEmbedder:
    if embedder is not None:
        return embedder
    from ranker.loading import load_embedder

    return load_embedder(settings)


def _index_embedded(
    settings: Settings,
    request: IndexRequest,
    *,
    embedder: ProductEmbedder | None,
    progress: bool,
) -> IndexOutcome:
    from indexer.catalog import load_products, sample_catalog_path
    from indexer.jobs import delete_products, upsert_products
    from ranker.loading import build_default_index

    target = settings.index_path
    if request.delete is not None:
        ids = read_ids(request.delete)
        removed = delete_products(target, ids)
        return IndexOutcome(
            "embedded",
            "delete",
            removed,
            str(target),
            f"deleted {removed} of {len(ids)} products from {target}",
            {"requested": len(ids)},
        )
    source = request.catalog or sample_catalog_path()
    if request.upsert:
        products = load_products(source)
        count = upsert_products(target, products, embedder=_embedder(settings, embedder))
        return IndexOutcome(
            "embedded", "upsert", count, str(target), f"upserted {count} products into {target}"
        )
    manifest = build_default_index(
        settings, source, embedder=_embedder(settings, embedder), progress=progress
    )
    return IndexOutcome(
        "embedded",
        "build",
        int(manifest["count"]),
        str(target),
        f"indexed {manifest['count']} products into {target} ({manifest['dense_index']} + BM25)",
        {"dense_index": manifest["dense_index"], "source": manifest["source"]},
    )


def _index_opensearch(
    settings: Settings,
    request: IndexRequest,
    *,
    embedder: ProductEmbedder | None,
    progress: bool,
) -> IndexOutcome:
    from indexer.catalog import TextTemplate, catalog_file, load_products, sample_catalog_path
    from indexer.stores.opensearch.copy import copy_embedded_index
    from indexer.stores.opensearch.jobs import delete_from_catalog, reindex_catalog, upsert_catalog

    config = settings.opensearch
    alias = config.index_alias
    if request.delete is not None:
        ids = read_ids(request.delete)
        removed = delete_from_catalog(ids, config=config)
        return IndexOutcome(
            "opensearch",
            "delete",
            removed,
            alias,
            f"deleted {removed} of {len(ids)} products from {alias}",
            {"requested": len(ids)},
        )
    if request.from_embedded:
        result = copy_embedded_index(settings.index_path, config=config, progress=progress)
        return IndexOutcome(
            "opensearch",
            "copy",
            result.count,
            result.alias,
            f"copied {result.count} products and their vectors from {settings.index_path} "
            f"into {result.index} behind alias {result.alias} in {result.seconds:.1f} s",
            {"index": result.index, "replaced": result.replaced, "seconds": result.seconds},
        )
    source = request.catalog or sample_catalog_path()
    products = load_products(source)
    if request.upsert:
        report = upsert_catalog(products, config=config, embedder=_embedder(settings, embedder))
        return IndexOutcome(
            "opensearch",
            "upsert",
            report.succeeded,
            alias,
            f"upserted {report.succeeded} products into {alias}",
        )
    result = reindex_catalog(
        products,
        config=config,
        embedder=_embedder(settings, embedder),
        template=TextTemplate(settings.index.text_template),
        source=str(catalog_file(source).path),
        progress=progress,
    )
    return IndexOutcome(
        "opensearch",
        "build",
        result.count,
        result.alias,
        f"indexed {result.count} products into {result.index} behind alias {result.alias} "
        f"in {result.seconds:.1f} s ({result.docs_per_s:.0f} docs/s, embedding included); "
        f"replaced {', '.join(result.replaced) or 'nothing'}",
        {
            "index": result.index,
            "replaced": result.replaced,
            "deleted": result.deleted,
            "seconds": result.seconds,
        },
    )
