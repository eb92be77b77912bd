"""Submit jobs to the workers and read their state: the API's admin routes and the CLI call it.

It sends tasks by name, so it needs neither the tasks' code nor their models: a process
that serves can submit. A job is one task, or for ``retrain`` a chain (fine-tune →
compress → evaluate → promote); its id is its first task's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from ranker.settings import Settings
from workers.errors import BrokerUnavailableError, JobNotFoundError, UnknownJobKindError
from workers.jobspec import IndexParams, RetrainParams, parse_params, task_name
from workers.locks import redis_client
from workers.records import JobRecord, Step, load_record, recent_ids, save_record

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "BrokerUnavailableError",
    "JobNotFoundError",
    "UnknownJobKindError",
    "job_status",
    "list_jobs",
    "submit_job",
]

logger = logging.getLogger(__name__)

PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
"""A broker that does not answer fails a submission within a few seconds."""

_apps: dict[tuple[str, str], Celery] = {}
_apps_lock = threading.Lock()


def broker_label(settings: Settings) -> str:
    """The broker's scheme, host and port, without credentials (for messages and logs)."""
    parts = urlsplit(settings.workers.broker_url.get_secret_value())
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def celery_app(settings: Settings) -> Celery:
    """One Celery app per broker and backend, for sending and reading results."""
    from workers.app import make_app

    key = (settings.workers.broker_url.get_secret_value(), settings.workers.result_backend_url())
    with _apps_lock:
        if key not in _apps:
            _apps[key] = make_app(settings)
        return _apps[key]


def _unavailable(settings: Settings, exc: BaseException) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"the workers' broker at {broker_label(settings)} cannot be reached: {type(exc).__name__}"
    )


def _connection_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (OperationalError, RedisConnectionError, RedisTimeoutError, ConnectionError)


Stage = list[tuple[str, dict[str, Any]]]
"""Tasks that run side by side (one, mostly), each a name and its keyword arguments."""


def _stages(kind: str, spec: BaseModel) -> list[Stage]:
    """The tasks a job runs, in order; a stage of several is a chord's header (the stage
    after it is its body)."""
    if isinstance(spec, IndexParams) and spec.shards > 1:
        backend = {"backend": spec.backend}
        return [
            [("index_plan", {"catalog": spec.catalog, "shards": spec.shards, **backend})],
            [("index_shard", {"shard": shard}) for shard in range(spec.shards)],
            [("index_commit", backend)],
        ]
    if not isinstance(spec, RetrainParams):
        return [[(kind, spec.model_dump(mode="json"))]]
    data: dict[str, Any] = {"judgments": spec.judgments, "catalog": spec.catalog}
    for name in ("judgment_mapping", "catalog_mapping"):
        if getattr(spec, name) is not None:
            data[name] = getattr(spec, name)
    return [
        [("finetune_reranker", {**data, "overrides": spec.overrides, "folds": spec.folds})],
        [("compress", {**data, "config": spec.compress, "promote": False})],
        [("evaluate", {**data, "role": "reranker"})],
        [("promote", {"role": "reranker", "force": spec.force, "actor": "retrain"})],
    ]


def _canvas(app: Celery, stages: list[list[tuple[str, dict[str, Any], str]]], job_id: str) -> Any:
    """The chain of ``stages`` (name, kwargs, task id); a stage of several tasks is a chord
    whose body is the next stage, with ``index_abandon`` as its error callback."""
    from celery import chain, chord

    def signature(name: str, kwargs: dict[str, Any], task_id: str) -> Any:
        return app.signature(task_name(name), kwargs=kwargs).set(task_id=task_id)

    links: list[Any] = []
    remaining = list(stages)
    while remaining:
        stage = remaining.pop(0)
        if len(stage) == 1:
            links.append(signature(*stage[0]))
            continue
        (name, kwargs, task_id), *_ = remaining.pop(0)
        body = signature(name, {**kwargs, "build": job_id}, task_id)
        body.on_error(app.signature(task_name("index_abandon"), kwargs={"build": job_id}))
        links.append(chord([signature(*task) for task in stage], body))
    return links[0] if len(links) == 1 else chain(*links)


def submit_job(settings: Settings, kind: str, params: Mapping[str, Any]) -> str:
    """Queue a job and return its id; UnknownJobKindError for a bad kind or parameters,
    BrokerUnavailableError when Redis cannot be reached."""
    from workers.app import RESULT_EXPIRES_S

    spec = parse_params(kind, dict(params))
    stages = [
        [(name, kwargs, str(uuid.uuid4())) for name, kwargs in stage]
        for stage in _stages(kind, spec)
    ]
    job_id = stages[0][0][2]
    record = JobRecord(
        id=job_id,
        kind=kind,
        params=spec.model_dump(mode="json"),
        steps=[
            Step(name, task_id, group=name if len(stage) > 1 else None)
            for stage in stages
            for name, _, task_id in stage
        ],
    )
    app = celery_app(settings)
    try:
        save_record(redis_client(settings), record, ttl_s=RESULT_EXPIRES_S, only_new=False)
        _canvas(app, stages, job_id).apply_async(retry=True, retry_policy=PUBLISH_RETRY)
    except _connection_errors() as exc:
        raise _unavailable(settings, exc) from exc
    logger.info("submitted %s job %s (%d task(s))", kind, record.id, len(record.steps))
    return record.id


def _describe_error(info: Any) -> str:
    if isinstance(info, BaseException):
        return f"{type(info).__name__}: {info}"
    return str(info)


def _step_status(app: Celery, step: Step) -> tuple[str, Any]:
    result = app.AsyncResult(step.task_id)
    return str(result.state), result.info


def _combine(record: JobRecord, states: list[tuple[str, Any]]) -> dict[str, Any]:
    """One status for a job from its steps': the first failure, else the step under way."""
    steps = [
        {"name": step.name, "id": step.task_id, "state": state}
        for step, (state, _) in zip(record.steps, states, strict=True)
    ]
    status: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "state": "PENDING",
        "progress": None,
        "result": None,
        "error": None,
        "steps": steps,
        "params": dict(record.params),
        "submitted_at": record.submitted_at,
    }
    stages = _group_stages(record.steps, states)
    many = len(stages) > 1
    for index, (name, stage) in enumerate(stages):
        where = {"step": name, "step_index": index + 1, "steps": len(stages)}
        state, info = stage[0] if len(stage) == 1 else _group_state(stage)
        if state in ("FAILURE", "REVOKED"):
            status.update(state=state, error=_describe_error(info), progress=where)
            return status
        if state == "SUCCESS" and index < len(stages) - 1:
            continue
        if state == "SUCCESS":
            status.update(state="SUCCESS", result=info, progress=where if many else None)
            return status
        meta = info if isinstance(info, Mapping) and state == "PROGRESS" else {}
        if state == "RETRY":
            status["error"] = _describe_error(info)
        if state == "PENDING" and index > 0:
            state = "PROGRESS"  # an earlier step is done; this one is queued
        status.update(state=state, progress={**where, **meta} if many or meta else None)
        return status
    return status


def _group_stages(
    steps: Sequence[Step], states: Sequence[tuple[str, Any]]
) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Consecutive steps of one group as one stage (its name, its tasks' states)."""
    stages: list[tuple[str, list[tuple[str, Any]]]] = []
    previous: str | None = None
    for step, state in zip(steps, states, strict=True):
        if step.group is not None and step.group == previous:
            stages[-1][1].append(state)
        else:
            stages.append((step.group or step.name, [state]))
        previous = step.group
    return stages


def _group_state(stage: Sequence[tuple[str, Any]]) -> tuple[str, Any]:
    """A group's state: its first failure, SUCCESS when every task succeeded, else PROGRESS
    with how many tasks are ``done`` ``of`` all, and how many are ``running``."""
    states = [state for state, _ in stage]
    for state, info in stage:
        if state in ("FAILURE", "REVOKED"):
            return state, info
    done = states.count("SUCCESS")
    if done == len(stage):
        return "SUCCESS", [info for _, info in stage]
    running = sum(state in ("STARTED", "PROGRESS", "RETRY") for state in states)
    return "PROGRESS", {"done": done, "of": len(stage), "running": running}


def job_status(settings: Settings, job_id: str) -> dict[str, Any]:
    """A job's ``id, kind, state, progress, result, error`` (and its ``steps``).

    JobNotFoundError when no job has that id; BrokerUnavailableError when Redis cannot be
    reached.
    """
    app = celery_app(settings)
    try:
        record = load_record(redis_client(settings), job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id!r} (unknown, or its record expired)")
        states = [_step_status(app, step) for step in record.steps]
    except _connection_errors() as exc:
        raise _unavailable(settings, exc) from exc
    return _combine(record, states)


def list_jobs(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` jobs' statuses, newest first (beat's included)."""
    try:
        ids = recent_ids(redis_client(settings), limit)
    except _connection_errors() as exc:
        raise _unavailable(settings, exc) from exc
    statuses = []
    for job_id in ids:
        try:
            statuses.append(job_status(settings, job_id))
        except JobNotFoundError:
            continue
    return statuses
