"""What the API serves from: one immutable snapshot of the loaded models and pipelines.

The models are loaded at start-up; hot reload (:mod:`ranker.api.reload`) later swaps in a
whole new :class:`Snapshot` when the registry's production version moves.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from indexer.stores.base import SearchFilter, StoreUnavailableError
from ranker.api.errors import NotReadyError
from ranker.api.rerank_budget import RerankCostModel
from ranker.api.schedulers import ModelSchedulers
from ranker.backends.base import FloatArray
from ranker.batching import SchedulerConfig
from ranker.embedder import Embedder
from ranker.pipeline import RetrievalMode, SearchPipeline
from ranker.reranker import Reranker
from ranker.search_results import Candidates, SearchOutcome
from ranker.spelling import SpelledQuery

if TYPE_CHECKING:
    from ranker.serving_models import ModelSource

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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent set of serving models and the pipelines around them; never changed.

    Hot reload builds a new snapshot beside the old one and swaps the service's one
    reference to it. A request reads the reference once and finishes on that snapshot, so it
    never scores with two rerankers, nor searches one embedder's vectors with another's.
    ``*_source``: where each model came from (a registry version, or an explicit directory);
    None when the service was built by hand. ``reranker_cost``: the reranker's cost model,
    measured when it was warmed (None: not measured), for ``rerank_depth: "auto"``.
    """

    embedder: Embedder | None = None
    reranker: Reranker | None = None
    pipeline: SearchPipeline | None = None
    fallback: SearchPipeline | None = None
    embedder_source: ModelSource | None = None
    reranker_source: ModelSource | None = None
    reranker_cost: RerankCostModel | None = None

    @property
    def embedder_label(self) -> str | None:
        """What names the serving bi-encoder: its registry reference, else its model id."""
        if self.embedder_source is not None and self.embedder_source.version is not None:
            return self.embedder_source.version.ref
        return self.embedder.identity.model_id if self.embedder is not None else None

    @property
    def reranker_label(self) -> str | None:
        """What names the serving reranker: its registry reference (``reranker/v3``), else
        its model id."""
        if self.reranker_source is not None and self.reranker_source.version is not None:
            return self.reranker_source.version.ref
        return self.reranker.model_id if self.reranker is not None else None

    @property
    def models(self) -> tuple[Embedder | None, Reranker | None]:
        """The models requests run on (each has its scheduler when batching is on)."""
        return self.embedder, self.reranker

    def versions(self) -> dict[str, str]:
        """``{role: label}`` of the loaded models."""
        labels = {"embedder": self.embedder_label, "reranker": self.reranker_label}
        return {role: label for role, label in labels.items() if label is not None}


class Service:
    """What the routes serve from: the current :class:`Snapshot` and what is wrong.

    A missing component makes only its routes answer 503. ``pipeline`` searches the
    configured backend. ``fallback`` (the embedded index, with
    ``opensearch.fallback_to_embedded``) answers while that backend is unreachable;
    ``reopen`` opens the configured backend's pipeline again, and ``probe`` says why the
    backend is unreachable (None when it answers). ``problems``: what did not load at
    start-up (the index, say); ``model_problems``: per role, why the production version does
    not serve (kept up to date by hot reload). ``batching``: the schedulers' knobs (None:
    each request runs its models in its own thread); see :meth:`lease`.
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None,
        reranker: Reranker | None,
        pipeline: SearchPipeline | None,
        problems: list[str],
        backend: IndexBackend = "embedded",
        fallback: SearchPipeline | None = None,
        reopen: Callable[[], SearchPipeline] | None = None,
        probe: Callable[[], str | None] | None = None,
        embedder_source: ModelSource | None = None,
        reranker_source: ModelSource | None = None,
        model_problems: dict[str, str] | None = None,
        batching: SchedulerConfig | None = None,
        reranker_cost: RerankCostModel | None = None,
    ) -> None:
        self._snapshot = Snapshot(
            embedder=embedder,
            reranker=reranker,
            pipeline=pipeline,
            fallback=fallback,
            embedder_source=embedder_source,
            reranker_source=reranker_source,
            reranker_cost=reranker_cost,
        )
        self.problems = list(problems)
        self.model_problems: dict[str, str] = dict(model_problems or {})
        self.backend: IndexBackend = backend
        self.reopen = reopen
        self.probe = probe
        self._lock = threading.Lock()
        self._last_reopen = float("-inf")
        self.schedulers = ModelSchedulers(batching)
        self._leases = threading.Lock()
        self.schedulers.serve(self._snapshot.models)

    # -- the snapshot ----------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot serving now; read it once per request."""
        return self._snapshot

    @contextmanager
    def lease(self) -> Iterator[Snapshot]:
        """The snapshot serving now, its models' schedulers kept running until the block
        ends (a request's whole life), even if a swap retires them meanwhile."""
        with self._leases:
            snapshot = self._snapshot
            self.schedulers.retain(snapshot.models)
        try:
            yield snapshot
        finally:
            self.schedulers.release(snapshot.models)

    def swap(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        """Replace the snapshot with ``change(current)`` (serialized with other swaps); the
        new models' schedulers start, the old ones' drain once no request holds them."""
        with self._lock:
            changed = change(self._snapshot)
            with self._leases:
                self._snapshot = changed
                self.schedulers.serve(changed.models)
            return changed

    @property
    def embedder(self) -> Embedder | None:
        return self._snapshot.embedder

    @property
    def reranker(self) -> Reranker | None:
        return self._snapshot.reranker

    @property
    def pipeline(self) -> SearchPipeline | None:
        return self._snapshot.pipeline

    @property
    def fallback(self) -> SearchPipeline | None:
        return self._snapshot.fallback

    def set_model_problem(self, role: str, reason: str | None) -> None:
        """Record (or, with None, clear) why ``role``'s production version does not serve."""
        with self._lock:  # a new dict each time: readers never see one change under them
            problems = {name: text for name, text in self.model_problems.items() if name != role}
            if reason is not None:
                problems[role] = reason
            self.model_problems = problems

    def all_problems(self) -> list[str]:
        """Start-up problems, then every role's model problem."""
        return [*self.problems, *self.model_problems.values()]

    # -- searching -------------------------------------------------------------------------

    def spelled(self, query: str, snapshot: Snapshot | None = None) -> SpelledQuery | None:
        """``query`` corrected against the vocabulary of the index that will answer it (the
        configured one, else the fallback); None when nothing changes."""
        snapshot = snapshot or self._snapshot
        pipeline = snapshot.pipeline or snapshot.fallback
        return pipeline.spelled(query) if pipeline is not None else None

    def primary(self, snapshot: Snapshot | None = None) -> SearchPipeline | None:
        """The configured backend's pipeline in ``snapshot`` (default: the current one);
        reopened (rate-limited) when it is missing, around the snapshot's models."""
        snapshot = snapshot or self._snapshot
        if snapshot.pipeline is not None or self.reopen is None:
            return snapshot.pipeline
        opened = self._reopen()
        if opened is None:
            return None
        try:
            return rewire(opened, snapshot.embedder, snapshot.reranker)
        except ValueError:  # the models were swapped meanwhile; this request keeps its own
            return None

    def _reopen(self) -> SearchPipeline | None:
        """Open the configured backend's index again, at most every REOPEN_INTERVAL_S."""
        reopen = self.reopen
        with self._lock:
            now = time.monotonic()
            current = self._snapshot
            due = now - self._last_reopen >= REOPEN_INTERVAL_S
            if reopen is not None and current.pipeline is None and due:
                self._last_reopen = now
                try:
                    opened = rewire(reopen(), current.embedder, current.reranker)
                except (StoreUnavailableError, ValueError) as exc:
                    logger.warning("%s index still unavailable: %s", self.backend, exc)
                else:
                    logger.info("%s index opened", self.backend)
                    self._snapshot = dataclasses.replace(current, pipeline=opened)
                    self.problems = [p for p in self.problems if not p.startswith("index:")]
            return self._snapshot.pipeline

    def search(
        self,
        query: str,
        *,
        k: int,
        mode: RetrievalMode | None,
        search_filter: SearchFilter | None,
        rerank: bool,
        rerank_depth: int | None,
        snapshot: Snapshot | None = None,
    ) -> tuple[SearchOutcome, IndexBackend]:
        """:meth:`candidates`, reranked in this thread; the outcome and which backend
        answered."""
        found, pipeline, answered_by = self.candidates(
            query,
            k=k,
            mode=mode,
            search_filter=search_filter,
            rerank=rerank,
            rerank_depth=rerank_depth,
            snapshot=snapshot,
        )
        return pipeline.rerank(found), answered_by

    def candidates(
        self,
        query: str,
        *,
        k: int,
        mode: RetrievalMode | None,
        search_filter: SearchFilter | None,
        rerank: bool,
        rerank_depth: int | None,
        snapshot: Snapshot | None = None,
        query_vector: FloatArray | None = None,
        spelled: SpelledQuery | None = None,
        correct_spelling: bool = True,
    ) -> tuple[Candidates, SearchPipeline, IndexBackend]:
        """Retrieve from the configured backend, or the fallback while that one is
        unreachable (see :meth:`SearchPipeline.candidates`).

        Runs on ``snapshot`` (default: the current one). Returns the candidates, the
        pipeline that found them (to rerank and rank them) and which backend answered.
        Raises StoreUnavailableError when the backend is unreachable and there is no
        fallback, and NotReadyError when no index is loaded at all.
        """
        snapshot = snapshot or self._snapshot

        def run(pipeline: SearchPipeline) -> Candidates:
            return pipeline.candidates(
                query,
                k=k,
                mode=mode,
                search_filter=search_filter,
                rerank=rerank,
                rerank_depth=rerank_depth,
                query_vector=query_vector,
                spelled=spelled,
                correct_spelling=correct_spelling,
            )

        fallback = snapshot.fallback
        primary = self.primary(snapshot)
        if primary is not None:
            try:
                return run(primary), primary, self.backend
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
        return run(fallback), fallback, "embedded"

    def index_state(self, snapshot: Snapshot | None = None) -> IndexState:
        """Which index answers searches now; probes the cluster of the opensearch backend."""
        snapshot = snapshot or self._snapshot
        fallback = snapshot.fallback is not None
        if self.backend == "embedded":
            serving: IndexBackend | None = "embedded" if snapshot.pipeline is not None else None
            return IndexState("embedded", serving, None, False)
        reason = self.probe() if self.probe is not None else None
        primary = self.primary(snapshot) if reason is None else snapshot.pipeline
        if reason is None and primary is not None:
            return IndexState("opensearch", "opensearch", True, fallback)
        if reason is None:
            reason = next((p for p in self.problems if p.startswith("index:")), "not opened")
        return IndexState(
            "opensearch", "embedded" if fallback else None, False, fallback, detail=reason
        )

    @property
    def status(self) -> str:
        """``ok`` when everything loaded and serves its production version, ``degraded``
        when some of it did, else ``unavailable``."""
        snapshot = self._snapshot
        loaded = [snapshot.embedder, snapshot.reranker, snapshot.pipeline]
        if all(component is not None for component in loaded) and not self.model_problems:
            return "ok"
        if any(component is not None for component in loaded):
            return "degraded"
        return "unavailable"


def rewire(
    pipeline: SearchPipeline, embedder: Embedder | None, reranker: Reranker | None
) -> SearchPipeline:
    """``pipeline`` (its stores shared, not copied) around ``embedder`` and ``reranker``.

    Raises ValueError when the index holds vectors of another model than ``embedder``.
    """
    if embedder is None or embedder is pipeline.embedder:
        return pipeline.with_reranker(reranker) if reranker is not pipeline.reranker else pipeline
    held = pipeline.vector_store.identity
    if not embedder.identity.compatible_with(held):
        raise ValueError(
            f"the index holds vectors of {held.model_id}, not of {embedder.identity.model_id}"
        )
    return SearchPipeline(
        embedder=embedder,
        vector_store=pipeline.vector_store,
        lexical_index=pipeline.lexical_index,
        product_store=pipeline.product_store,
        template=pipeline.template,
        retrieval=pipeline.retrieval,
        rerank=pipeline.rerank_settings,
        reranker=reranker,
        speller=pipeline.speller,
    )
