"""What the API serves from: the components loaded once at start-up.

With the OpenSearch backend the cluster can go away and come back while the API runs:
searches then fail with :class:`~indexer.stores.base.StoreUnavailableError` (the route
answers 503 ``index_unavailable``), or are answered from the embedded index when
``opensearch.fallback_to_embedded`` is set. An index that could not be opened at start-up
because the cluster was unreachable is opened again on a later search (at most every
``REOPEN_INTERVAL_S``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from indexer.stores.base import SearchFilter, StoreError, StoreUnavailableError
from ranker.api.errors import NotReadyError
from ranker.embedder import Embedder
from ranker.pipeline import RetrievalMode, SearchOutcome, SearchPipeline
from ranker.reranker import Reranker
from ranker.settings import Settings

logger = logging.getLogger(__name__)

REOPEN_INTERVAL_S = 5.0
"""How often a search may retry opening an index the cluster did not serve at start-up."""
PROBE_TIMEOUT_S = 2.0
"""How long ``/healthz`` waits for the cluster to answer."""

IndexBackend = Literal["embedded", "opensearch"]


@dataclass(frozen=True, slots=True)
class IndexState:
    """Which index answers searches now, as ``/healthz`` reports it."""

    backend: IndexBackend
    serving: IndexBackend | None
    reachable: bool | None
    fallback: bool
    detail: str = ""


@dataclass
class Service:
    """The loaded components; a missing one makes only its routes answer 503.

    ``pipeline`` searches the configured backend. ``fallback`` (the embedded index, with
    ``opensearch.fallback_to_embedded``) answers while that backend is unreachable;
    ``reopen`` opens the configured backend's pipeline again, and ``probe`` says why the
    backend is unreachable (None when it answers).
    """

    embedder: Embedder | None
    reranker: Reranker | None
    pipeline: SearchPipeline | None
    problems: list[str]
    backend: IndexBackend = "embedded"
    fallback: SearchPipeline | None = None
    reopen: Callable[[], SearchPipeline] | None = None
    probe: Callable[[], str | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _last_reopen: float = field(default=float("-inf"), repr=False, compare=False)

    def primary(self) -> SearchPipeline | None:
        """The configured backend's pipeline; reopened (rate-limited) when it is missing."""
        if self.pipeline is not None or self.reopen is None:
            return self.pipeline
        with self._lock:
            now = time.monotonic()
            if self.pipeline is None and now - self._last_reopen >= REOPEN_INTERVAL_S:
                self._last_reopen = now
                try:
                    self.pipeline = self.reopen()
                except StoreUnavailableError as exc:
                    logger.warning("%s index still unavailable: %s", self.backend, exc)
                else:
                    logger.info("%s index opened", self.backend)
                    self.problems = [p for p in self.problems if not p.startswith("index:")]
        return self.pipeline

    def search(
        self,
        query: str,
        *,
        k: int,
        mode: RetrievalMode | None,
        search_filter: SearchFilter | None,
        rerank: bool,
        rerank_depth: int | None,
    ) -> tuple[SearchOutcome, IndexBackend]:
        """Search the configured backend, or the fallback while that one is unreachable.

        Returns the outcome and which backend answered. Raises StoreUnavailableError when
        the backend is unreachable and there is no fallback, and NotReadyError when no
        index is loaded at all.
        """

        def run(pipeline: SearchPipeline) -> SearchOutcome:
            return pipeline.search(
                query,
                k=k,
                mode=mode,
                search_filter=search_filter,
                rerank=rerank,
                rerank_depth=rerank_depth,
            )

        fallback = self.fallback
        primary = self.primary()
        if primary is not None:
            try:
                return run(primary), self.backend
            except StoreUnavailableError as exc:
                if fallback is None:
                    raise
                logger.warning("answering from the embedded fallback: %s", exc)
        if fallback is None:
            problems = "; ".join(self.problems) or "no index"
            if self.reopen is not None:
                raise StoreUnavailableError(problems)
            raise NotReadyError(
                f"no search index is loaded; build one with `shoprank index` ({problems})"
            )
        return run(fallback), "embedded"

    def index_state(self) -> IndexState:
        """Which index answers searches now; probes the cluster of the opensearch backend."""
        fallback = self.fallback is not None
        if self.backend == "embedded":
            serving: IndexBackend | None = "embedded" if self.pipeline is not None else None
            return IndexState("embedded", serving, None, False)
        reason = self.probe() if self.probe is not None else None
        primary = self.primary() if reason is None else self.pipeline
        if reason is None and primary is not None:
            return IndexState("opensearch", "opensearch", True, fallback)
        if reason is None:
            reason = next((p for p in self.problems if p.startswith("index:")), "not opened")
        return IndexState(
            "opensearch", "embedded" if fallback else None, False, fallback, detail=reason
        )

    @property
    def status(self) -> str:
        """``ok`` when everything loaded, ``degraded`` when some did, else ``unavailable``."""
        loaded = [self.embedder, self.reranker, self.pipeline]
        if all(component is not None for component in loaded):
            return "ok"
        if any(component is not None for component in loaded):
            return "degraded"
        return "unavailable"


def load_service(settings: Settings) -> Service:
    """Load the embedder, the reranker and the index that settings name, once."""
    from ranker.loading import (
        load_embedder,
        load_reranker,
        open_embedded_pipeline,
        open_pipeline,
    )

    problems: list[str] = []
    embedder = reranker = pipeline = fallback = None
    reopen: Callable[[], SearchPipeline] | None = None
    probe: Callable[[], str | None] | None = None
    try:
        embedder = load_embedder(settings)
    except (OSError, ValueError, RuntimeError) as exc:
        problems.append(f"embedder: {exc}")
    try:
        reranker = load_reranker(settings, embedder=embedder)
    except (OSError, ValueError, RuntimeError) as exc:
        problems.append(f"reranker: {exc}")
    if embedder is not None:
        try:
            pipeline = open_pipeline(settings, embedder=embedder, reranker=reranker)
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"index: {exc}")
            if isinstance(exc, StoreUnavailableError):
                loaded_embedder = embedder

                def reopen_pipeline() -> SearchPipeline:
                    return open_pipeline(settings, embedder=loaded_embedder, reranker=reranker)

                reopen = reopen_pipeline
        if settings.index.backend == "opensearch":
            probe = _opensearch_probe(settings)
            if settings.opensearch.fallback_to_embedded:
                try:
                    fallback = open_embedded_pipeline(
                        settings, embedder=embedder, reranker=reranker
                    )
                except (OSError, ValueError, RuntimeError) as exc:
                    problems.append(f"fallback index: {exc}")
    if reranker is not None and pipeline is not None and settings.rerank.prior_from_index:
        attach_catalog_vectors(reranker, pipeline)
    for problem in problems:
        logger.error("not loaded: %s", problem)
    for component in (embedder, reranker):
        if component is not None:
            component.backend.warmup(batch_size=8, seq_len=component.tokenizer.max_length)
    return Service(
        embedder=embedder,
        reranker=reranker,
        pipeline=pipeline,
        problems=problems,
        backend=settings.index.backend,
        fallback=fallback,
        reopen=reopen,
        probe=probe,
    )


def attach_catalog_vectors(reranker: Reranker, pipeline: SearchPipeline) -> None:
    """Let the reranker's dense prior read indexed products' vectors by their text."""
    if reranker.prior is None:
        return
    start = time.perf_counter()
    catalog = pipeline.catalog_vectors()
    if catalog is None:
        logger.info("the dense prior embeds every product (the index's vectors do not fit it)")
        return
    reranker.prior = dataclasses.replace(reranker.prior, catalog=catalog)
    logger.info(
        "the dense prior reads %d products' vectors from the index (digested in %.1f s)",
        len(catalog),
        time.perf_counter() - start,
    )


def _opensearch_probe(settings: Settings) -> Callable[[], str | None] | None:
    """Says why the configured cluster does not answer (None when it does)."""
    try:
        from indexer.stores.opensearch.client import make_client, unreachable_reason

        client = make_client(settings.opensearch)
    except StoreError as exc:
        reason = str(exc)
        return lambda: reason
    url = settings.opensearch.url

    def probe() -> str | None:
        return unreachable_reason(client, url=url, timeout_s=PROBE_TIMEOUT_S)

    return probe
