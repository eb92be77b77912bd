"""The FastAPI application: loads models and indexes at start-up, keeps them on the
registry's production versions (hot reload), and serves the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from indexer.redaction import install_log_redaction, redact, secret_values
from ranker.api.admin import admin_router
from ranker.api.errors import (
    ERROR_TABLE,
    ApiError,
    InternalError,
    MalformedRequestError,
    OverloadedError,
    RequestValidationFailedError,
    api_error_for,
)
from ranker.api.health import health_router
from ranker.api.metrics import Metrics
from ranker.api.model_loading import ModelLoader
from ranker.api.routes import router
from ranker.api.service import Service, load_service
from ranker.errors import ShoprankError
from ranker.settings import Settings, get_settings

logger = logging.getLogger(__name__)

ServiceLoader = Callable[[Settings], Service]
LOGGERS_REDACTED = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
"""Loggers whose handlers mask credentials (the root's and uvicorn's own)."""


def _error_response(error: ApiError, secrets: Sequence[str] = ()) -> JSONResponse:
    body = error.body()
    body["error"] = redact(error.message, secrets)
    return JSONResponse(
        status_code=error.status_code, content=body, headers=error.response_headers()
    )


def _describe_validation(exc: RequestValidationError) -> ApiError:
    """Turn pydantic's error list into one clear message of the right class."""
    messages = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        kind = error.get("type", "")
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "invalid JSON")
            return MalformedRequestError(f"malformed JSON: {detail}")
        if kind == "extra_forbidden":
            messages.append(f"unknown field {location!r}")
        elif kind == "missing":
            messages.append(f"missing field {location!r}")
        else:
            messages.append(f"{location or 'body'}: {error.get('msg', kind)}")
    return RequestValidationFailedError("; ".join(messages) or "invalid request")


class _ConcurrencyGate:
    """Admits at most ``limit`` requests at once; the rest are shed with 429."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)

    def try_enter(self) -> bool:
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        self._slots.release()


def create_app(
    settings: Settings | None = None,
    *,
    service: Service | None = None,
    loader: ServiceLoader | None = None,
    reload: bool | None = None,
    model_loader: ModelLoader | None = None,
    sighup: bool | None = None,
) -> FastAPI:
    """Build the app. ``service`` is used as given (tests); else ``loader`` runs at start-up.

    ``reload``: follow the registry's production pointers (default: when the app loads its
    service with :func:`~ranker.api.service.load_service`); ``model_loader`` builds the new
    versions (default: :mod:`ranker.loading`). ``sighup``: also check on SIGHUP (default:
    when reloading and started in the main thread, as under ``shoprank serve``; never in a
    test client, whose lifespan runs in another thread).
    """
    settings = settings or get_settings()
    secrets = secret_values(settings)
    admin_keys = settings.api.admin_key_list()
    watch = reload if reload is not None else service is None and loader in (None, load_service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction(secrets, loggers=LOGGERS_REDACTED)
        if not admin_keys:
            logger.warning(
                "the /admin routes are off: no admin keys are set (SHOPRANK_API__ADMIN_KEYS)"
            )
        if app.state.service is None:
            app.state.service = (loader or load_service)(settings)
        if watch:
            from ranker.api.reload import ModelWatcher

            watcher = ModelWatcher(app.state.service, settings, loader=model_loader)
            app.state.watcher = watcher if watcher.start() else None
        handles_sighup = _install_sighup(app, wanted=sighup if sighup is not None else watch)
        try:
            yield
        finally:
            if handles_sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if app.state.watcher is not None:
                app.state.watcher.stop()
            if app.state.service is not None:
                app.state.service.schedulers.close()

    app = FastAPI(
        title="shoprank",
        summary="Product search with dense + BM25 retrieval and a cross-encoder reranker.",
        description="Errors: "
        + "; ".join(f"{row.status_code} `{row.error_type}`: {row.meaning}" for row in ERROR_TABLE),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.secrets = secrets
    app.state.admin_keys = admin_keys
    app.state.watcher = None
    app.state.metrics = Metrics()
    gate = _ConcurrencyGate(settings.api.max_concurrent_requests)

    @app.exception_handler(ShoprankError)
    async def _shoprank_error(_: Request, exc: ShoprankError) -> JSONResponse:
        return _error_response(api_error_for(exc), secrets)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_describe_validation(exc), secrets)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex
        logger.error(
            "request %s %s failed (request id %s)",
            request.method,
            request.url.path,
            request_id,
            exc_info=exc,
        )
        error = InternalError(f"internal error; the server log has request id {request_id}")
        response = _error_response(error, secrets)
        response.headers["x-request-id"] = request_id
        return response

    @app.middleware("http")
    async def _gate_and_measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        metrics: Metrics = app.state.metrics
        cheap = request.url.path in ("/healthz", "/metrics")
        if not cheap and not gate.try_enter():
            metrics.observe(request.url.path, 429, 0.0)
            return _error_response(
                OverloadedError(
                    f"more than {settings.api.max_concurrent_requests} requests in flight"
                )
            )
        start = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            if not cheap:
                gate.leave()
        elapsed = time.perf_counter() - start
        metrics.observe(request.url.path, response.status_code, elapsed)
        response.headers["x-total-time"] = f"{1e3 * elapsed:.1f}"
        return response

    app.include_router(router)
    app.include_router(health_router)
    if admin_keys:
        app.include_router(admin_router)
    return app


def _install_sighup(app: FastAPI, *, wanted: bool) -> bool:
    """Wake the watcher on SIGHUP; only in the main thread (where signals are delivered)."""
    watcher = app.state.watcher
    if not wanted or watcher is None or threading.current_thread() is not threading.main_thread():
        return False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, watcher.wake)
        logger.info("SIGHUP makes the API check the registry now")
        return True
    return False
