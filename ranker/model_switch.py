"""Promoting a version: the gate, then one switch.

A reranker's switch is the production pointer alone. A bi-encoder whose vectors the index
cannot search (a fine-tuned one, not an export of the same weights) needs its own index: it
is built beside the serving one (:func:`stage_index`, ``shoprank index --for-embedder vN``)
and swapped into the index directory back to back with the pointer (one atomic exchange of
the two directories, then the pointer), so the API, which reopens the index when the
embedder moves, never searches one model's vectors with the other's query.

With ``index.backend = "opensearch"`` the same holds for the alias: the candidate's index
is built and verified beside it (``shoprank index --backend opensearch --for-embedder vN``),
and promoting the bi-encoder moves the alias to it in one ``_aliases`` call back to back
with the pointer (see :mod:`ranker.opensearch_switch`). Either way a refused promotion, or
a pointer that cannot move, leaves the index serving as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexer.catalog import CatalogInput, sample_catalog_path
from indexer.jobs import read_index_manifest
from indexer.stores.atomic import exchange_paths, fsync_directory
from indexer.stores.base import ModelIdentity, StoreError
from ranker.embedder import model_identity
from ranker.model_files import lineage, read_manifest
from ranker.promotion import GateDecision, promote_gated
from ranker.registry import ModelVersion, Registry, RegistryError, check_role
from ranker.serving_models import ModelSource, open_registry
from ranker.settings import Settings

logger = logging.getLogger(__name__)


def staged_index_path(settings: Settings, version: str) -> Path:
    """Where the index for embedder ``version`` is built before it serves."""
    index = settings.index_path
    return index.with_name(f".{index.name}.staged-embedder-{version}")


def stage_index(
    settings: Settings, version: str, *, catalog: CatalogInput | None = None, progress: bool = True
) -> dict[str, Any]:
    """Build the embedded index of ``catalog`` with embedder ``version`` beside the serving
    index; :func:`promote` swaps it in with the embedder. Returns its manifest."""
    from ranker.loading import build_default_index, load_embedder

    candidate = open_registry(settings).verify("embedder", version)
    embedder = load_embedder(settings, source=ModelSource(candidate.path, candidate))
    target = settings.model_copy(update={"index_dir": staged_index_path(settings, version)})
    manifest = build_default_index(
        target, catalog or sample_catalog_path(), embedder=embedder, progress=progress
    )
    logger.info("built the index for %s in %s", candidate.ref, target.index_path)
    return manifest


def promote(
    settings: Settings, role: str, version: str, *, actor: str, force: bool = False
) -> GateDecision:
    """The gate, then the switch (see the module doc). Raises PromotionRefusedError when
    the gate refuses, RegistryError when a bi-encoder's index is not built yet."""
    registry = open_registry(settings)
    blockers = prior_blockers(registry, registry.verify(role, version))
    if check_role(role) == "embedder" and settings.index.backend == "opensearch":
        from ranker.opensearch_switch import alias_switch

        identity = _identity(registry.verify(role, version).path)
        return promote_gated(
            registry,
            role,
            version,
            settings.registry,
            actor=actor,
            force=force,
            switch=alias_switch(settings, version, identity),
            blockers=blockers,
        )
    if check_role(role) == "reranker" or _index_accepts(settings, registry.verify(role, version)):
        return promote_gated(
            registry, role, version, settings.registry, actor=actor, force=force, blockers=blockers
        )
    staged = staged_index_path(settings, version)
    candidate = registry.get(role, version)
    if not _index_accepts(settings, candidate, index_dir=staged):
        raise RegistryError(
            f"{candidate.ref} changes the vectors the index holds; build its index first "
            f"(shoprank index --for-embedder {version}), then promote it"
        )

    @contextlib.contextmanager
    def switch() -> Iterator[None]:
        _swap(staged, settings.index_path)
        try:
            yield
        except BaseException:
            _swap(staged, settings.index_path)  # back: the old index with the old embedder
            raise
        shutil.rmtree(staged, ignore_errors=True)  # the replaced index

    return promote_gated(
        registry,
        role,
        version,
        settings.registry,
        actor=actor,
        force=force,
        switch=switch,
        blockers=blockers,
    )


def prior_blockers(registry: Registry, candidate: ModelVersion) -> list[str]:
    """Why ``candidate`` could not serve beside the other role's production version: a
    reranker's dense prior needs the bi-encoder it was trained with (or an export of it),
    so a reranker and a bi-encoder that do not match cannot both serve."""
    other = registry.production("embedder" if candidate.role == "reranker" else "reranker")
    if other is None:
        return []
    reranker, embedder = (candidate, other) if candidate.role == "reranker" else (other, candidate)
    declared = (read_manifest(reranker.path) or {}).get("prior") or {}
    needed = (declared.get("embedder") or {}).get("weights_sha256")
    if not needed or needed in lineage(embedder.path):
        return []
    return [
        f"{reranker.ref}'s prior was trained with the bi-encoder {str(needed)[:12]}, not "
        f"{embedder.ref}: train a reranker on the bi-encoder that will serve and promote the "
        "two in turn (--force promotes anyway; the reranker then does not load)"
    ]


def _swap(first: Path, second: Path) -> None:
    if not exchange_paths(first, second):
        raise RegistryError(
            f"cannot swap {first} and {second} atomically on this file system; stop the API, "
            "move the staged index into place, then promote"
        )
    fsync_directory(second.parent)


def _index_accepts(
    settings: Settings, version: ModelVersion, *, index_dir: Path | None = None
) -> bool:
    """Whether the index (the serving one by default) holds vectors this embedder's queries
    can search. No index at all accepts any embedder."""
    directory = index_dir or settings.index_path
    try:
        built = read_index_manifest(directory)["embedder"]
    except StoreError:
        return index_dir is None
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"{directory}: its manifest names no embedder") from exc
    held = ModelIdentity(
        model_id=str(built["model_id"]),
        weights_sha256=str(built["weights_sha256"]),
        dimension=int(built["dimension"]),
    )
    return held.compatible_with(_identity(version.path))


def _identity(model_dir: Path) -> ModelIdentity:
    """A bi-encoder's identity read from its files (mean pooling: hidden size dimensions)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return model_identity(model_dir, dimension=int(config.get("hidden_size", 0)))
