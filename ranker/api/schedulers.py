"""One :class:`~ranker.batching.Scheduler` per served model, in step with hot reload.

A model's scheduler starts when a snapshot holding the model is swapped in (or first read).
Each request holds a lease on its snapshot's models from reading the snapshot to its answer;
a model that the serving snapshot no longer holds is retired, and its scheduler is drained
and stopped once the last request holding it is done, so requests in flight finish on the
version they started with.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from ranker.batching import Scheduler, SchedulerConfig
from ranker.embedder import Embedder
from ranker.reranker import Reranker

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 10.0
"""How long :meth:`ModelSchedulers.close` waits for each model's thread."""

Model = Embedder | Reranker


@dataclass(slots=True)
class _Served:
    scheduler: Scheduler
    leases: int = 0
    retired: bool = False


class ModelSchedulers:
    """The schedulers of the models that serve, or still answer requests in flight.

    With ``config`` None (batching off) it holds none, and every lookup answers None. With
    ``config.exclusive_inference`` its schedulers share one inference lock: one model's
    batch runs at a time.
    """

    def __init__(self, config: SchedulerConfig | None) -> None:
        self.config = config
        self._served: dict[int, tuple[Model, _Served]] = {}
        self._lock = threading.Lock()
        self._inference_lock = (
            threading.Lock() if config is not None and config.exclusive_inference else None
        )

    def get(self, model: Model | None) -> Scheduler | None:
        """The scheduler of ``model`` (None with batching off, or for an unknown model)."""
        if model is None:
            return None
        found = self._served.get(id(model))
        return found[1].scheduler if found is not None else None

    def retain(self, models: tuple[Model | None, ...]) -> None:
        """A request starts on ``models``: their schedulers run (started if need be) until
        it calls :meth:`release`."""
        if self.config is None:
            return
        with self._lock:
            for model in _distinct(models):
                self._served_for(model).leases += 1

    def release(self, models: tuple[Model | None, ...]) -> None:
        """A request on ``models`` is done; a retired model's scheduler stops with its last."""
        if self.config is None:
            return
        with self._lock:
            for model in _distinct(models):
                found = self._served.get(id(model))
                if found is None:
                    continue
                found[1].leases -= 1
                self._stop_if_unused(model)

    def serve(self, models: tuple[Model | None, ...]) -> None:
        """``models`` serve from now on: start theirs, retire every other model's."""
        if self.config is None:
            return
        serving = _distinct(models)
        kept = {id(model) for model in serving}
        with self._lock:
            for model in serving:
                self._served_for(model)
            for key, (model, served) in list(self._served.items()):
                if key not in kept:
                    served.retired = True
                    self._stop_if_unused(model)

    def close(self) -> None:
        """Drain and stop every scheduler (the app is shutting down); a later request
        starts its models' again."""
        with self._lock:
            stopping = [served.scheduler for _, served in self._served.values()]
            self._served.clear()
        for scheduler in stopping:
            scheduler.stop()
        for scheduler in stopping:
            if not scheduler.join(JOIN_TIMEOUT_S):
                logger.warning("%s did not stop within %.0f s", scheduler.name, JOIN_TIMEOUT_S)

    def _served_for(self, model: Model) -> _Served:
        found = self._served.get(id(model))
        if found is not None:
            return found[1]
        if self.config is None:  # pragma: no cover - callers check
            raise RuntimeError("batching is off")
        name = f"{type(model).__name__.lower()}-{_label(model)}"
        scheduler = Scheduler(
            model.infer, name=name, config=self.config, inference_lock=self._inference_lock
        )
        served = _Served(scheduler.start())
        self._served[id(model)] = (model, served)
        logger.info("scheduler %s started", name)
        return served

    def _stop_if_unused(self, model: Model) -> None:
        key = id(model)
        _, served = self._served[key]
        if served.retired and served.leases <= 0:
            del self._served[key]
            served.scheduler.stop()
            logger.info("scheduler %s drained and stopped", served.scheduler.name)


def _distinct(models: tuple[Model | None, ...]) -> list[Model]:
    seen: dict[int, Model] = {}
    for model in models:
        if model is not None:
            seen.setdefault(id(model), model)
    return list(seen.values())


def _label(model: Model) -> str:
    identity = getattr(model, "identity", None)
    return str(getattr(model, "model_id", None) or getattr(identity, "model_id", "model"))
