"""Versioned indexes behind an alias: names, the atomic swap, retirement and pruning.

Searches and incremental writes go to the alias ``<alias>``; each full build writes a new
index ``<alias>-v<n>``. The swap moves the alias in one ``_aliases`` call (remove the old
indexes, add the new one), so a search sees the old index or the new one, never neither.
Replaced indexes are marked retired in their ``_meta`` and deleted by :func:`prune_retired`
once the grace period has passed, so searches that started on them can finish.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from indexer.stores.base import StoreError
from indexer.stores.opensearch.mapping import META_KEY

logger = logging.getLogger(__name__)


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

    Indexes behind the alias, and indexes never marked retired (a build in progress),
    are kept. Returns the names deleted.
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
