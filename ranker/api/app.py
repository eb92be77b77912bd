"""The FastAPI application: loads models and indexes once, then serves the routes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ranker.api.errors import (
    ERROR_TABLE,
    ApiError,
    MalformedRequestError,
    OverloadedError,
    RequestValidationFailedError,
)
from ranker.api.metrics import Metrics
from ranker.api.routes import router
from ranker.api.service import Service
from ranker.settings import Settings, get_settings

logger = logging.getLogger(__name__)

ServiceLoader = Callable[[Settings], Service]


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        status_code=error.status_code,
        content={"error": error.message, "error_type": error.error_type},
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
) -> FastAPI:
    """Build the app. ``service`` is used as given (tests); else ``loader`` runs at start-up."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.service is None:
            load = loader
            if load is None:
                from ranker.api.service import load_service

                load = load_service
            app.state.service = load(settings)
        yield

    app = FastAPI(
        title="shoprank",
        summary="Product search with dense + BM25 retrieval and a cross-encoder reranker.",
        description="Errors: "
        + "; ".join(f"{row.status_code} `{row.error_type}`: {row.meaning}" for row in ERROR_TABLE),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.metrics = Metrics()
    gate = _ConcurrencyGate(settings.api.max_concurrent_requests)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_describe_validation(exc))

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
    return app
