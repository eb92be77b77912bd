"""The Celery app: Redis broker and results, JSON only, late acks, limits and beat's schedule.

``celery -A workers.app worker`` (or ``shoprank worker``) finds :data:`app` here. Building it
reads the settings and nothing else: the tasks (``workers.tasks``) are imported when a worker
starts, and they load models only when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler

from ranker.settings import Settings, get_settings
from workers.jobspec import MAYBE_COMPRESS

RESULT_EXPIRES_S = 7 * 24 * 3600
"""How long task results (and the job records beside them) are kept."""


def restore_interval_s(visibility_timeout_s: float) -> float:
    """How often a worker looks for tasks whose worker died: a quarter of the visibility
    timeout, between 1 s and 60 s, so a lost task is redelivered soon after it lapses."""
    return min(60.0, max(1.0, visibility_timeout_s / 4))


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """Redis transport options: the visibility timeout and a restore sweep to match it."""
    visibility = settings.workers.visibility_timeout_s
    return {
        "visibility_timeout": visibility,
        "unacked_restore_interval": restore_interval_s(visibility),
        "unacked_restore_throttle": 1,
    }


def task_options(settings: Settings) -> dict[str, Any]:
    """Options every shoprank task is declared with: retries of transient errors only."""
    from workers.errors import TransientJobError

    return {
        "bind": True,
        "acks_late": True,
        "reject_on_worker_lost": True,
        "autoretry_for": (TransientJobError,),
        "retry_backoff": True,
        "retry_backoff_max": int(settings.workers.retry_backoff_max_s),
        "retry_jitter": True,
        "max_retries": settings.workers.max_retries,
    }


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app for ``settings`` (default: :func:`get_settings`); cheap, loads no model."""
    settings = settings or get_settings()
    workers = settings.workers
    app = Celery(
        "shoprank",
        broker=workers.broker_url.get_secret_value(),
        backend=workers.result_backend_url(),
        include=["workers.tasks", "workers.sharding"],
        set_as_current=False,
    )
    transport = broker_transport_options(settings)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        task_soft_time_limit=workers.soft_time_limit_s,
        task_time_limit=workers.time_limit_s,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=True,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        result_expires=RESULT_EXPIRES_S,
        result_extended=True,
        beat_schedule=beat_schedule(settings),
        beat_scheduler=f"{__name__}:HomeScheduler",
        beat_schedule_filename=str(settings.home / "workers" / "celerybeat-schedule"),
        timezone="UTC",
    )
    return app


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic re-compression every ``compress_every_s`` (none when it is 0).

    A tick that waits longer than one period is dropped (``expires``): the next one does the
    same check with fresher inputs.
    """
    every = settings.workers.compress_every_s
    if every <= 0:
        return {}
    return {
        "maybe-compress": {
            "task": MAYBE_COMPRESS,
            "schedule": every,
            "options": {"expires": max(every, 1.0)},
        }
    }


class HomeScheduler(PersistentScheduler):  # type: ignore[misc]
    """Beat's schedule file under ``<home>/workers``, its directory made on first use."""

    def _open_schedule(self) -> Any:
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open_schedule()


app = make_app()
