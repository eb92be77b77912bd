"""The tasks of a sharded catalog build (``index`` with ``shards`` > 1).

``workers.client`` submits ``index_plan`` → chord(``index_shard`` × n) → ``index_commit``,
with ``index_abandon`` linked as the commit's error callback: a shard that fails for good,
or a commit that refuses the shards, leaves nothing behind. The steps themselves are
``ranker.sharded_indexing``'s; these tasks pass plain values between them. Each embeds with
the bi-encoder the plan pinned, cached per worker process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.settings import get_settings
from workers.tasks import JobTask, Upstream, _plain, job_task

if TYPE_CHECKING:
    from ranker.indexing import IndexBackend

logger = logging.getLogger(__name__)


@job_task("index_plan")
def index_plan(
    self: JobTask,
    upstream: Upstream = None,
    *,
    shards: int,
    catalog: str | None = None,
    backend: IndexBackend | None = None,
) -> dict[str, Any]:
    """Plan the build (its id is the job's) with the bi-encoder that serves now."""
    from indexer.catalog import sample_catalog_path
    from ranker.indexing import IndexRequest, check_request, resolve_backend
    from ranker.serving_models import serving_source
    from ranker.sharded_indexing import plan_build
    from workers.cache import cached_embedder

    settings = get_settings()
    request = IndexRequest(backend=backend)
    chosen = resolve_backend(settings, request)
    check_request(request, chosen)
    source = serving_source(settings, "embedder")
    plan = plan_build(
        settings,
        build=str(self.request.id),
        catalog=Path(catalog) if catalog else sample_catalog_path(),
        shards=shards,
        backend=chosen,
        source=source,
        embedder=cached_embedder(settings, source),
    )
    self.progress("planned", products=plan.count, shards=len(plan.shards), index=plan.index)
    return plan.as_dict()


@job_task("index_shard")
def index_shard(self: JobTask, upstream: Upstream = None, *, shard: int) -> dict[str, Any]:
    """Embed and write one shard of the plan (the upstream result)."""
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
    if shard >= len(plan.shards):  # a catalog smaller than the number of shards asked for
        return {"shard": shard, "count": 0, "build": plan.build, "empty": True}
    embedder = cached_embedder(settings, pinned_embedder_source(settings, plan))
    self.progress("embed", shard=shard, shards=len(plan.shards))
    count = build_shard(settings, plan, shard, embedder=embedder)
    return {"shard": shard, "count": count, "build": plan.build}


@job_task("index_commit")
def index_commit(
    self: JobTask, upstream: Any = None, *, build: str, backend: IndexBackend | None = None
) -> dict[str, Any]:
    """Check the shards' counts against the plan and swap the build in."""
    from ranker.indexing import IndexRequest, resolve_backend
    from ranker.sharded_indexing import (
        ShardedBuildError,
        commit_build,
        committed_outcome,
        load_plan,
        pinned_embedder_source,
    )
    from workers.cache import cached_embedder

    settings = get_settings()
    plan = load_plan(settings, build)
    if plan is None:  # a redelivered commit whose first run finished
        chosen = resolve_backend(settings, IndexRequest(backend=backend))
        done = committed_outcome(settings, build, chosen)
        if done is None:
            raise ShardedBuildError(f"build {build} has no plan; submit the build again")
        return _plain(done.as_dict())
    reports = [entry for entry in upstream or [] if not entry.get("empty")]
    self.progress("commit", products=plan.count, shards=len(plan.shards))
    embedder = cached_embedder(settings, pinned_embedder_source(settings, plan))
    outcome = commit_build(settings, plan, reports, embedder=embedder)
    return _plain(outcome.as_dict())


@job_task("index_abandon")
def index_abandon(self: JobTask, upstream: Any = None, *, build: str) -> dict[str, Any]:
    """The commit's error callback: remove what the failed build left."""
    from ranker.sharded_indexing import abandon_build

    removed = abandon_build(get_settings(), build)
    logger.warning("build %s failed (task %s); removed what it left: %s", build, upstream, removed)
    return {"build": build, "removed": removed}
