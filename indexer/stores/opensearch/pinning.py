"""Which index a store opened on an alias searches when the alias moves under it.

A store searches through the alias, so a full reindex with the same embedder is followed
at once. When the alias moves to an index built with another embedder (a bi-encoder
promoted with its staged index), the store's queries are still embedded by the old model:
each search answer names the index it came from, and on the first answer from such an
index the store pins itself to the index it opened (retired, it lives for the grace
period) and searches again there, until the API reopens the alias with the new embedder.
A query is never searched against another model's vectors. Should the pinned index be gone
(pruned), searches go through the alias again, and are checked again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from indexer.stores.base import ModelIdentity, StoreError
from indexer.stores.opensearch.mapping import META_KEY, identity_from_meta

logger = logging.getLogger(__name__)


class AliasPin:
    """The target of a store's searches: its alias, or the index it opened once the alias
    has moved to another embedder's vectors."""

    def __init__(
        self, client: Any, *, alias: str, opened: str | None, identity: ModelIdentity
    ) -> None:
        """``opened``: the index behind ``alias`` when the store checked its identity (None:
        ``alias`` names an index, nothing to follow)."""
        self.client = client
        self.alias = alias
        self.identity = identity
        self._current = opened
        self._pinned: str | None = None
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        """What to search: the pinned index, else the alias."""
        return self._pinned or self.alias

    @property
    def pinned(self) -> str | None:
        """The index searches stay on, None while they follow the alias."""
        return self._pinned

    def release(self) -> bool:
        """Follow the alias again (the pinned index is gone); False when not pinned."""
        with self._lock:
            pinned, self._pinned = self._pinned, None
        if pinned is not None:
            logger.warning("index %s is gone; searching alias %s again", pinned, self.alias)
        return pinned is not None

    def moved_away(self, hits: Sequence[Mapping[str, Any]]) -> bool:
        """Whether ``hits`` (searched through the alias) came from an index built with another
        embedder; then searches are pinned to the opened index and the caller searches again.
        An index with the same embedder (a plain reindex) is followed."""
        if self._current is None or self._pinned is not None:
            return False
        found = {str(hit["_index"]) for hit in hits if hit.get("_index")} - {self._current}
        if not found:
            return False
        with self._lock:
            if self._pinned is not None:
                return True
            for name in sorted(found):
                held = self._identity_of(name)
                if not held.compatible_with(self.identity):
                    logger.warning(
                        "alias %s moved to %s, built with embedder %s; searches with %s "
                        "stay on %s until the index is reopened",
                        self.alias,
                        name,
                        held.model_id,
                        self.identity.model_id,
                        self._current,
                    )
                    self._pinned = self._current
                    return True
            logger.info("alias %s moved to %s (same embedder); following it", self.alias, name)
            self._current = name
        return False

    def _identity_of(self, index: str) -> ModelIdentity:
        """The embedder ``index`` was built with (opensearch-py's errors pass through)."""
        found = self.client.indices.get_mapping(index=index)
        meta = found.get(index, {}).get("mappings", {}).get("_meta", {}).get(META_KEY)
        if not meta:
            raise StoreError(f"index {index!r} behind {self.alias!r} has no _meta.{META_KEY}")
        return identity_from_meta(meta)
