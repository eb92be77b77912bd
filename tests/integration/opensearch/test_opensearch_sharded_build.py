"""A sharded build on a real OpenSearch node: shards bulk into an index behind no alias, the
commit verifies counts and swaps the alias; a refused commit and an abandoned build leave the
alias and no index behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import load_products
from indexer.stores.opensearch.aliases import BUILD, alias_targets, versioned_indexes
from indexer.stores.opensearch.client import make_client
from ranker.embedder import Embedder
from ranker.indexing import IndexRequest, run_index_job
from ranker.serving_models import ModelSource
from ranker.settings import EmbedderSettings, IndexSettings, Settings
from ranker.sharded_indexing import (
    ShardedBuildError,
    abandon_build,
    build_shard,
    commit_build,
    committed_outcome,
    load_plan,
    plan_build,
)

pytestmark = [pytest.mark.opensearch, pytest.mark.integration]


def test_shards_fill_an_index_the_commit_puts_behind_the_alias(
    make_config: Any,
    tmp_path: Path,
    tiny_embedder_dir: Path,
    tiny_embedder: Embedder,
    subset_catalog_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path,
        index=IndexSettings(backend="opensearch"),
        opensearch=make_config("it-sharded"),
        embedder=EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"),
    )
    client = make_client(settings.opensearch)
    alias = settings.opensearch.index_alias
    run_index_job(settings, IndexRequest(catalog=subset_catalog_path), progress=False)
    (serving,) = alias_targets(client, alias)

    def plan(build: str) -> Any:
        return plan_build(
            settings,
            build=build,
            catalog=subset_catalog_path,
            shards=3,
            backend="opensearch",
            source=ModelSource(tiny_embedder_dir),
            embedder=tiny_embedder,
        )

    first = plan("s1")
    assert first.index is not None
    assert versioned_indexes(client, alias)[first.index][BUILD] == "s1"
    assert alias_targets(client, alias) == [serving]
    reports = [
        {"shard": shard, "count": build_shard(settings, first, shard, embedder=tiny_embedder)}
        for shard in range(len(first.shards))
    ]
    build_shard(settings, first, 1, embedder=tiny_embedder)  # a retried shard overwrites

    outcome = commit_build(settings, first, reports, embedder=tiny_embedder)

    products = load_products(subset_catalog_path)
    assert outcome.count == len(products)
    assert alias_targets(client, alias) == [first.index]
    assert int(client.count(index=alias)["count"]) == len(products)
    assert load_plan(settings, "s1") is None
    again = committed_outcome(settings, "s1", "opensearch")
    assert again is not None
    assert again.count == len(products)

    # A commit that a shard never reported to is refused; abandoning removes its index.
    second = plan("s2")
    build_shard(settings, second, 0, embedder=tiny_embedder)
    with pytest.raises(ShardedBuildError, match="did not report"):
        commit_build(settings, second, reports[:1], embedder=tiny_embedder)
    assert alias_targets(client, alias) == [first.index]
    assert abandon_build(settings, "s2")
    assert second.index not in versioned_indexes(client, alias)
    assert alias_targets(client, alias) == [first.index]
