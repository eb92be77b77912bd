"""A bounded, thread-safe LRU cache keyed by text, for work reused across requests (token ids,
vectors, parsed products)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


class TextCache(Generic[V]):
    """Maps texts to values computed once (token ids, vectors), evicting the least recent.

    ``max_size`` 0 disables caching: every lookup computes. Values must not be mutated by
    callers, since one value is shared by every request that hits it.
    """

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        self.max_size = max_size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get_many(
        self, texts: Sequence[str], compute: Callable[[list[str]], Sequence[V]]
    ) -> list[V]:
        """The values of ``texts`` in order; misses are computed in one ``compute`` call."""
        if self.max_size == 0:
            return list(compute(list(texts)))
        found: dict[str, V] = {}
        with self._lock:
            for text in texts:
                value = self._items.get(text)
                if value is not None:
                    self._items.move_to_end(text)
                    found[text] = value
            missing = list(dict.fromkeys(t for t in texts if t not in found))
            self.hits += len(texts) - sum(1 for t in texts if t not in found)
            self.misses += len(missing)
        if missing:
            computed = compute(missing)
            with self._lock:
                for text, value in zip(missing, computed, strict=True):
                    found[text] = value
                    self._items[text] = value
                    self._items.move_to_end(text)
                while len(self._items) > self.max_size:
                    self._items.popitem(last=False)
        return [found[text] for text in texts]

    def get(self, text: str) -> V | None:
        """The value kept for ``text`` (now the most recent), or None."""
        with self._lock:
            value = self._items.get(text)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(text)
            self.hits += 1
            return value

    def put(self, text: str, value: V) -> None:
        """Keep ``value`` for ``text``, evicting the least recent beyond ``max_size``."""
        if self.max_size == 0:
            return
        with self._lock:
            self._items[text] = value
            self._items.move_to_end(text)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._items.clear()
            self.hits = 0
            self.misses = 0
