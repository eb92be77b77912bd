"""Versioned indexes behind an alias: names, the atomic swap, retirement and pruning.

Searches and incremental writes go to the alias ``<alias>``; each full build writes a new
index ``<alias>-v<n>``. The swap moves the alias in one ``_aliases`` call (remove the old
indexes, add the new one), so a search sees the old index or the new one, never neither.
Replaced indexes are marked retired in their ``_meta`` and deleted by :func:`prune_retired`
once the grace period has passed, so searches that started on them can finish.

An index built for a candidate bi-encoder waits beside the alias, marked in its ``_meta``
as staged for that embedder version (:data:`STAGED_FOR`), until promoting the embedder
swaps the alias to it (:func:`staged_index`, :func:`unstage`). Never retired, it is never
pruned; staging the same version again retires it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from indexer.stores.base import ModelIdentity, StoreError
from indexer.stores.opensearch.mapping import META_KEY, identity_from_meta

logger = logging.getLogger(__name__)

STAGED_FOR = "staged_for"
"""``_meta.shoprank`` key: the registry version of the embedder a staged index waits for."""
BUILD = "build"
"""``_meta.shoprank`` key: the sharded build that fills an index before its commit."""


def _version_pattern(alias: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(alias)}-v(\d+)$")


def versioned_indexes(client: Any, alias: str) -> dict[str, Mapping[str, Any]]:
    """Every ``<alias>-v<n>`` index and its ``_meta.shoprank`` (empty when it has none)."""
    found = client.indices.get_mapping(index=f"{alias}-v*", allow_no_indices=True)
    pattern = _version_pattern(alias)
    indexes: dict[str, Mapping[str, Any]] = {}
    for name, body in found.items():
        if pattern.match(name):
            meta = body.get("mappings", {}).get("_meta", {}).get(META_KEY, {})
            indexes[name] = meta
    return indexes


def next_index_name(client: Any, alias: str) -> str:
    """``<alias>-v<n>`` with ``n`` one above the highest version there is."""
    pattern = _version_pattern(alias)
    versions = [
        int(m.group(1)) for name in versioned_indexes(client, alias) if (m := pattern.match(name))
    ]
    return f"{alias}-v{max(versions, default=0) + 1}"


def alias_targets(client: Any, alias: str) -> list[str]:
    """The indexes ``alias`` points to now (none when the alias does not exist)."""
    if not client.indices.exists_alias(name=alias):
        if client.indices.exists(index=alias):
            raise StoreError(f"{alias!r} is an index, not an alias; rename or delete it first")
        return []
    return sorted(client.indices.get_alias(name=alias))


def swap_alias(client: Any, alias: str, new_index: str) -> list[str]:
    """Point ``alias`` at ``new_index`` alone, atomically; returns the indexes it left."""
    old = [name for name in alias_targets(client, alias) if name != new_index]
    actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": alias}} for name in old]
    actions.append({"add": {"index": new_index, "alias": alias}})
    client.indices.update_aliases(body={"actions": actions})
    logger.info("alias %s: %s -> %s", alias, ",".join(old) or "(none)", new_index)
    return old


def restore_alias(client: Any, alias: str, previous: Sequence[str], *, leaving: str) -> None:
    """Undo :func:`swap_alias`: point ``alias`` at ``previous`` again, atomically."""
    actions: list[dict[str, Any]] = [{"remove": {"index": leaving, "alias": alias}}]
    actions.extend({"add": {"index": name, "alias": alias}} for name in previous)
    client.indices.update_aliases(body={"actions": actions})
    logger.info("alias %s: back from %s to %s", alias, leaving, ",".join(previous))


def staged_for(meta: Mapping[str, Any]) -> str | None:
    """The embedder version an index was staged for (None: not staged)."""
    value = meta.get(STAGED_FOR)
    return str(value) if value is not None else None


def staged_index(client: Any, alias: str, identity: ModelIdentity) -> str | None:
    """The newest staged, unretired index off the alias whose vectors ``identity`` can
    search (None when there is none)."""
    live = set(alias_targets(client, alias))
    pattern = _version_pattern(alias)
    found = [
        (int(match.group(1)), name)
        for name, meta in versioned_indexes(client, alias).items()
        if name not in live
        and staged_for(meta) is not None
        and "retired_at" not in meta
        and "embedder" in meta
        and identity_from_meta(meta).compatible_with(identity)
        and (match := pattern.match(name))
    ]
    return max(found)[1] if found else None


def unstage(client: Any, index: str, meta: Mapping[str, Any]) -> None:
    """Drop the staged mark from ``index``'s ``_meta`` (it serves behind the alias now)."""
    kept = {key: value for key, value in meta.items() if key != STAGED_FOR}
    client.indices.put_mapping(index=index, body={"_meta": {META_KEY: kept}})


def mark_retired(
    client: Any, index: str, meta: Mapping[str, Any], *, now: float | None = None
) -> None:
    """Record in ``index``'s ``_meta`` when it left the alias."""
    retired = {**meta, "retired_at": time.time() if now is None else now}
    client.indices.put_mapping(index=index, body={"_meta": {META_KEY: retired}})


def prune_retired(
    client: Any, alias: str, *, grace_s: float, now: float | None = None
) -> list[str]:
    """Delete versioned indexes that left the alias at least ``grace_s`` seconds ago.

    Indexes behind the alias, and indexes never marked retired (a build in progress, or
    one staged for a candidate embedder), are kept. Returns the names deleted.
    """
    now = time.time() if now is None else now
    live = set(alias_targets(client, alias))
    deleted: list[str] = []
    for name, meta in sorted(versioned_indexes(client, alias).items()):
        retired_at = meta.get("retired_at")
        if name in live or retired_at is None or now - float(retired_at) < grace_s:
            continue
        client.indices.delete(index=name)
        deleted.append(name)
    if deleted:
        logger.info("deleted retired indexes %s", ", ".join(deleted))
    return deleted
