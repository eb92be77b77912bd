"""The OpenSearch half of a sharded build (``ranker.sharded_indexing``): the versioned index a
plan creates behind no alias, and the commit that verifies it and swaps the alias to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ranker.indexing import IndexOutcome
from ranker.settings import Settings
from ranker.sharded_indexing import BuildPlan, ShardedBuildError

if TYPE_CHECKING:
    from indexer.catalog import Product
    from indexer.jobs import ProductEmbedder
    from indexer.stores.opensearch.jobs import BuiltIndex


def with_build_index(settings: Settings, plan: BuildPlan, embedder: ProductEmbedder) -> BuildPlan:
    """The plan with the index its shards fill: the next versioned index, created empty
    (refresh off, ``_meta`` naming the build), or the one an earlier run of the plan made."""
    from dataclasses import replace

    from indexer.catalog import TextTemplate
    from indexer.stores.opensearch.aliases import BUILD, versioned_indexes
    from indexer.stores.opensearch.client import make_client
    from indexer.stores.opensearch.jobs import create_index_version

    client = make_client(settings.opensearch)
    metas = versioned_indexes(client, settings.opensearch.index_alias)
    for name, meta in metas.items():  # a plan that died after creating its index
        if meta.get(BUILD) == plan.build:
            return replace(plan, index=name)
    created = create_index_version(
        client,
        config=settings.opensearch,
        identity=embedder.identity,
        template=TextTemplate(settings.index.text_template),
        source=plan.catalog,
        build=plan.build,
    )
    return replace(plan, index=created.index)


def planned_index(settings: Settings, plan: BuildPlan) -> BuiltIndex:
    """The index the plan created, as the cluster describes it now."""
    from indexer.stores.opensearch.aliases import versioned_indexes
    from indexer.stores.opensearch.client import make_client
    from indexer.stores.opensearch.jobs import BuiltIndex

    alias = settings.opensearch.index_alias
    meta = versioned_indexes(make_client(settings.opensearch), alias).get(str(plan.index))
    if meta is None:
        raise ShardedBuildError(f"build {plan.build}: its index {plan.index} is gone")
    return BuiltIndex(alias=alias, index=str(plan.index), meta=dict(meta), count=0)


def commit_to_alias(
    settings: Settings, plan: BuildPlan, products: Sequence[Product], embedder: ProductEmbedder
) -> IndexOutcome:
    """Verify the filled index (count and a sample query) and swap the alias to it; a wrong
    index is deleted, one the cluster did not answer for is kept for the retry."""
    from indexer.stores.base import StoreUnavailableError
    from indexer.stores.opensearch.client import is_unavailable, make_client
    from indexer.stores.opensearch.jobs import (
        delete_index_version,
        publish_index,
        verify_index_version,
    )

    client = make_client(settings.opensearch)
    created = planned_index(settings, plan)
    try:
        built = verify_index_version(
            client, created, products, config=settings.opensearch, embedder=embedder
        )
    except Exception as exc:
        if not isinstance(exc, StoreUnavailableError) and not is_unavailable(exc):
            delete_index_version(client, created)  # a wrong index; one not reached is kept
        raise
    replaced, deleted = publish_index(client, built, grace_s=settings.opensearch.reindex_grace_s)
    return IndexOutcome(
        "opensearch",
        "build",
        built.count,
        built.alias,
        f"indexed {built.count} products into {built.index} behind alias {built.alias} from "
        f"{len(plan.shards)} shards; replaced {', '.join(replaced) or 'nothing'}",
        {"index": built.index, "replaced": replaced, "deleted": deleted}
        | {"build": plan.build, "shards": len(plan.shards)},
    )


def committed_behind_alias(settings: Settings, build: str) -> IndexOutcome | None:
    """What build ``build`` did, when the index behind the alias is the one it filled."""
    from indexer.stores.opensearch.aliases import BUILD, alias_targets, versioned_indexes
    from indexer.stores.opensearch.client import make_client

    client = make_client(settings.opensearch)
    alias = settings.opensearch.index_alias
    metas = versioned_indexes(client, alias)
    for name in alias_targets(client, alias):
        if metas.get(name, {}).get(BUILD) == build:
            count = int(client.count(index=name)["count"])
            summary = f"indexed {count} products into {name} behind alias {alias}"
            return IndexOutcome("opensearch", "build", count, alias, summary, {"index": name})
    return None


def delete_build_index(settings: Settings, plan: BuildPlan) -> None:
    """Delete the index the plan created (never one behind the alias), if it is there."""
    from indexer.stores.opensearch.client import make_client
    from indexer.stores.opensearch.jobs import delete_index_version

    try:
        created = planned_index(settings, plan)
    except ShardedBuildError:
        return  # gone already
    delete_index_version(make_client(settings.opensearch), created)
