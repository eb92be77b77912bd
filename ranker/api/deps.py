"""What every route module shares: request dependencies and response headers.

Each request reads the service's snapshot once and runs on it to the end (hot reload swaps
whole snapshots; the request's lease keeps its models' schedulers running), and every scored
answer names the version that scored it: the header ``x-model-version`` (``reranker/v3``),
and ``x-embedder-version`` where vectors were used; ``server-timing`` has the time per stage.

The dependencies are async: they run on the event loop, never waiting for a worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated

import numpy as np
from fastapi import Depends, Request, Response

from ranker.api.errors import NotReadyError
from ranker.api.metrics import Metrics
from ranker.api.reranker_versions import RerankerVersions
from ranker.api.service import Service, Snapshot
from ranker.embedder import Embedder
from ranker.reranker import Reranker
from ranker.settings import Settings

MODEL_VERSION_HEADER = "x-model-version"
EMBEDDER_VERSION_HEADER = "x-embedder-version"
SERVER_TIMING_HEADER = "server-timing"


async def _service(request: Request) -> Service:
    service: Service | None = request.app.state.service
    if service is None:
        raise NotReadyError("the service is still loading")
    return service


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _reranker_versions(request: Request) -> RerankerVersions:
    versions: RerankerVersions = request.app.state.reranker_versions
    return versions


async def _snapshot(service: Annotated[Service, Depends(_service)]) -> AsyncIterator[Snapshot]:
    """The snapshot this request runs on (read once; FastAPI caches it per request), its
    models' schedulers held until the request is done."""
    with service.lease() as snapshot:
        yield snapshot


def not_loaded(what: str, service: Service) -> NotReadyError:
    """503 for a missing model, with why it is missing."""
    return NotReadyError(f"no {what} is loaded (" + "; ".join(service.all_problems()) + ")")


async def _scoring(
    service: Annotated[Service, Depends(_service)],
    snapshot: Annotated[Snapshot, Depends(_snapshot)],
) -> Snapshot:
    """The snapshot, when it has a reranker; else 503."""
    if snapshot.reranker is None:
        raise not_loaded("reranker", service)
    return snapshot


async def _embedding(
    service: Annotated[Service, Depends(_service)],
    snapshot: Annotated[Snapshot, Depends(_snapshot)],
) -> Snapshot:
    """The snapshot, when it has an embedder; else 503."""
    if snapshot.embedder is None:
        raise not_loaded("embedder", service)
    return snapshot


ServiceDep = Annotated[Service, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
RerankerVersionsDep = Annotated[RerankerVersions, Depends(_reranker_versions)]
SnapshotDep = Annotated[Snapshot, Depends(_snapshot)]
ScoringDep = Annotated[Snapshot, Depends(_scoring)]
EmbeddingDep = Annotated[Snapshot, Depends(_embedding)]


def name_versions(response: Response, snapshot: Snapshot, *, reranked: bool = True) -> None:
    """The serving versions in the response headers."""
    if reranked and snapshot.reranker_label is not None:
        response.headers[MODEL_VERSION_HEADER] = snapshot.reranker_label
    if snapshot.embedder_label is not None:
        response.headers[EMBEDDER_VERSION_HEADER] = snapshot.embedder_label


def name_stages(response: Response, timings_ms: Mapping[str, float]) -> None:
    """The stage times in ``server-timing``: ``tokenize;dur=1.2, queue;dur=0.4, ...``."""
    response.headers[SERVER_TIMING_HEADER] = ", ".join(
        f"{stage};dur={ms:.1f}" for stage, ms in timings_ms.items()
    )


def reranker_of(snapshot: Snapshot) -> Reranker:
    """The snapshot's reranker (the ``ScoringDep`` dependency checked it is there)."""
    if snapshot.reranker is None:
        raise NotReadyError("no reranker is loaded")
    return snapshot.reranker


def embedder_of(snapshot: Snapshot) -> Embedder:
    """The snapshot's embedder (the ``EmbeddingDep`` dependency checked it is there)."""
    if snapshot.embedder is None:
        raise NotReadyError("no embedder is loaded")
    return snapshot.embedder


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logits as relevance scores in [0, 1], float64."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def best_first(scores: np.ndarray, top_n: int | None = None) -> list[int]:
    """Indices by descending score, ties by index; the first ``top_n`` (all when None)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_n]
