"""A bi-encoder's switch on OpenSearch: the alias moves back to back with the pointer.

A candidate bi-encoder whose vectors the index behind the alias cannot search gets its own
versioned index, built and verified beside the alias and marked staged for that version
(:func:`stage_opensearch_index`, ``shoprank index --backend opensearch --for-embedder vN``).
Promoting it (:func:`alias_switch`, through :func:`ranker.model_switch.promote`) moves the
alias to that index in one ``_aliases`` call, then the pointer; when the pointer cannot
move, the alias goes back. The index it left is marked retired, so it is pruned after the
grace period: an API still serving the old bi-encoder keeps searching it until it reloads
(see :class:`~indexer.stores.opensearch.store.OpenSearchIndex`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from indexer.catalog import (
    CatalogInput,
    TextTemplate,
    catalog_file,
    load_products,
    sample_catalog_path,
)
from indexer.stores.base import ModelIdentity, StoreError
from indexer.stores.opensearch.aliases import (
    alias_targets,
    mark_retired,
    restore_alias,
    staged_index,
    swap_alias,
    unstage,
    versioned_indexes,
)
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.jobs import ReindexResult, reindex_catalog
from indexer.stores.opensearch.mapping import META_KEY, identity_from_meta
from ranker.registry import RegistryError
from ranker.serving_models import ModelSource, open_registry
from ranker.settings import Settings

logger = logging.getLogger(__name__)

Switch = Callable[[], AbstractContextManager[None]]


def stage_opensearch_index(
    settings: Settings,
    version: str,
    *,
    catalog: CatalogInput | None = None,
    client: Any | None = None,
    progress: bool = True,
) -> ReindexResult:
    """Build and verify the OpenSearch index of ``catalog`` for embedder ``version`` beside
    the alias; promoting that embedder swaps the alias to it."""
    from ranker.loading import load_embedder

    candidate = open_registry(settings).verify("embedder", version)
    embedder = load_embedder(settings, source=ModelSource(candidate.path, candidate))
    source = catalog_file(catalog or sample_catalog_path())
    return reindex_catalog(
        load_products(source),
        config=settings.opensearch,
        embedder=embedder,
        template=TextTemplate(settings.index.text_template),
        source=str(source.path),
        staged_for=version,
        client=client,
        progress=progress,
    )


def alias_switch(
    settings: Settings, version: str, identity: ModelIdentity, *, client: Any | None = None
) -> Switch | None:
    """What promoting embedder ``version`` (of ``identity``) must do to the alias: None when
    the index behind it (or no index at all) accepts it, else the switch to its staged index.

    Raises RegistryError when no staged index holds its vectors, or the cluster cannot say.
    """
    config = settings.opensearch
    alias = config.index_alias
    failures = _cluster_errors()
    try:
        cluster: Any = client if client is not None else make_client(config)
        serving = alias_targets(cluster, alias)
        if all(_held(cluster, name).compatible_with(identity) for name in serving):
            return None  # also when there is no index at all
        staged = staged_index(cluster, alias, identity)
    except failures as exc:
        raise RegistryError(f"cannot read OpenSearch alias {alias!r}: {exc}") from exc
    if staged is None:
        raise RegistryError(
            f"embedder {version} changes the vectors OpenSearch index {', '.join(serving)} "
            f"holds; build its index first (shoprank index --backend opensearch "
            f"--for-embedder {version}), then promote it"
        )

    @contextlib.contextmanager
    def switch() -> Iterator[None]:
        metas = versioned_indexes(cluster, alias)
        replaced = swap_alias(cluster, alias, staged)
        try:
            yield
        except BaseException:
            restore_alias(cluster, alias, replaced, leaving=staged)  # the old index, old embedder
            raise
        try:  # bookkeeping: the alias and the pointer have both moved already
            unstage(cluster, staged, metas.get(staged, {}))
            for name in replaced:
                mark_retired(cluster, name, metas.get(name, {}))
        except failures:
            logger.exception(
                "alias %s -> %s for embedder %s, but marking %s retired failed; "
                "delete it by hand once no search needs it",
                alias,
                staged,
                version,
                ", ".join(replaced),
            )

    return switch


def _cluster_errors() -> tuple[type[Exception], ...]:
    """What a request to the cluster raises for a failure to report (not a bug)."""
    try:
        import opensearchpy
    except ImportError:
        return (StoreError,)
    return (StoreError, opensearchpy.TransportError)


def _held(client: Any, index: str) -> ModelIdentity:
    """The embedder identity recorded in ``index``'s ``_meta``."""
    for body in client.indices.get_mapping(index=index).values():
        meta = body.get("mappings", {}).get("_meta", {}).get(META_KEY)
        if meta and "embedder" in meta:
            return identity_from_meta(meta)
    raise StoreError(f"OpenSearch index {index!r} was not built by shoprank (no _meta)")
