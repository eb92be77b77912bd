"""Hot reload: the API follows the registry's production pointers while it serves.

A background thread reads each role's pointer (a small file) every
``api.reload_interval_s``, and at once when woken (SIGHUP under ``shoprank serve``, or a
promotion through the admin API). When the pointer moves, or the files of the version it
names or of the version serving change, the new version is verified, loaded beside the old
one, given the catalog vectors, warmed, and swapped in as one new
:class:`~ranker.api.service.Snapshot`. Requests in flight finish on the snapshot they began
with.

A version that fails to verify or load is refused: the old one keeps serving and the reason
stays in ``/healthz``. When the serving version's own files no longer match their manifest,
the newest earlier production version that verifies takes over. A new bi-encoder is swapped
in only when the open index holds vectors it can search (the same model, or an export of
it), or the index has been rebuilt for it; otherwise it "needs a reindex" and the old pair
keeps serving, so a query never mixes vectors of two models. On OpenSearch the index is
reopened through the alias, which the promotion has moved to the new bi-encoder's index;
until then the old store stays on the index it opened (``indexer.stores.opensearch.pinning``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

from indexer.stores.base import StoreError
from ranker.api.model_loading import (
    RESOLVE_ERRORS,
    FactoryLoader,
    ModelLoader,
    files_fingerprint,
    load_failure,
    production_name,
    source_label,
)
from ranker.api.rerank_budget import RerankCostModel
from ranker.api.service import Service, Snapshot, rewire
from ranker.api.service_loading import attach_catalog_vectors, measured_cost
from ranker.embedder import Embedder
from ranker.errors import ShoprankError
from ranker.pipeline import SearchPipeline
from ranker.registry import ROLES, Registry, RegistryError, Role
from ranker.reranker import Reranker
from ranker.serving_models import ModelSource, earlier_sources, explicit_model, serving_source
from ranker.settings import Settings

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
"""How long stopping waits for a load in progress."""
WARMUP_BATCH = 8

Fingerprint = tuple[tuple[str, int, int, int], ...]
Seen = tuple[str | None, Fingerprint, Fingerprint]
"""A role's pointer and the fingerprints of its production and serving files."""


class RefusedError(ShoprankError):
    """A version that cannot be swapped in; the message says why."""


def same_source(a: ModelSource | None, b: ModelSource | None) -> bool:
    """The same directory and registry version (manifests may differ: states change)."""
    if a is None or b is None:
        return a is b
    name_a = a.version.ref if a.version is not None else None
    name_b = b.version.ref if b.version is not None else None
    return a.path == b.path and name_a == name_b


def warm(model: Embedder | Reranker) -> None:
    """One forward pass at full length, so the first request does not pay for it."""
    model.backend.warmup(batch_size=WARMUP_BATCH, seq_len=model.tokenizer.max_length)


class ModelWatcher:
    """Keeps ``service`` on the production versions of the roles the registry serves.

    Roles whose model the settings name outright are pinned and not watched.
    """

    def __init__(
        self,
        service: Service,
        settings: Settings,
        *,
        loader: ModelLoader | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.loader = loader or FactoryLoader()
        self.interval_s = settings.api.reload_interval_s if interval_s is None else interval_s
        self.registry = Registry(settings.registry_path)
        self.roles: tuple[Role, ...] = tuple(r for r in ROLES if _from_registry(settings, r))
        self._seen: dict[Role, Seen] = {}
        self._check_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ------------------------------------------------------------------------

    def start(self) -> bool:
        """Start polling in a daemon thread; False when no role is watched.

        A role already serving its production version (as start-up loaded it) is not
        verified again; any other is checked at once.
        """
        if not self.roles or self._thread is not None:
            return False
        for role in self.roles:
            source = _source_of(self.service.snapshot, role)
            serving = source.version.version if source and source.version else None
            seen = self._observe(role)
            if role not in self.service.model_problems and serving and seen[0] == serving:
                self._seen[role] = seen
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="shoprank-reload", daemon=True)
        self._thread.start()
        every = f"every {self.interval_s:g} s and " if self.interval_s > 0 else ""
        logger.info("watching the production %s %son SIGHUP", " and ".join(self.roles), every)
        return True

    def wake(self) -> None:
        """Check now (safe from a signal handler: it only sets an event)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread, waiting for a load in progress up to :data:`STOP_TIMEOUT_S`."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.interval_s if self.interval_s > 0 else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # the watcher must outlive any one bad check
                logger.exception("hot reload check failed; the serving models are unchanged")

    # -- one check -------------------------------------------------------------------------

    def check(self) -> list[Role]:
        """Look at every watched role once; returns the roles whose model was swapped."""
        swapped = []
        with self._check_lock:
            for role in self.roles:
                seen = self._observe(role)
                if seen == self._seen.get(role):
                    continue
                self._seen[role] = seen
                if self._follow(role):
                    swapped.append(role)
                    # The new serving files; the pointer as it was before loading, so a
                    # promotion made meanwhile is followed on the next check.
                    serving = _source_of(self.service.snapshot, role)
                    path = serving.path if serving is not None else None
                    self._seen[role] = (seen[0], seen[1], files_fingerprint(path))
        return swapped

    def _observe(self, role: Role) -> Seen:
        """The cheap signs that something changed: the pointer and file stats."""
        pointer = production_name(self.registry, role)
        production: Path | None = None
        if pointer is not None:
            try:
                production = self.registry.get(role, pointer).path
            except RegistryError:
                production = None
        serving = _source_of(self.service.snapshot, role)
        return (
            pointer,
            files_fingerprint(production),
            files_fingerprint(serving.path if serving is not None else None),
        )

    def _follow(self, role: Role) -> bool:
        """Serve what production names now, or say why not; True when the model swapped."""
        current = _source_of(self.service.snapshot, role)
        try:
            wanted = serving_source(self.settings, role)
        except RESOLVE_ERRORS as exc:
            reason = exc.message if isinstance(exc, ShoprankError) else str(exc)
            return self._refuse(role, reason, current)
        if same_source(wanted, current):
            self._clear(role)
            return False
        try:
            self._swap_in(role, wanted)
        except RefusedError as exc:
            return self._refuse(role, exc.message, current)
        self._clear(role)
        return True

    def _refuse(self, role: Role, reason: str, current: ModelSource | None) -> bool:
        """Keep the serving version when it still verifies, else fall back to an earlier one."""
        if current is not None and self._still_good(role, current):
            self._problem(role, f"{reason}; still serving {_label(current)}")
            return False
        refused = {name for name in (production_name(self.registry, role),) if name}
        if current is not None and current.version is not None:
            refused.add(current.version.version)
        for candidate in earlier_sources(self.registry, role, exclude=refused):
            if same_source(candidate, current):
                continue
            try:
                self._swap_in(role, candidate)
            except RefusedError as exc:
                logger.warning("cannot fall back to %s: %s", candidate.label, exc)
                continue
            self._problem(role, f"{reason}; serving {candidate.label} instead")
            return True
        self._problem(role, reason)
        return False

    def _still_good(self, role: Role, current: ModelSource) -> bool:
        if current.version is None:
            return True  # an explicit directory (seen here only after a settings change)
        try:
            self.registry.verify(role, current.version.version)
        except RegistryError as exc:
            logger.error("the serving %s no longer verifies: %s", current.label, exc)
            return False
        return True

    def _problem(self, role: Role, reason: str) -> None:
        logger.error("hot reload: %s", reason)
        self.service.set_model_problem(role, reason)

    def _clear(self, role: Role) -> None:
        if role in self.service.model_problems:
            logger.info("hot reload: %s serves its production version again", role)
        self.service.set_model_problem(role, None)

    # -- loading beside the old version ----------------------------------------------------

    def _swap_in(self, role: Role, source: ModelSource) -> None:
        """Load ``source`` beside the serving models, warm it, swap; RefusedError if not."""
        old = self.service.snapshot
        if role == "reranker":
            new = self._next_with_reranker(old, source)
        else:
            new = self._next_with_embedder(old, source)

        def change(current: Snapshot) -> Snapshot:
            if current.embedder is not old.embedder or current.reranker is not old.reranker:
                raise RefusedError("the serving models changed while this one loaded")
            if current.pipeline is not None and new.pipeline is None:
                # The index was reopened meanwhile (it had been unreachable).
                return dataclasses.replace(
                    new, pipeline=rewire(current.pipeline, new.embedder, new.reranker)
                )
            return new

        self.service.swap(change)
        logger.info(
            "hot reload: %s now serves %s (was %s)",
            role,
            source.label,
            _label(_source_of(old, role)),
        )

    def _load_reranker(
        self, source: ModelSource, embedder: Embedder | None, pipeline: SearchPipeline | None
    ) -> tuple[Reranker, RerankCostModel | None]:
        """The reranker in ``source``, warmed, and its cost model measured warm."""
        try:
            reranker = self.loader.load_reranker(self.settings, source, embedder=embedder)
            if pipeline is not None and self.settings.rerank.prior_from_index:
                attach_catalog_vectors(reranker, pipeline)
            warm(reranker)
        except Exception as exc:  # see ranker.api.model_loading.try_load
            label = source_label("reranker", source)
            raise RefusedError(load_failure(label, source.path, exc)) from exc
        return reranker, measured_cost(reranker)

    def _next_with_reranker(self, old: Snapshot, source: ModelSource) -> Snapshot:
        reranker, cost = self._load_reranker(source, old.embedder, old.pipeline)
        return dataclasses.replace(
            old,
            reranker=reranker,
            reranker_source=source,
            reranker_cost=cost,
            pipeline=old.pipeline.with_reranker(reranker) if old.pipeline is not None else None,
            fallback=old.fallback.with_reranker(reranker) if old.fallback is not None else None,
        )

    def _next_with_embedder(self, old: Snapshot, source: ModelSource) -> Snapshot:
        try:
            embedder = self.loader.load_embedder(self.settings, source)
        except Exception as exc:  # see ranker.api.model_loading.try_load
            label = source_label("embedder", source)
            raise RefusedError(load_failure(label, source.path, exc)) from exc
        pipeline = self._searchable(old.pipeline, embedder, source, fallback=False)
        fallback = self._searchable(old.fallback, embedder, source, fallback=True)
        reranker, cost = old.reranker, old.reranker_cost
        if reranker is not None and reranker.prior is not None:
            # The prior compares the query's vector with the products': both from one model.
            if old.reranker_source is None:
                raise RefusedError(f"{source.label}: the serving reranker cannot be reloaded")
            reranker, cost = self._load_reranker(old.reranker_source, embedder, pipeline)
        warm(embedder)
        return dataclasses.replace(
            old,
            embedder=embedder,
            embedder_source=source,
            reranker=reranker,
            reranker_cost=cost,
            pipeline=pipeline.with_reranker(reranker) if pipeline is not None else None,
            fallback=fallback.with_reranker(reranker) if fallback is not None else None,
        )

    def _searchable(
        self,
        pipeline: SearchPipeline | None,
        embedder: Embedder,
        source: ModelSource,
        *,
        fallback: bool,
    ) -> SearchPipeline | None:
        """``pipeline`` around ``embedder`` when its index holds that model's vectors, else the
        index opened again (rebuilt for it since); RefusedError when neither holds them."""
        if pipeline is None:
            return None
        try:
            return rewire(pipeline, embedder, pipeline.reranker)
        except ValueError as exc:
            held = str(exc)
        from ranker.loading import open_embedded_pipeline, open_pipeline

        reopen = open_embedded_pipeline if fallback else open_pipeline
        try:
            return reopen(self.settings, embedder=embedder, reranker=pipeline.reranker)
        except (OSError, ValueError, RuntimeError, StoreError) as exc:
            raise RefusedError(
                f"{source.label} needs a reindex: {held} (and the index on disk: {exc})"
            ) from exc


def _from_registry(settings: Settings, role: Role) -> bool:
    """Whether the registry (not an explicit setting) says which model serves ``role``."""
    try:
        return explicit_model(settings, role) is None
    except RESOLVE_ERRORS:
        return False


def _source_of(snapshot: Snapshot, role: Role) -> ModelSource | None:
    return snapshot.embedder_source if role == "embedder" else snapshot.reranker_source


def _label(source: ModelSource | None) -> str:
    return source.label if source is not None else "nothing"
