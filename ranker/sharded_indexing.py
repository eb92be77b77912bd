"""A full build of a large catalog in shards: planned once, embedded apart, committed once.

The workers run it as ``index_plan`` → a chord of ``index_shard`` tasks → ``index_commit``
(``workers.sharding``), so shards embed on as many workers as there are, and a failed shard
is retried alone. Each step is a plain function of ids and paths:

1. :func:`plan_build` reads the catalog, cuts it into contiguous shards and pins the
   bi-encoder that embeds every shard, so a promotion during the build never mixes two
   models' vectors in one index. On OpenSearch it creates the next versioned index, behind
   no alias. The plan is kept as JSON in the build's directory.
2. :func:`build_shard` embeds one shard and writes it: embedded, its vectors into the
   build's directory (a temporary file, then a rename); OpenSearch, a bulk into the new
   index (product ids as document ids). A shard that runs again overwrites its own part.
3. :func:`commit_build` checks that every shard reported, that their counts add up to the
   catalog's and that the catalog did not change since the plan. Embedded, it builds the
   stores from the shards' vectors and swaps the index directory in one step; OpenSearch,
   it verifies the index (count and a sample query) and swaps the alias.

Nothing serves from a build until its commit; :func:`abandon_build` removes what a failed
build left (its files, and on OpenSearch its index).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from indexer.stores.atomic import write_json_atomic
from ranker.errors import ShoprankError
from ranker.indexing import IndexBackend, IndexOutcome
from ranker.serving_models import ModelSource, open_registry
from ranker.settings import Settings

if TYPE_CHECKING:
    from indexer.catalog import Product
    from indexer.jobs import ProductEmbedder

logger = logging.getLogger(__name__)

BUILDS_DIR = "builds"
PLAN_FILE = "plan.json"
MAX_SHARDS = 1024


class ShardedBuildError(ShoprankError, ValueError):
    """A sharded build that cannot go on: a missing shard, counts that do not add up, a
    catalog that changed since the plan, or an index that is gone."""


@dataclass(frozen=True)
class BuildPlan:
    """What every step of one sharded build agrees on (plain values, for JSON)."""

    build: str
    """The build's id (the job's)."""
    backend: IndexBackend
    catalog: str
    catalog_sha256: str
    count: int
    shards: list[tuple[int, int]]
    """Each shard's ``[start, stop)`` range of catalog positions."""
    embedder_path: str
    """The pinned bi-encoder's directory."""
    embedder_version: str | None
    """Its registry version (``v3``), verified again by each step; None: outside it."""
    work_dir: str
    index: str | None = None
    """OpenSearch: the versioned index the shards fill."""

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildPlan:
        """The plan ``as_dict`` wrote (JSON turns the ranges into lists)."""
        backend: Literal["embedded", "opensearch"] = (
            "opensearch" if data["backend"] == "opensearch" else "embedded"
        )
        return cls(
            build=str(data["build"]),
            backend=backend,
            catalog=str(data["catalog"]),
            catalog_sha256=str(data["catalog_sha256"]),
            count=int(data["count"]),
            shards=[(int(start), int(stop)) for start, stop in data["shards"]],
            embedder_path=str(data["embedder_path"]),
            embedder_version=data.get("embedder_version"),
            work_dir=str(data["work_dir"]),
            index=data.get("index"),
        )


def shard_ranges(count: int, shards: int) -> list[tuple[int, int]]:
    """``count`` positions cut into at most ``shards`` contiguous ranges of near-equal size."""
    if not 1 <= shards <= MAX_SHARDS:
        raise ShardedBuildError(f"shards must be between 1 and {MAX_SHARDS}, got {shards}")
    shards = min(shards, count)
    size, extra = divmod(count, shards)
    ranges = []
    start = 0
    for shard in range(shards):
        stop = start + size + (1 if shard < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def build_dir(settings: Settings, build: str) -> Path:
    """Where a build keeps its plan (and, embedded, its shards' vectors) until its commit."""
    return settings.home / BUILDS_DIR / build


def load_plan(settings: Settings, build: str) -> BuildPlan | None:
    """The plan of build ``build``; None once it was committed or abandoned."""
    path = build_dir(settings, build) / PLAN_FILE
    if not path.is_file():
        return None
    return BuildPlan.from_dict(json.loads(path.read_text(encoding="utf-8")))


def plan_build(
    settings: Settings,
    *,
    build: str,
    catalog: Path,
    shards: int,
    backend: IndexBackend,
    source: ModelSource,
    embedder: ProductEmbedder,
) -> BuildPlan:
    """Plan the build of ``catalog`` in ``shards`` shards with ``embedder`` (loaded from
    ``source``, which the plan pins), and keep the plan. A plan already kept for ``build``
    (a redelivered task) is handed back as it is."""
    from ranker.training.jobs import file_sha256

    kept = load_plan(settings, build)
    if kept is not None:
        return kept
    products = _catalog(catalog, os.stat(catalog).st_mtime_ns)
    if not products:
        raise ShardedBuildError(f"{catalog}: the catalog has no products")
    work = build_dir(settings, build)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    plan = BuildPlan(
        build=build,
        backend=backend,
        catalog=str(catalog),
        catalog_sha256=file_sha256(catalog),
        count=len(products),
        shards=shard_ranges(len(products), shards),
        embedder_path=str(source.path),
        embedder_version=source.version.version if source.version is not None else None,
        work_dir=str(work),
    )
    if backend == "opensearch":
        from ranker import sharded_opensearch

        plan = sharded_opensearch.with_build_index(settings, plan, embedder)
    write_json_atomic(work / PLAN_FILE, plan.as_dict())
    logger.info(
        "build %s: %d products of %s in %d shards into %s, bi-encoder %s",
        build,
        plan.count,
        catalog,
        len(plan.shards),
        plan.index or settings.index_path,
        source.label,
    )
    return plan


def pinned_embedder_source(settings: Settings, plan: BuildPlan) -> ModelSource:
    """The bi-encoder the plan pinned (a registry version is verified again)."""
    if plan.embedder_version is None:
        return ModelSource(Path(plan.embedder_path))
    version = open_registry(settings).verify("embedder", plan.embedder_version)
    return ModelSource(version.path, version)


def shard_file(plan: BuildPlan, shard: int) -> Path:
    """The vectors file of shard ``shard`` (embedded builds)."""
    return Path(plan.work_dir) / f"shard-{shard:05d}.npy"


def build_shard(
    settings: Settings, plan: BuildPlan, shard: int, *, embedder: ProductEmbedder
) -> int:
    """Embed shard ``shard`` with the pinned ``embedder`` and write it; its product count."""
    from indexer.catalog import TextTemplate

    if not 0 <= shard < len(plan.shards):
        raise ShardedBuildError(f"build {plan.build} has no shard {shard}")
    start, stop = plan.shards[shard]
    products = _planned_catalog(plan)[start:stop]
    template = TextTemplate(settings.index.text_template)
    if plan.backend == "opensearch":
        from indexer.stores.opensearch.client import make_client
        from indexer.stores.opensearch.jobs import load_into

        load_into(
            make_client(settings.opensearch),
            str(plan.index),
            products,
            config=settings.opensearch,
            embedder=embedder,
            template=template,
            source=f"{plan.catalog} shard {shard}",
        )
    else:
        vectors = embedder.embed([template.render(product) for product in products])
        _write_vectors(shard_file(plan, shard), vectors)
    logger.info("build %s: shard %d wrote %d products", plan.build, shard, len(products))
    return len(products)


def commit_build(
    settings: Settings,
    plan: BuildPlan,
    counts: Iterable[Mapping[str, Any]],
    *,
    embedder: ProductEmbedder,
) -> IndexOutcome:
    """Check the shards' reports (``{"shard": i, "count": n}`` each) against the plan, then
    swap the build in: the index directory, or the alias."""
    products = _planned_catalog(plan)
    check_counts(plan, counts)
    if plan.backend == "opensearch":
        from ranker import sharded_opensearch

        outcome = sharded_opensearch.commit_to_alias(settings, plan, products, embedder)
    else:
        outcome = _commit_embedded(settings, plan, products, embedder)
    shutil.rmtree(plan.work_dir, ignore_errors=True)
    return outcome


def check_counts(plan: BuildPlan, counts: Iterable[Mapping[str, Any]]) -> None:
    """Raise ShardedBuildError unless each shard reported once, with its range's size."""
    reported = {int(entry["shard"]): int(entry["count"]) for entry in counts}
    expected = {shard: stop - start for shard, (start, stop) in enumerate(plan.shards)}
    missing = sorted(set(expected) - set(reported))
    if missing:
        raise ShardedBuildError(f"build {plan.build}: shard(s) {missing} did not report")
    wrong = {shard: n for shard, n in reported.items() if expected.get(shard) != n}
    if wrong:
        planned = {shard: expected.get(shard) for shard in wrong}
        raise ShardedBuildError(
            f"build {plan.build}: shard counts {wrong} differ from the plan's {planned}"
        )


def committed_outcome(settings: Settings, build: str, backend: IndexBackend) -> IndexOutcome | None:
    """What build ``build`` did, when what serves now is what it committed; else None."""
    from indexer.jobs import read_index_manifest
    from indexer.stores.base import StoreError

    if backend == "opensearch":
        from ranker import sharded_opensearch

        return sharded_opensearch.committed_behind_alias(settings, build)
    try:
        manifest = read_index_manifest(settings.index_path)
    except StoreError:
        return None
    if manifest.get("build") != build:
        return None
    return _embedded_outcome(settings, manifest)


def abandon_build(settings: Settings, build: str) -> bool:
    """Remove what build ``build`` left: its files, and on OpenSearch the index it filled
    (never one behind the alias). Whether there was anything to remove."""
    plan = load_plan(settings, build)
    if plan is not None and plan.index is not None:
        from ranker import sharded_opensearch

        sharded_opensearch.delete_build_index(settings, plan)
    work = build_dir(settings, build)
    if not work.exists():
        return plan is not None
    shutil.rmtree(work, ignore_errors=True)
    logger.info("build %s abandoned; its files were removed", build)
    return True


def _write_vectors(target: Path, vectors: Any) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with partial.open("wb") as handle:
        np.save(handle, np.asarray(vectors, dtype=np.float32))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)


def _read_vectors(plan: BuildPlan, shard: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    path = shard_file(plan, shard)
    if not path.is_file():
        raise ShardedBuildError(f"build {plan.build}: shard {shard} wrote no vectors ({path})")
    vectors: np.ndarray[Any, np.dtype[np.float32]] = np.load(path, allow_pickle=False)
    return vectors


def _commit_embedded(
    settings: Settings, plan: BuildPlan, products: Sequence[Product], embedder: ProductEmbedder
) -> IndexOutcome:
    from indexer.catalog import TextTemplate
    from indexer.jobs import write_index
    from ranker.loading import dense_index_options

    vectors = np.concatenate([_read_vectors(plan, shard) for shard in range(len(plan.shards))])
    manifest = write_index(
        products,
        vectors,
        settings.index_path,
        identity=embedder.identity,
        template=TextTemplate(settings.index.text_template),
        source=plan.catalog,
        extra={"build": plan.build, "shards": len(plan.shards)},
        **dense_index_options(settings),
    )
    return _embedded_outcome(settings, manifest)


def _embedded_outcome(settings: Settings, manifest: Mapping[str, Any]) -> IndexOutcome:
    count = int(manifest["count"])
    return IndexOutcome(
        "embedded",
        "build",
        count,
        str(settings.index_path),
        f"indexed {count} products into {settings.index_path} from {manifest['shards']} "
        f"shards ({manifest['dense_index']} + BM25)",
        {"dense_index": manifest["dense_index"], "source": manifest["source"]}
        | {"build": manifest["build"], "shards": manifest["shards"]},
    )


def _planned_catalog(plan: BuildPlan) -> Sequence[Product]:
    """The plan's catalog, refused when it changed since the plan (count or hash)."""
    from ranker.training.jobs import file_sha256

    path = Path(plan.catalog)
    products = _catalog(path, os.stat(path).st_mtime_ns)
    if len(products) != plan.count or file_sha256(path) != plan.catalog_sha256:
        raise ShardedBuildError(
            f"build {plan.build}: {plan.catalog} changed since the build was planned; "
            "submit the build again"
        )
    return products


@functools.lru_cache(maxsize=2)
def _catalog(path: Path, mtime_ns: int) -> list[Product]:
    """The catalog at ``path``, read once per worker process and version of the file."""
    from indexer.catalog import load_products

    return load_products(path)
