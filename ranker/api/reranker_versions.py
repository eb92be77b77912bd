"""Registered reranker versions other than the serving one, loaded on demand for
``POST /search`` with ``model_version`` (the workbench compares production with a candidate).

Only versions the registry holds can be named, and each is verified against its manifest's
file hashes before it loads (a version whose files changed answers 422 ``integrity``, an
unknown one 404). A loaded version is kept, at most :data:`MAX_CACHED_VERSIONS` of them
(least recently used goes first), and loaded again when its files change. The serving
version is never loaded twice: asking for it returns the snapshot's own reranker. These
models have no scheduler: their requests run unbatched, which suits a comparison page.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ranker.api.errors import BackendFailedError
from ranker.api.model_loading import (
    FactoryLoader,
    ModelLoader,
    files_fingerprint,
    load_failure,
    source_label,
)
from ranker.api.service import Snapshot
from ranker.api.service_loading import attach_catalog_vectors
from ranker.embedder import Embedder
from ranker.pipeline import SearchPipeline
from ranker.registry import Registry, VersionNotFoundError
from ranker.reranker import Reranker
from ranker.serving_models import ModelSource
from ranker.settings import Settings

logger = logging.getLogger(__name__)

MAX_CACHED_VERSIONS = 2
"""Non-serving reranker versions kept loaded at once."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    reranker: Reranker
    source: ModelSource
    embedder: Embedder | None
    fingerprint: tuple[tuple[str, int, int, int], ...]


class RerankerVersions:
    """Loads and keeps registered reranker versions for requests that name one."""

    def __init__(self, settings: Settings, *, loader: ModelLoader | None = None) -> None:
        self.settings = settings
        self.loader = loader or FactoryLoader()
        self._cache: OrderedDict[str, _Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def snapshot_with(self, snapshot: Snapshot, version: str) -> Snapshot:
        """``snapshot`` with reranker ``version`` (``v3``) in place of the serving one, its
        pipelines sharing the same stores; ``snapshot`` itself when that version serves.
        The serving reranker's cost model does not describe another version, so the copy
        has none (``rerank_depth: "auto"`` then reranks to the configured depth).

        Blocks while a version loads; call it from a worker thread. Raises the registry's
        VersionNotFoundError or IntegrityError, or BackendFailedError when it cannot load.
        """
        serving = snapshot.reranker_source
        if (
            serving is not None
            and serving.version is not None
            and serving.version.version == version
        ):
            return snapshot
        loaded = self._get(version, snapshot)
        return dataclasses.replace(
            snapshot,
            reranker=loaded.reranker,
            reranker_source=loaded.source,
            pipeline=_with(snapshot.pipeline, loaded.reranker),
            fallback=_with(snapshot.fallback, loaded.reranker),
            reranker_cost=None,
        )

    def _get(self, version: str, snapshot: Snapshot) -> _Loaded:
        with self._lock:
            found = self._cache.get(version)
            if found is not None and self._still_current(found, snapshot):
                self._cache.move_to_end(version)
                return found
            self._cache.pop(version, None)
            loaded = self._load(version, snapshot)
            self._cache[version] = loaded
            while len(self._cache) > MAX_CACHED_VERSIONS:
                evicted, _ = self._cache.popitem(last=False)
                logger.info(
                    "reranker/%s unloaded (the comparison cache keeps %d)",
                    evicted,
                    MAX_CACHED_VERSIONS,
                )
            return loaded

    @staticmethod
    def _still_current(found: _Loaded, snapshot: Snapshot) -> bool:
        """The same bi-encoder feeds its prior, and its files have not changed."""
        return found.embedder is snapshot.embedder and found.fingerprint == files_fingerprint(
            found.source.path
        )

    def _load(self, version: str, snapshot: Snapshot) -> _Loaded:
        try:
            registered = Registry(self.settings.registry_path).verify("reranker", version)
        except VersionNotFoundError as exc:  # its message names the registry's directory
            raise VersionNotFoundError(f"no reranker version {version!r} is registered") from exc
        source = ModelSource(registered.path, registered)
        try:
            reranker = self.loader.load_reranker(self.settings, source, embedder=snapshot.embedder)
            if snapshot.pipeline is not None and self.settings.rerank.prior_from_index:
                attach_catalog_vectors(reranker, snapshot.pipeline)
        except Exception as exc:  # any loader failure; see ranker.api.model_loading.try_load
            reason = load_failure(source_label("reranker", source), source.path, exc)
            raise BackendFailedError(reason) from exc
        logger.info("loaded %s for comparison beside the serving reranker", registered.ref)
        return _Loaded(reranker, source, snapshot.embedder, files_fingerprint(source.path))


def _with(pipeline: SearchPipeline | None, reranker: Reranker) -> SearchPipeline | None:
    return pipeline.with_reranker(reranker) if pipeline is not None else None
