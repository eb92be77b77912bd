"""Staged indexes off the alias, and stores that never search another embedder's vectors."""

from __future__ import annotations

from typing import Any

import pytest
from opensearch_fakes import FakeCluster

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import ModelIdentity, StoreError
from indexer.stores.opensearch import jobs
from indexer.stores.opensearch.aliases import STAGED_FOR, prune_retired, staged_index
from indexer.stores.opensearch.bulk import bulk_options
from indexer.stores.opensearch.config import OpenSearchConfig
from indexer.stores.opensearch.store import OpenSearchIndex
from ranker.settings import OpenSearchSettings

ALIAS = "products"
OLD = ModelIdentity("old", "a" * 64, 8)
NEW = ModelIdentity("new", "b" * 64, 8)


def _open(cluster: FakeCluster) -> OpenSearchIndex:
    return OpenSearchIndex.open(
        cluster, alias=ALIAS, ef_search=16, bulk=bulk_options(OpenSearchSettings())
    )


def test_the_staged_index_for_an_identity_is_the_newest_unretired_one(
    fake_cluster: FakeCluster,
) -> None:
    fake_cluster.add_index(f"{ALIAS}-v1", OLD, alias=ALIAS)
    fake_cluster.add_index(f"{ALIAS}-v2", NEW, **{STAGED_FOR: "v2", "retired_at": 1.0})
    fake_cluster.add_index(f"{ALIAS}-v3", NEW, **{STAGED_FOR: "v2"})
    fake_cluster.add_index(f"{ALIAS}-v4", NEW)  # a build in progress, not staged
    fake_cluster.add_index(f"{ALIAS}-v5", ModelIdentity("other", "c" * 64, 8), **{STAGED_FOR: "v3"})
    assert staged_index(fake_cluster, ALIAS, NEW) == f"{ALIAS}-v3"
    assert staged_index(fake_cluster, ALIAS, ModelIdentity("none", "d" * 64, 8)) is None
    assert staged_index(fake_cluster, ALIAS, OLD) is None  # the serving one is not staged


def test_pruning_keeps_staged_indexes(fake_cluster: FakeCluster) -> None:
    fake_cluster.add_index(f"{ALIAS}-v1", OLD, alias=ALIAS)
    fake_cluster.add_index(f"{ALIAS}-v2", NEW, **{STAGED_FOR: "v2"})
    fake_cluster.add_index(f"{ALIAS}-v3", OLD, retired_at=1.0)
    assert prune_retired(fake_cluster, ALIAS, grace_s=0.0) == [f"{ALIAS}-v3"]
    assert f"{ALIAS}-v2" in fake_cluster.indices.metas


def test_staging_again_retires_the_earlier_staged_index_and_leaves_the_alias(
    fake_cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_cluster.add_index(f"{ALIAS}-v1", OLD, alias=ALIAS)
    fake_cluster.add_index(f"{ALIAS}-v2", NEW, **{STAGED_FOR: "v2"})
    fake_cluster.add_index(f"{ALIAS}-v3", NEW, **{STAGED_FOR: "v9"})
    built_with: dict[str, Any] = {}

    def build(products: Any, *, client: Any, config: OpenSearchConfig, **kwargs: Any) -> Any:
        built_with.update(kwargs)
        fake_cluster.add_index(f"{ALIAS}-v4", NEW, **{STAGED_FOR: kwargs["staged_for"]})
        return jobs.BuiltIndex(
            alias=config.index_alias, index=f"{ALIAS}-v4", meta={}, count=len(products)
        )

    monkeypatch.setattr(jobs, "build_index_version", build)
    result = jobs.reindex_catalog(
        [Product(id="p1", title="one")],
        config=OpenSearchSettings(index_alias=ALIAS),
        embedder=object(),  # type: ignore[arg-type]
        template=TextTemplate("{title}"),
        source="test",
        staged_for="v2",
        client=fake_cluster,
        progress=False,
    )
    assert built_with["staged_for"] == "v2"
    assert (result.index, result.replaced) == (f"{ALIAS}-v4", [f"{ALIAS}-v2"])
    assert "retired_at" in fake_cluster.indices.metas[f"{ALIAS}-v2"]
    assert "retired_at" not in fake_cluster.indices.metas[f"{ALIAS}-v3"]  # another version's
    assert fake_cluster.targets(ALIAS) == [f"{ALIAS}-v1"]
    assert not fake_cluster.indices.alias_calls
    assert staged_index(fake_cluster, ALIAS, NEW) == f"{ALIAS}-v4"


def test_a_store_follows_the_alias_to_an_index_of_the_same_embedder(
    fake_cluster: FakeCluster,
) -> None:
    fake_cluster.add_index(f"{ALIAS}-v1", OLD, alias=ALIAS)
    index = _open(fake_cluster)
    fake_cluster.add_index(f"{ALIAS}-v2", OLD, alias=ALIAS)  # a plain reindex
    assert index.search_text("one", 5)[0].product_id == "p1"
    assert index.search_text("one", 5)
    assert fake_cluster.searched == [ALIAS, ALIAS]
    assert index.pin.pinned is None


def test_a_store_stays_on_its_index_when_the_alias_moves_to_another_embedder(
    fake_cluster: FakeCluster,
) -> None:
    fake_cluster.add_index(f"{ALIAS}-v1", OLD, alias=ALIAS)
    index = _open(fake_cluster)
    fake_cluster.add_index(f"{ALIAS}-v2", NEW, alias=ALIAS)  # the new embedder's, swapped in
    index.search_vector([0.0] * 8, 5)
    index.search_vector([0.0] * 8, 5)
    assert fake_cluster.searched == [ALIAS, f"{ALIAS}-v1", f"{ALIAS}-v1"]
    assert index.pin.pinned == f"{ALIAS}-v1"
    # The index it stayed on is pruned: the alias again, where the other embedder's
    # vectors are refused, not searched.
    del fake_cluster.indices.metas[f"{ALIAS}-v1"]
    with pytest.raises(StoreError):
        index.search_vector([0.0] * 8, 5)
    assert fake_cluster.searched[-2:] == [ALIAS, f"{ALIAS}-v1"]
