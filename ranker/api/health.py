"""The health routes: ``/healthz`` (what is loaded, which versions serve, which index
answers) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from indexer.redaction import redact
from indexer.stores.base import StoreError
from ranker.api.metrics import CONTENT_TYPE, Metrics
from ranker.api.schemas import HealthResponse, IndexHealth
from ranker.api.service import Service

health_router = APIRouter()


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(_metrics)]


@health_router.get(
    "/healthz",
    response_model=HealthResponse,
    tags=["health"],
    responses={503: {"model": HealthResponse, "description": "Not everything is loaded."}},
)
def healthz(request: Request, response: Response) -> HealthResponse:
    """Which components are loaded, on which backend, which versions serve, which index
    answers searches.

    200 when everything is loaded and the configured index answers (``ok``), or the
    embedded fallback answers while OpenSearch is unreachable (``fallback``), or everything
    serves but a model is not its production version (``degraded``: ``detail`` says why,
    e.g. ``reranker/v3: file model.onnx does not match its manifest hash``); else 503.
    Credentials in URLs are never shown.
    """
    service: Service | None = request.app.state.service
    if service is None:
        response.status_code = 503
        return HealthResponse(
            status="unavailable",
            products=None,
            embedder=None,
            reranker=None,
            backend={},
            detail="loading",
        )
    secrets: tuple[str, ...] = getattr(request.app.state, "secrets", ())
    snapshot = service.snapshot
    backends = {}
    if snapshot.embedder is not None:
        backend = snapshot.embedder.backend
        backends["embedder"] = f"{backend.name}:{backend.device}"
    if snapshot.reranker is not None:
        backend = snapshot.reranker.backend
        backends["reranker"] = f"{backend.name}:{backend.device}"
    state = service.index_state(snapshot)
    models_loaded = snapshot.embedder is not None and snapshot.reranker is not None
    serving = models_loaded and state.serving is not None
    if serving and service.model_problems:
        status = "degraded"
    elif serving:
        status = "ok" if state.serving == state.backend else "fallback"
    else:
        status = "degraded" if service.status != "unavailable" else "unavailable"
    response.status_code = 200 if serving else 503
    answering = snapshot.fallback if state.serving != state.backend else snapshot.pipeline
    products = None
    if answering is not None and state.serving is not None:
        try:
            products = len(answering.product_store)
        except StoreError:
            products = None
    detail = "; ".join([*service.all_problems(), *([state.detail] if state.detail else [])])
    return HealthResponse(
        status=status,  # type: ignore[arg-type]
        products=products,
        embedder=snapshot.embedder.identity.model_id if snapshot.embedder else None,
        reranker=snapshot.reranker.model_id if snapshot.reranker else None,
        backend=backends,
        versions=snapshot.versions(),
        rerank_cost=snapshot.reranker_cost.as_dict() if snapshot.reranker_cost else None,
        index=IndexHealth(
            backend=state.backend,
            serving=state.serving,
            reachable=state.reachable,
            fallback=state.fallback,
            detail=redact(state.detail, secrets),
        ),
        detail=redact(detail, secrets),
    )


@health_router.get(
    "/metrics",
    response_class=Response,
    tags=["health"],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics_text(metrics: MetricsDep) -> Response:
    """Prometheus text format: request histograms by route template and status, stage
    timings, requests in flight, and the serving models' versions and backends."""
    return Response(content=metrics.render(), media_type=CONTENT_TYPE)
