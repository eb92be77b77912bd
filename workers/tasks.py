"""The Celery tasks: each checks its parameters, builds settings in the worker, runs one job.

Tasks take ids and paths (strings) and return plain JSON. In a chain, a task's first
argument is the previous task's result; ``candidate`` in it names the version the next step
works on. Every task is safe to run twice (a worker that died, a visibility timeout that
lapsed): training finds the version its task id registered, compression the version its
inputs' key registered, promotion a version that serves already. Work happens in
``<home>/jobs/<task id>``, emptied when the task starts.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import Task

from ranker.settings import Settings, get_settings
from workers.app import app, task_options
from workers.errors import TransientJobError, UnknownJobKindError, transient_errors
from workers.jobspec import (
    TASK_PREFIX,
    CompressParams,
    EvaluateParams,
    FinetuneParams,
    IndexParams,
    JobParams,
    MaybeCompressParams,
    PromoteParams,
)
from workers.locks import exclusive, redis_client
from workers.records import JobRecord, Step, save_record

if TYPE_CHECKING:
    from indexer.catalog import CatalogFile

logger = logging.getLogger(__name__)

JOBS_DIR = "jobs"
Upstream = Mapping[str, Any] | None


class JobTask(Task):  # type: ignore[misc]
    """A shoprank task: progress reports, a fresh work dir, a job record for beat's runs."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        """List a task nobody submitted through the client (beat's ticks) as a job."""
        root = self.request.root_id
        if root not in (None, task_id):
            return
        from workers.app import RESULT_EXPIRES_S

        record = JobRecord(
            id=task_id,
            kind=self.name.removeprefix(TASK_PREFIX),
            params=dict(kwargs or {}),
            steps=[Step(self.name.removeprefix(TASK_PREFIX), task_id)],
        )
        try:
            save_record(redis_client(get_settings()), record, ttl_s=RESULT_EXPIRES_S, only_new=True)
        except Exception as exc:  # the record is for listing; the job runs without it
            logger.warning("could not record job %s: %s", task_id, exc)

    def progress(self, step: str, **meta: Any) -> None:
        """Report a step boundary (state ``PROGRESS``; ``job_status`` shows ``meta``)."""
        logger.info("%s %s: %s %s", self.name, self.request.id, step, meta or "")
        self.update_state(state="PROGRESS", meta={"step": step, **_plain(meta)})

    def fresh_work_dir(self, settings: Settings) -> Path:
        """``<home>/jobs/<task id>``, emptied: a redelivered task starts clean."""
        work = settings.home / JOBS_DIR / str(self.request.id)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return work


def _plain(value: Mapping[str, Any]) -> dict[str, Any]:
    """``value`` as JSON would bring it back (paths and other objects as strings)."""
    plain: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return plain


def job_task(kind: str) -> Callable[[Callable[..., dict[str, Any]]], Any]:
    """Register a function as the task ``shoprank.<kind>`` with the shared options."""

    def register(function: Callable[..., dict[str, Any]]) -> Any:
        return app.task(name=TASK_PREFIX + kind, base=JobTask, **task_options(get_settings()))(
            transient_errors(function)
        )

    return register


def _target(kind: str, role: str, version: str | None, upstream: Upstream) -> tuple[str, str]:
    """The role and version a step works on: given, else the upstream step's candidate."""
    if version is not None:
        return role, version
    candidate = (upstream or {}).get("candidate") or {}
    if not isinstance(candidate, Mapping) or not candidate.get("version"):
        raise UnknownJobKindError(f"bad parameters for {kind}: no version and no upstream one")
    return str(candidate.get("role") or role), str(candidate["version"])


def _registered_by(settings: Settings, role: str, task_id: str) -> str | None:
    """The version a run of ``task_id`` registered already, if any."""
    from ranker.serving_models import open_registry

    for version in reversed(open_registry(settings).versions(role)):
        if (version.manifest.get("created_by") or {}).get("task_id") == task_id:
            return version.version
    return None


def _catalog(path: str | None, mapping: dict[str, Any] | None) -> CatalogFile | None:
    """A job's catalog file with its mapping (JSON); None without a path."""
    from indexer.catalog import CatalogFile, FieldMapping

    return CatalogFile(Path(path), FieldMapping.model_validate(mapping or {})) if path else None


@job_task("index")
def index(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """A full build, an upsert, a delete, a copy or an index staged for a candidate
    bi-encoder, embedded or OpenSearch (``ranker.indexing``)."""
    from ranker.indexing import IndexRequest, resolve_backend, run_index_job
    from workers.cache import cached_embedder

    spec = IndexParams.model_validate(params)
    settings = get_settings()
    request = IndexRequest(
        backend=spec.backend,
        catalog=_catalog(spec.catalog, spec.catalog_mapping),
        upsert=spec.upsert,
        delete=Path(spec.delete) if spec.delete else None,
        from_embedded=spec.from_embedded,
        for_embedder=spec.for_embedder,
    )
    self.progress("index", backend=resolve_backend(settings, request), action=request.action)
    embeds = request.action in ("build", "upsert")  # staging loads its candidate itself
    outcome = run_index_job(
        settings, request, embedder=cached_embedder(settings) if embeds else None, progress=False
    )
    return _plain(outcome.as_dict())


def _data_params(spec: JobParams) -> dict[str, Any]:
    """A job's files and their mappings, as :func:`workers.inputs.data_files` takes them."""
    return {
        "judgments": spec.judgments,
        "catalog": spec.catalog,
        "judgment_mapping": spec.judgment_mapping,
        "catalog_mapping": spec.catalog_mapping,
    }


def _finetune(
    task: JobTask, role: str, spec: FinetuneParams, train: Callable[..., Any]
) -> dict[str, Any]:
    """Train once per task id, in the task's work dir (cross-validating first when the spec
    asks); the job registers the candidate."""
    from workers.inputs import data_files

    settings = get_settings()
    task_id = str(task.request.id)
    lock_timeout = settings.workers.lock_timeout_s
    with exclusive(
        redis_client(settings), f"task:{task_id}", timeout_s=lock_timeout, wait_s=2 * lock_timeout
    ) as held:
        if not held:
            raise TransientJobError(f"task {task_id} is running on another worker")
        done = _registered_by(settings, role, task_id)
        if done is not None:
            logger.info("task %s registered %s/%s already", task_id, role, done)
            return {"candidate": {"role": role, "version": done}, "summary": None, "reused": True}
        judgments, catalog = data_files(settings, **_data_params(spec))
        work = task.fresh_work_dir(settings)
        task.progress("train", role=role, judgments=str(judgments.path))
        _, summary = train(
            settings,
            judgments=judgments,
            catalog=catalog,
            out=work / "model",
            overrides=spec.overrides,
            register=True,
            job="finetune",
            task_id=task_id,
            # A task delivered again (its worker died) resumes from the last checkpoint.
            checkpoints=settings.home / "checkpoints" / f"{role}-{task_id}",
            resume=True,
            folds=spec.folds,
        )
        shutil.rmtree(work / "model", ignore_errors=True)  # the registry holds a copy
        task.progress("trained", role=role, version=summary["version"])
    return {"candidate": {"role": role, "version": summary["version"]}, "summary": _plain(summary)}


@job_task("finetune_reranker")
def finetune_reranker(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """Fine-tune the cross-encoder on judgments and register it as a candidate."""
    from ranker.training.jobs import train_reranker_job

    return _finetune(self, "reranker", FinetuneParams.model_validate(params), train_reranker_job)


@job_task("finetune_embedder")
def finetune_embedder(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """Fine-tune the bi-encoder on judgments and register it as a candidate."""
    from ranker.training.jobs import train_bi_encoder_job

    return _finetune(self, "embedder", FinetuneParams.model_validate(params), train_bi_encoder_job)


@job_task("compress")
def compress(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """Distil the teacher (the upstream candidate, ``teacher``, or production's source),
    export, quantize, gate; register the winner once per set of inputs."""
    from workers.compression import compress_once

    spec = CompressParams.model_validate(params)
    settings = get_settings()
    teacher = spec.teacher
    if teacher is None and upstream is not None:
        teacher = _target("compress", "reranker", None, upstream)[1]
    return compress_once(
        settings,
        teacher=teacher,
        judgments=spec.judgments,
        catalog=spec.catalog,
        judgment_mapping=spec.judgment_mapping,
        catalog_mapping=spec.catalog_mapping,
        config=spec.config,
        promote=spec.promote,
        task_id=str(self.request.id),
        work_dir=lambda: self.fresh_work_dir(settings),
        progress=self.progress,
        wait=True,
    )


@job_task("maybe_compress")
def maybe_compress(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """Beat's tick: compress production's teacher only when compression's inputs changed; the
    winner is promoted when the registry's gate passes."""
    from workers.compression import compress_once

    spec = MaybeCompressParams.model_validate(params)
    settings = get_settings()
    return compress_once(
        settings,
        teacher=None,
        judgments=spec.judgments,
        catalog=spec.catalog,
        judgment_mapping=spec.judgment_mapping,
        catalog_mapping=spec.catalog_mapping,
        config={},
        promote=True,
        task_id=str(self.request.id),
        work_dir=lambda: self.fresh_work_dir(settings),
        progress=self.progress,
        wait=False,
    )


@job_task("evaluate")
def evaluate(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """Measure a candidate on this machine and production on the same judgments."""
    from ranker.evaluation.candidate import evaluate_candidate
    from workers.cache import cached_embedder
    from workers.inputs import data_files

    spec = EvaluateParams.model_validate(params)
    role, version = _target("evaluate", spec.role, spec.version, upstream)
    settings = get_settings()
    judgments, catalog = data_files(settings, **_data_params(spec))
    self.progress("evaluate", role=role, version=version)
    metrics = evaluate_candidate(
        settings,
        role,
        version,
        judgments=judgments,
        catalog=catalog,
        repeats=spec.repeats,
        embedder_loader=lambda: cached_embedder(settings),
    )
    return {"candidate": {"role": role, "version": version}, "metrics": _plain(metrics)}


@job_task("promote")
def promote(self: JobTask, upstream: Upstream = None, **params: Any) -> dict[str, Any]:
    """Run the gate and promote when it passes. A refusal is a result with its reasons."""
    from ranker.model_switch import promote as promote_version
    from ranker.promotion import PromotionRefusedError
    from ranker.serving_models import open_registry

    spec = PromoteParams.model_validate(params)
    role, version = _target("promote", spec.role, spec.version, upstream)
    settings = get_settings()
    registry = open_registry(settings)
    ref = {"role": role, "version": version}
    if registry.production_version(role) == version:
        logger.info("%s/%s serves already; nothing to promote", role, version)
        return {"candidate": ref, "promoted": True, "already": True, "reasons": []}
    self.progress("gate", role=role, version=version)
    try:
        decision = promote_version(settings, role, version, actor=spec.actor, force=spec.force)
    except PromotionRefusedError as refused:
        return {
            "candidate": ref,
            "promoted": False,
            "reasons": list(refused.decision.reasons),
            "failures": list(refused.decision.failures),
            "gate": _plain(refused.decision.as_dict()),
        }
    return {
        "candidate": ref,
        "promoted": True,
        "reasons": list(decision.reasons),
        "gate": _plain(decision.as_dict()),
    }


__all__ = [
    "JobTask",
    "compress",
    "evaluate",
    "finetune_embedder",
    "finetune_reranker",
    "index",
    "maybe_compress",
    "promote",
]
