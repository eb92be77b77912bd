"""The admin routes: submit and follow jobs, promote, roll back, list the registry's models.

Mounted only when admin keys are configured (``SHOPRANK_API__ADMIN_KEYS``, comma-separated);
without any the routes do not exist (404). Every route needs ``Authorization: Bearer <key>``:
no header or a malformed one answers 401 (with ``WWW-Authenticate: Bearer``), a key that is
not configured 403. Keys are compared in constant time (:mod:`ranker.api.keys`) and never
echoed; history records the caller as ``admin:<8 hex digits of the key's sha256>``. A
promotion or rollback wakes hot reload, so this API serves the new version within moments.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from indexer.redaction import redact
from ranker.api.errors import ADMIN_ERROR_RESPONSES, JobBrokerUnavailableError
from ranker.api.keys import bearer_key_fingerprint
from ranker.api.schemas import (
    JobStatus,
    JobSubmitRequest,
    JobSubmitted,
    ModelsResponse,
    ModelVersionInfo,
    PromoteRequest,
    PromoteResponse,
    RoleModels,
    RollbackRequest,
    RollbackResponse,
)
from ranker.api.service import Service
from ranker.registry import ROLES, Registry
from ranker.settings import Settings

WORKERS_HINT = "pip install 'shoprank[workers]'"


def require_admin_key(request: Request) -> str:
    """The caller's name for history (``admin:<key fingerprint>``); 401 or 403 otherwise."""
    keys: tuple[str, ...] = request.app.state.admin_keys
    header = request.headers.get("authorization")
    return f"admin:{bearer_key_fingerprint(header, keys, what='admin key')}"


ActorDep = Annotated[str, Depends(require_admin_key)]

admin_router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=ADMIN_ERROR_RESPONSES,
)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def _registry(settings: Settings) -> Registry:
    return Registry(settings.registry_path)


def _wake_reload(request: Request) -> None:
    watcher = getattr(request.app.state, "watcher", None)
    if watcher is not None:
        watcher.wake()


def _workers() -> Any:
    """``workers.client``, imported on first use; 503 when the workers are not installed."""
    try:
        from workers import client
    except ImportError as exc:
        raise JobBrokerUnavailableError(
            f"the job queue is not available here: {exc.name or exc} is missing ({WORKERS_HINT})"
        ) from exc
    return client


@admin_router.post("/jobs", status_code=202, response_model=JobSubmitted)
def submit_job(body: JobSubmitRequest, settings: SettingsDep, _: ActorDep) -> JobSubmitted:
    """Queue a job (index, retrain, compress, evaluate, promote, finetune_embedder).

    503 ``broker_unavailable`` when the broker (Redis) cannot be reached; 422
    ``bad_request`` for parameters the kind does not take.
    """
    job_id = _workers().submit_job(settings, body.kind, body.params)
    return JobSubmitted(id=job_id, kind=body.kind, status_url=f"/admin/jobs/{job_id}")


@admin_router.get("/jobs", response_model=list[JobStatus])
def list_jobs(
    request: Request, settings: SettingsDep, _: ActorDep, limit: int = 50
) -> list[JobStatus]:
    """The most recent jobs, newest first."""
    jobs = _workers().list_jobs(settings, limit=max(1, limit))
    return [_job_status(job, request) for job in jobs]


@admin_router.get("/jobs/{job_id}", response_model=JobStatus)
def get_job(job_id: str, request: Request, settings: SettingsDep, _: ActorDep) -> JobStatus:
    """A job's state, progress and result; 404 for an id never submitted."""
    return _job_status(_workers().job_status(settings, job_id), request)


def _job_status(job: dict[str, Any], request: Request) -> JobStatus:
    """A job's status with credentials masked in its error (a task's message may hold a URL)."""
    error = job.get("error")
    if isinstance(error, str):
        job = {**job, "error": redact(error, request.app.state.secrets)}
    return JobStatus(**job)


@admin_router.post("/promote", response_model=PromoteResponse)
def promote(
    body: PromoteRequest, request: Request, settings: SettingsDep, actor: ActorDep
) -> PromoteResponse:
    """Judge a candidate by the gate (NDCG@10 and latency budgets), promote it when it passes.

    409 ``promotion_refused`` with the gate's ``reasons`` when it does not (``force`` promotes
    anyway, recorded as forced); 404 for an unknown version; 422 ``integrity`` for a version
    whose files changed.
    """
    from ranker.model_switch import promote as promote_version

    registry = _registry(settings)
    decision = promote_version(settings, body.role, body.version, actor=actor, force=body.force)
    _wake_reload(request)
    return PromoteResponse(
        role=body.role,
        production=registry.production_version(body.role),
        forced=body.force and not decision.passed,
        gate=decision.as_dict(),
    )


@admin_router.post("/rollback", response_model=RollbackResponse)
def rollback(
    body: RollbackRequest, request: Request, settings: SettingsDep, actor: ActorDep
) -> RollbackResponse:
    """Point production back at ``to``, or at the version it replaced last."""
    registry = _registry(settings)
    previous = registry.production_version(body.role)
    restored = registry.rollback(
        body.role, to=body.to, actor=actor, reason=body.reason or "admin API rollback"
    )
    _wake_reload(request)
    return RollbackResponse(role=body.role, production=restored.version, previous=previous)


@admin_router.get("/models", response_model=ModelsResponse)
def models(request: Request, response: Response, settings: SettingsDep) -> ModelsResponse:
    """Every version per role (state, metrics, gate), production, and what serves here."""
    registry = _registry(settings)
    service: Service | None = request.app.state.service
    serving = service.snapshot.versions() if service is not None else {}
    roles: dict[str, RoleModels] = {}
    for role in ROLES:
        roles[role] = RoleModels(
            production=registry.production_version(role),
            serving=serving.get(role),
            problem=service.model_problems.get(role) if service is not None else None,
            versions=[
                ModelVersionInfo(
                    version=version.version,
                    ref=version.ref,
                    state=version.state.value,
                    created_at=version.manifest.get("created_at"),
                    created_by=dict(version.manifest.get("created_by") or {}),
                    key=version.key,
                    metrics=dict(version.metrics),
                    gate=version.manifest.get("gate"),
                    lineage=dict(version.lineage),
                )
                for version in registry.versions(role)
            ],
        )
    response.headers["cache-control"] = "no-store"
    return ModelsResponse(roles=roles)
