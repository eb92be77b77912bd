"""A full build of a large catalog in shards: planned once, embedded apart, committed once.

The workers run it as ``index_plan`` → a chord of ``index_shard`` tasks → ``index_commit``
(``workers.tasks``), so shards embed on as many workers as there are, and a failed shard
is retried alone. Each step is a plain function of ids and paths:

1. :func:`plan_build` reads the catalog, cuts it into contiguous shards and pins the
   bi-encoder version that embeds every shard, so a promotion during the build never mixes
   two models' vectors in one index. The plan is JSON.
2. :func:`build_shard` embeds one shard and writes its vectors into the build's directory
   (a temporary file, then a rename). A shard that runs again overwrites its own file.
3. :func:`commit_build` checks that every shard reported, that their counts add up to the
   catalog's and that the catalog did not change since the plan, then builds the stores
   from the shards' vectors and swaps the index directory in one step.

Nothing serves from a build until it is committed; :func:`abandon_build` removes what a
failed build left.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ranker.errors import ShoprankError
from ranker.indexing import IndexOutcome
from ranker.serving_models import ModelSource, open_registry, serving_source
from ranker.settings import Settings

if TYPE_CHECKING:
    from indexer.catalog import Product
    from indexer.jobs import ProductEmbedder

logger = logging.getLogger(__name__)

BUILDS_DIR = "builds"
MAX_SHARDS = 1024


class ShardedBuildError(ShoprankError, ValueError):
    """A sharded build that cannot be committed: a missing shard, counts that do not add
    up, or a catalog that changed since the plan."""


@dataclass(frozen=True)
class BuildPlan:
    """What every step of one sharded build agrees on (plain values, for JSON)."""

    build: str
    """The build's id (the job's)."""
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

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildPlan:
        """The plan ``as_dict`` wrote (JSON turns the ranges into lists)."""
        return cls(
            build=str(data["build"]),
            catalog=str(data["catalog"]),
            catalog_sha256=str(data["catalog_sha256"]),
            count=int(data["count"]),
            shards=[(int(start), int(stop)) for start, stop in data["shards"]],
            embedder_path=str(data["embedder_path"]),
            embedder_version=data.get("embedder_version"),
            work_dir=str(data["work_dir"]),
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
    """Where a build keeps its shards' vectors until it is committed."""
    return settings.home / BUILDS_DIR / build


def plan_build(settings: Settings, *, build: str, catalog: Path, shards: int) -> BuildPlan:
    """Plan the build of ``catalog`` in ``shards`` shards with the bi-encoder serving now."""
    from ranker.training.jobs import file_sha256

    products = _catalog(catalog, os.stat(catalog).st_mtime_ns)
    if not products:
        raise ShardedBuildError(f"{catalog}: the catalog has no products")
    source = serving_source(settings, "embedder")
    work = build_dir(settings, build)
    shutil.rmtree(work, ignore_errors=True)  # a plan that runs again starts clean
    work.mkdir(parents=True)
    plan = BuildPlan(
        build=build,
        catalog=str(catalog),
        catalog_sha256=file_sha256(catalog),
        count=len(products),
        shards=shard_ranges(len(products), shards),
        embedder_path=str(source.path),
        embedder_version=source.version.version if source.version is not None else None,
        work_dir=str(work),
    )
    logger.info(
        "build %s: %d products of %s in %d shards, bi-encoder %s",
        build,
        plan.count,
        catalog,
        len(plan.shards),
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
    """The vectors file of shard ``shard``."""
    return Path(plan.work_dir) / f"shard-{shard:05d}.npy"


def build_shard(
    settings: Settings, plan: BuildPlan, shard: int, *, embedder: ProductEmbedder
) -> int:
    """Embed shard ``shard`` with the pinned ``embedder`` and write its vectors; the count."""
    from indexer.catalog import TextTemplate

    if not 0 <= shard < len(plan.shards):
        raise ShardedBuildError(f"build {plan.build} has no shard {shard}")
    start, stop = plan.shards[shard]
    products = _planned_catalog(plan)[start:stop]
    template = TextTemplate(settings.index.text_template)
    vectors = embedder.embed([template.render(product) for product in products])
    target = shard_file(plan, shard)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    with partial.open("wb") as handle:
        np.save(handle, np.asarray(vectors, dtype=np.float32))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    logger.info("build %s: shard %d embedded %d products", plan.build, shard, len(products))
    return len(products)


def commit_build(
    settings: Settings,
    plan: BuildPlan,
    counts: Iterable[Mapping[str, Any]],
    *,
    embedder: ProductEmbedder,
) -> IndexOutcome:
    """Check the shards' reports (``{"shard": i, "count": n}`` each) against the plan, build
    the stores from their vectors and swap them in as the index directory."""
    from indexer.catalog import TextTemplate
    from indexer.jobs import write_index
    from ranker.loading import dense_index_options

    products = _planned_catalog(plan)
    check_counts(plan, counts)
    vectors = np.concatenate([_read_shard(plan, shard) for shard in range(len(plan.shards))])
    if vectors.shape[0] != plan.count:
        raise ShardedBuildError(
            f"build {plan.build}: {vectors.shape[0]} vectors for {plan.count} products"
        )
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
    shutil.rmtree(plan.work_dir, ignore_errors=True)
    return _outcome(settings, manifest)


def committed_outcome(settings: Settings, build: str) -> IndexOutcome | None:
    """What build ``build`` did when the serving index is the one it committed, else None."""
    from indexer.jobs import read_index_manifest
    from indexer.stores.base import StoreError

    try:
        manifest = read_index_manifest(settings.index_path)
    except StoreError:
        return None
    return _outcome(settings, manifest) if manifest.get("build") == build else None


def _outcome(settings: Settings, manifest: Mapping[str, Any]) -> IndexOutcome:
    count = int(manifest["count"])
    return IndexOutcome(
        "embedded",
        "build",
        count,
        str(settings.index_path),
        f"indexed {count} products into {settings.index_path} from {manifest['shards']} "
        f"shards ({manifest['dense_index']} + BM25)",
        {
            "dense_index": manifest["dense_index"],
            "source": manifest["source"],
            "build": manifest["build"],
            "shards": manifest["shards"],
        },
    )


def check_counts(plan: BuildPlan, counts: Iterable[Mapping[str, Any]]) -> None:
    """Raise ShardedBuildError unless each shard reported once, with its range's size."""
    reported: dict[int, int] = {}
    for entry in counts:
        reported[int(entry["shard"])] = int(entry["count"])
    expected = {shard: stop - start for shard, (start, stop) in enumerate(plan.shards)}
    missing = sorted(set(expected) - set(reported))
    if missing:
        raise ShardedBuildError(f"build {plan.build}: shard(s) {missing} did not report")
    wrong = {shard: n for shard, n in reported.items() if expected.get(shard) != n}
    if wrong:
        raise ShardedBuildError(
            f"build {plan.build}: shard counts {wrong} differ from the plan's "
            f"{ {shard: expected.get(shard) for shard in wrong} }"
        )
    if sum(reported.values()) != plan.count:
        raise ShardedBuildError(
            f"build {plan.build}: shards hold {sum(reported.values())} products, "
            f"the catalog {plan.count}"
        )


def abandon_build(settings: Settings, build: str) -> bool:
    """Remove what build ``build`` left (its shards' vectors); whether there was anything."""
    work = build_dir(settings, build)
    if not work.exists():
        return False
    shutil.rmtree(work, ignore_errors=True)
    logger.info("build %s abandoned; its shards were removed", build)
    return True


def _read_shard(plan: BuildPlan, shard: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    path = shard_file(plan, shard)
    if not path.is_file():
        raise ShardedBuildError(f"build {plan.build}: shard {shard} wrote no vectors ({path})")
    vectors: np.ndarray[Any, np.dtype[np.float32]] = np.load(path, allow_pickle=False)
    return vectors


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
