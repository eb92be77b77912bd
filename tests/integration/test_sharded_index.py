"""A sharded build's steps in one process: plan, shards in any order, commit, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate, load_products
from indexer.jobs import open_index, read_index_manifest
from ranker.embedder import Embedder
from ranker.serving_models import ModelSource
from ranker.settings import Settings
from ranker.sharded_indexing import (
    BuildPlan,
    ShardedBuildError,
    abandon_build,
    build_dir,
    build_shard,
    check_counts,
    commit_build,
    committed_outcome,
    load_plan,
    plan_build,
    shard_file,
    shard_ranges,
)


@pytest.fixture
def settings(integration_settings: Settings, tmp_path: Path) -> Settings:
    return integration_settings.model_copy(update={"home": tmp_path, "index_dir": tmp_path / "ix"})


def _plan(
    settings: Settings, build: str, catalog: Path, shards: int, embedder: Embedder
) -> BuildPlan:
    source = ModelSource(Path(settings.embedder.model or ""))
    return plan_build(
        settings,
        build=build,
        catalog=catalog,
        shards=shards,
        backend="embedded",
        source=source,
        embedder=embedder,
    )


def test_shard_ranges_cover_every_position_once() -> None:
    assert shard_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert shard_ranges(2, 5) == [(0, 1), (1, 2)]  # never an empty shard
    with pytest.raises(ShardedBuildError, match="between 1 and"):
        shard_ranges(10, 0)


def test_a_build_in_shards_equals_one_built_at_once(
    settings: Settings,
    subset_catalog_path: Path,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
) -> None:
    plan = _plan(settings, "b1", subset_catalog_path, 3, tiny_embedder)
    assert plan.count == len(catalog_subset)
    assert plan.embedder_path == str(Path(settings.embedder.model or ""))
    assert BuildPlan.from_dict(json.loads(json.dumps(plan.as_dict()))) == plan
    assert load_plan(settings, "b1") == plan
    assert _plan(settings, "b1", subset_catalog_path, 5, tiny_embedder) == plan  # kept

    reports = [
        {"shard": shard, "count": build_shard(settings, plan, shard, embedder=tiny_embedder)}
        for shard in (2, 0, 1)  # any order
    ]
    outcome = commit_build(settings, plan, reports, embedder=tiny_embedder)

    assert outcome.count == len(catalog_subset)
    assert not build_dir(settings, "b1").exists()  # the shards' files are gone
    manifest = read_index_manifest(settings.index_path)
    assert (manifest["build"], manifest["shards"], manifest["count"]) == ("b1", 3, plan.count)
    index = open_index(settings.index_path, expected=tiny_embedder.identity)
    try:
        ids = [p.id for p in load_products(subset_catalog_path)]
        template = TextTemplate(settings.index.text_template)
        expected = tiny_embedder.embed([template.render(p) for p in catalog_subset[:5]])
        np.testing.assert_allclose(index.vector_store.vectors(ids[:5]), expected, atol=1e-5)
        assert len(index.vector_store) == len(ids)
    finally:
        index.close()
    assert load_plan(settings, "b1") is None
    again = committed_outcome(settings, "b1", "embedded")  # what a redelivered commit reports
    assert again is not None
    assert again.count == outcome.count
    assert committed_outcome(settings, "other", "embedded") is None


def test_a_commit_refuses_missing_or_miscounted_shards_and_leaves_the_index(
    settings: Settings, subset_catalog_path: Path, tiny_embedder: Embedder
) -> None:
    plan = _plan(settings, "b2", subset_catalog_path, 2, tiny_embedder)
    first = build_shard(settings, plan, 0, embedder=tiny_embedder)

    with pytest.raises(ShardedBuildError, match=r"shard\(s\) \[1\] did not report"):
        commit_build(settings, plan, [{"shard": 0, "count": first}], embedder=tiny_embedder)
    with pytest.raises(ShardedBuildError, match="differ from the plan"):
        check_counts(plan, [{"shard": 0, "count": first - 1}, {"shard": 1, "count": 1}])
    with pytest.raises(ShardedBuildError, match="shard 1 wrote no vectors"):
        commit_build(
            settings,
            plan,
            [{"shard": 0, "count": first}, {"shard": 1, "count": plan.count - first}],
            embedder=tiny_embedder,
        )
    assert not settings.index_path.exists()
    assert shard_file(plan, 0).is_file()
    assert abandon_build(settings, "b2")
    assert not build_dir(settings, "b2").exists()


def test_a_catalog_changed_since_the_plan_is_refused(
    settings: Settings, subset_catalog_path: Path, tmp_path: Path, tiny_embedder: Embedder
) -> None:
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_bytes(subset_catalog_path.read_bytes())
    plan = _plan(settings, "b3", catalog, 2, tiny_embedder)
    lines = catalog.read_text(encoding="utf-8").splitlines()
    catalog.write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")

    with pytest.raises(ShardedBuildError, match="changed since the build was planned"):
        build_shard(settings, plan, 0, embedder=tiny_embedder)
