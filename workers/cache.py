"""Models kept per worker process, keyed by the registry version (or directory) they are.

A worker runs many jobs; loading the bi-encoder for each would cost more than some jobs
do, so the index, shard and evaluate jobs share one. A newly promoted version has another
key, so it is loaded on its first use and the oldest entry is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ranker.settings import Settings

if TYPE_CHECKING:
    from ranker.embedder import Embedder
    from ranker.serving_models import ModelSource

MAX_MODELS = 2

_models: OrderedDict[tuple[str, ...], Any] = OrderedDict()
_lock = threading.Lock()


def cached_embedder(settings: Settings, source: ModelSource | None = None) -> Embedder:
    """The bi-encoder ``source`` names (default: the one that serves now), loaded once per
    worker process and version."""
    from ranker.loading import load_embedder
    from ranker.serving_models import serving_source

    source = source or serving_source(settings, "embedder")
    key = ("embedder", source.label, str(source.path), settings.embedder.backend)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            embedder: Embedder = _models[key]
            return embedder
    embedder = load_embedder(settings, source=source)
    with _lock:
        _models[key] = embedder
        while len(_models) > MAX_MODELS:
            _models.popitem(last=False)
    return embedder


def clear() -> None:
    """Forget every cached model."""
    with _lock:
        _models.clear()
