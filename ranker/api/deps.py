"""What every route module shares: request dependencies, version headers and scoring.

Each request reads the service's snapshot once and runs on it to the end (hot reload swaps
whole snapshots), and every scored answer names the version that scored it: the header
``x-model-version`` (``reranker/v3``), and ``x-embedder-version`` where vectors were used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, Request, Response

from ranker.api.errors import NotReadyError
from ranker.api.metrics import Metrics
from ranker.api.service import Service, Snapshot
from ranker.api.validation import check_documents, check_query
from ranker.embedder import Embedder
from ranker.reranker import Reranker
from ranker.settings import Settings

MODEL_VERSION_HEADER = "x-model-version"
EMBEDDER_VERSION_HEADER = "x-embedder-version"


def _service(request: Request) -> Service:
    service: Service | None = request.app.state.service
    if service is None:
        raise NotReadyError("the service is still loading")
    return service


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _snapshot(service: Annotated[Service, Depends(_service)]) -> Snapshot:
    """The snapshot this request runs on (read once; FastAPI caches it per request)."""
    return service.snapshot


def not_loaded(what: str, service: Service) -> NotReadyError:
    """503 for a missing model, with why it is missing."""
    return NotReadyError(f"no {what} is loaded (" + "; ".join(service.all_problems()) + ")")


def _scoring(
    service: Annotated[Service, Depends(_service)],
    snapshot: Annotated[Snapshot, Depends(_snapshot)],
) -> Snapshot:
    """The snapshot, when it has a reranker; else 503."""
    if snapshot.reranker is None:
        raise not_loaded("reranker", service)
    return snapshot


def _embedding(
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
SnapshotDep = Annotated[Snapshot, Depends(_snapshot)]
ScoringDep = Annotated[Snapshot, Depends(_scoring)]
EmbeddingDep = Annotated[Snapshot, Depends(_embedding)]


def name_versions(response: Response, snapshot: Snapshot, *, reranked: bool = True) -> None:
    """The serving versions in the response headers."""
    if reranked and snapshot.reranker_label is not None:
        response.headers[MODEL_VERSION_HEADER] = snapshot.reranker_label
    if snapshot.embedder_label is not None:
        response.headers[EMBEDDER_VERSION_HEADER] = snapshot.embedder_label


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


@dataclass(frozen=True, slots=True)
class Scored:
    """Logits in the documents' order, stage timings, and the tokens read (when counted)."""

    logits: np.ndarray
    timings_ms: dict[str, float]
    tokens: int = 0


def score_documents(
    reranker: Reranker,
    settings: Settings,
    *,
    query: str,
    documents: Sequence[str],
    truncate: bool,
    field: str,
    side: Literal["right", "left"] = "right",
    max_document_tokens: int | None = None,
    count_tokens: bool = False,
) -> Scored:
    """Validate, then score.

    ``truncate``: cut over-long inputs (from ``side``) instead of refusing them with 413.
    ``max_document_tokens``: also cut each document to that many word pieces.
    ``count_tokens``: count the tokens the model reads (for usage fields).
    """
    start = time.perf_counter()
    tokenizer = reranker.tokenizer
    query = check_query(query, limits=settings.api, tokenizer=tokenizer, truncate=truncate)
    query_tokens = tokenizer.count_tokens([query])[0] - 2
    # A pair is [CLS] query [SEP] document [SEP]; counts include [CLS] and [SEP].
    room = tokenizer.max_length - query_tokens - 3
    checked = check_documents(
        documents,
        limits=settings.api,
        tokenizer=tokenizer,
        max_tokens=room + 2,
        truncate=truncate,
        what=field,
    )
    cut = room if truncate and side == "left" else None
    if max_document_tokens is not None:
        cut = max_document_tokens if cut is None else min(cut, max_document_tokens)
    if cut is not None:
        checked = [tokenizer.truncate_text(text, cut, side=side) for text in checked]
    tokens = 0
    if count_tokens:
        counts = tokenizer.count_tokens(checked)
        tokens = sum(min(count - 2, room) + query_tokens + 3 for count in counts)
    validated = time.perf_counter()
    logits = reranker.score(query, checked)
    done = time.perf_counter()
    timings = {"validate": 1e3 * (validated - start), "rerank": 1e3 * (done - validated)}
    return Scored(logits=logits, timings_ms=timings, tokens=tokens)
