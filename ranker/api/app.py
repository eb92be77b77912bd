"""The FastAPI application: loads models and indexes at start-up, keeps them on the
registry's production versions (hot reload), and serves the routes behind the edge
middleware (:mod:`ranker.api.edge`: request ids, keys, body limits, the concurrency gate)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from indexer.redaction import install_log_redaction, secret_values
from ranker.api.admin import admin_router
from ranker.api.compat.cohere_routes import cohere_router
from ranker.api.compat.openai_routes import openai_router
from ranker.api.compat.tei_routes import tei_router
from ranker.api.edge import EdgeMiddleware
from ranker.api.error_handlers import install_error_handlers
from ranker.api.errors import ERROR_TABLE
from ranker.api.health import health_router
from ranker.api.logs import install_log_format
from ranker.api.metrics import Metrics, route_templates
from ranker.api.model_loading import ModelLoader
from ranker.api.reranker_versions import RerankerVersions
from ranker.api.routes import router
from ranker.api.service import Service
from ranker.api.service_loading import load_service
from ranker.api.workbench import WorkbenchJudgments, workbench_router
from ranker.settings import ApiSettings, Settings, get_settings

logger = logging.getLogger(__name__)

ServiceLoader = Callable[[Settings], Service]
LOGGERS_REDACTED = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
"""Loggers whose handlers mask credentials (the root's and uvicorn's own)."""


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
    service with :func:`~ranker.api.service_loading.load_service`); ``model_loader`` builds the new
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
        tune_threads(settings.api)
        install_log_redaction(secrets, loggers=LOGGERS_REDACTED)
        install_log_format(settings.api.log_format, loggers=LOGGERS_REDACTED)
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
    app.state.reranker_versions = RerankerVersions(settings, loader=model_loader)
    app.state.workbench_judgments = WorkbenchJudgments(settings)
    app.state.metrics = metrics = Metrics(
        max_concurrent_requests=settings.api.max_concurrent_requests,
        service=lambda: app.state.service,
    )
    install_error_handlers(app, secrets)
    app.add_middleware(
        EdgeMiddleware,
        settings=settings.api,
        metrics=metrics,
        route_templates=lambda: route_templates(app),
        secrets=secrets,
    )

    app.include_router(router)
    app.include_router(cohere_router)
    app.include_router(openai_router)
    app.include_router(tei_router)
    app.include_router(health_router)
    app.include_router(workbench_router)
    if admin_keys:
        app.include_router(admin_router)
    return app


def tune_threads(api: ApiSettings) -> None:
    """The worker-thread limit, FAISS's OpenMP threads and the interpreter's switch
    interval the settings ask for (``api.worker_threads``, ``api.faiss_threads``,
    ``api.switch_interval_ms``); in the serving event loop."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = api.worker_threads
    if api.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(api.faiss_threads)
    sys.setswitchinterval(api.switch_interval_ms / 1e3)
    logger.info(
        "%d worker threads, %s FAISS threads, a %.1f ms switch interval",
        api.worker_threads,
        api.faiss_threads or "default",
        api.switch_interval_ms,
    )


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
