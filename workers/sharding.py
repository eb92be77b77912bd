"""The tasks of a sharded catalog build (``index`` with ``shards`` > 1).

``workers.client`` submits ``index_plan`` → chord(``index_shard`` × n) → ``index_commit``,
with ``index_abandon`` linked as the commit's error callback: a shard that fails for good,
or a commit that refuses the shards, leaves nothing behind. The steps themselves are
``ranker.sharded_indexing``'s; these tasks pass plain values between them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ranker.settings import get_settings
from workers.tasks import JobTask, Upstream, _plain, job_task

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"


@job_task("index_plan")
def index_plan(
    self: JobTask, upstream: Upstream = None, *, shards: int, catalog: str | None = None
) -> dict[str, Any]:
    """Plan the build (the job's id is the build's) and keep the plan for the commit."""
    from indexer.catalog import sample_catalog_path
    from indexer.stores.atomic import write_json_atomic
    from ranker.sharded_indexing import BuildPlan, build_dir, plan_build

    settings = get_settings()
    build = str(self.request.id)
    stored = build_dir(settings, build) / PLAN_FILE
    if stored.is_file():  # a redelivered plan: the shards may be under way with it
        plan = BuildPlan.from_dict(_read_json(stored))
    else:
        source = Path(catalog) if catalog else sample_catalog_path()
        plan = plan_build(settings, build=build, catalog=source, shards=shards)
        write_json_atomic(stored, plan.as_dict())
    self.progress("planned", products=plan.count, shards=len(plan.shards))
    return plan.as_dict()


@job_task("index_shard")
def index_shard(self: JobTask, upstream: Upstream = None, *, shard: int) -> dict[str, Any]:
    """Embed one shard of the plan (the upstream result) with its pinned bi-encoder."""
    from ranker.sharded_indexing import (
        BuildPlan,
        ShardedBuildError,
        build_shard,
        pinned_embedder_source,
    )
    from workers.cache import cached_embedder

    if upstream is None:
        raise ShardedBuildError("index_shard needs the plan as its upstream result")
    settings = get_settings()
    plan = BuildPlan.from_dict(upstream)
    if shard >= len(plan.shards):  # a small catalog has fewer shards than asked for
        return {"shard": shard, "count": 0, "build": plan.build, "empty": True}
    embedder = cached_embedder(settings, pinned_embedder_source(settings, plan))
    self.progress("embed", shard=shard, shards=len(plan.shards))
    count = build_shard(settings, plan, shard, embedder=embedder)
    return {"shard": shard, "count": count, "build": plan.build}


@job_task("index_commit")
def index_commit(self: JobTask, upstream: Any = None, *, build: str) -> dict[str, Any]:
    """Check the shards' counts against the plan, build the stores, swap the index in."""
    from ranker.sharded_indexing import (
        BuildPlan,
        ShardedBuildError,
        build_dir,
        commit_build,
        committed_outcome,
        pinned_embedder_source,
    )
    from workers.cache import cached_embedder

    settings = get_settings()
    stored = build_dir(settings, build) / PLAN_FILE
    if not stored.is_file():  # a redelivered commit whose first run finished
        done = committed_outcome(settings, build)
        if done is None:
            raise ShardedBuildError(f"build {build} has no plan; submit the build again")
        return _plain(done.as_dict())
    plan = BuildPlan.from_dict(_read_json(stored))
    reports = [entry for entry in upstream or [] if not entry.get("empty")]
    self.progress("commit", products=plan.count, shards=len(plan.shards))
    embedder = cached_embedder(settings, pinned_embedder_source(settings, plan))
    outcome = commit_build(settings, plan, reports, embedder=embedder)
    return _plain(outcome.as_dict())


@job_task("index_abandon")
def index_abandon(self: JobTask, upstream: Any = None, *, build: str) -> dict[str, Any]:
    """The commit's error callback: remove the failed build's shards."""
    from ranker.sharded_indexing import abandon_build

    removed = abandon_build(get_settings(), build)
    logger.warning("build %s failed (task %s); removed its files: %s", build, upstream, removed)
    return {"build": build, "removed": removed}


def _read_json(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
