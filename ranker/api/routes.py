"""The HTTP routes. Shapes live in schemas.py, limits in validation.py, errors in errors.py.

Each request reads the service's snapshot once and runs on it to the end (hot reload swaps
whole snapshots), and every scored answer names the version that scored it: the header
``x-model-version`` (``reranker/v3``), plus ``meta.model_version`` or ``model_version`` in
bodies that have a place for it, and ``x-embedder-version`` where vectors were used.

The routes that run models are async: they await the models' schedulers (see
:mod:`ranker.api.inference`) and run the rest of their work (retrieval, long validation) in
worker threads, so the event loop always answers, a 429 at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from indexer.stores.base import SearchFilter, StoreUnavailableError
from ranker.api import inference
from ranker.api.errors import IndexUnavailableError, NotReadyError, RequestValidationFailedError
from ranker.api.metrics import Metrics
from ranker.api.schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    RerankDocument,
    RerankFormat,
    RerankScore,
    SearchHit,
    SearchRequest,
    SearchResponse,
    TeiEmbedRequest,
    TeiRank,
    TeiRerankRequest,
)
from ranker.api.service import Service, Snapshot
from ranker.api.validation import check_documents, check_query, require_text
from ranker.reranker import Reranker
from ranker.settings import Settings

router = APIRouter()

MODEL_VERSION_HEADER = "x-model-version"
EMBEDDER_VERSION_HEADER = "x-embedder-version"


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


async def _snapshot(service: Annotated[Service, Depends(_service)]) -> AsyncIterator[Snapshot]:
    """The snapshot this request runs on (read once; FastAPI caches it per request), its
    models' schedulers held until the request is done."""
    with service.lease() as snapshot:
        yield snapshot


def _not_loaded(what: str, service: Service) -> NotReadyError:
    return NotReadyError(f"no {what} is loaded (" + "; ".join(service.all_problems()) + ")")


async def _scoring(
    service: Annotated[Service, Depends(_service)],
    snapshot: Annotated[Snapshot, Depends(_snapshot)],
) -> Snapshot:
    """The snapshot, when it has a reranker; else 503."""
    if snapshot.reranker is None:
        raise _not_loaded("reranker", service)
    return snapshot


async def _embedding(
    service: Annotated[Service, Depends(_service)],
    snapshot: Annotated[Snapshot, Depends(_snapshot)],
) -> Snapshot:
    """The snapshot, when it has an embedder; else 503."""
    if snapshot.embedder is None:
        raise _not_loaded("embedder", service)
    return snapshot


ServiceDep = Annotated[Service, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
ScoringDep = Annotated[Snapshot, Depends(_scoring)]
EmbeddingDep = Annotated[Snapshot, Depends(_embedding)]


def _server_timing(response: Response, timings_ms: dict[str, float]) -> None:
    response.headers["server-timing"] = inference.server_timing(timings_ms)


def _name_versions(response: Response, snapshot: Snapshot, *, reranked: bool = True) -> None:
    """The serving versions in the response headers."""
    if reranked and snapshot.reranker_label is not None:
        response.headers[MODEL_VERSION_HEADER] = snapshot.reranker_label
    if snapshot.embedder_label is not None:
        response.headers[EMBEDDER_VERSION_HEADER] = snapshot.embedder_label


def _reranker_of(snapshot: Snapshot) -> Reranker:
    if snapshot.reranker is None:  # _scoring checked it; this tells mypy
        raise NotReadyError("no reranker is loaded")
    return snapshot.reranker


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


@router.post("/search", response_model=SearchResponse, tags=["search"])
async def search(
    body: SearchRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> SearchResponse:
    """Retrieve (dense, lexical or hybrid), then rerank the top candidates.

    The query is embedded once, through the bi-encoder's scheduler; its vector serves both
    retrieval and the reranker's dense prior. Retrieval runs in a worker thread, the rerank
    through the reranker's scheduler; ``timings_ms`` (and the ``server-timing`` header)
    break the time down per stage. 503 ``index_unavailable`` when the OpenSearch cluster
    cannot be reached and no embedded fallback is configured
    (``SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED``); with one, the answer's ``index`` says
    ``embedded``. ``model_version`` and the ``x-model-version`` header name the reranker
    version that scored the results; ``x-embedder-version`` the bi-encoder's.
    """
    start = time.perf_counter()
    deadline = inference.deadline_of(request.headers)
    embedder = snapshot.embedder
    if embedder is None:  # _embedding checked it; this tells mypy
        raise _not_loaded("embedder", service)
    reranker = snapshot.reranker if body.rerank else None
    inference.admit(service.schedulers.get(embedder), service.schedulers.get(reranker))
    query = check_query(
        body.query,
        limits=settings.api,
        tokenizer=embedder.tokenizer,
        truncate=body.truncate,
    )
    if body.k > settings.api.max_k:
        raise RequestValidationFailedError(f"k {body.k} is above the limit {settings.api.max_k}")
    if body.rerank_depth is not None and body.rerank_depth > settings.api.max_documents:
        raise RequestValidationFailedError(
            f"rerank_depth {body.rerank_depth} is above the limit {settings.api.max_documents}"
        )
    search_filter = None
    if body.filters is not None:
        try:
            search_filter = SearchFilter(
                brands=tuple(body.filters.brands),
                categories=tuple(body.filters.categories),
                price_min=body.filters.price_min,
                price_max=body.filters.price_max,
            )
        except ValueError as exc:
            raise RequestValidationFailedError(f"filters: {exc}") from exc
    timings = {"validate": 1e3 * (time.perf_counter() - start)}
    query_vector = None
    prior = reranker.prior if reranker is not None else None
    if (body.mode or settings.retrieval.mode) != "lexical" or (
        prior is not None and prior.reads_vectors_of(embedder)
    ):
        embedded = await inference.embed(
            embedder, [query], schedulers=service.schedulers, deadline=deadline, metrics=metrics
        )
        query_vector = embedded.vectors[0]
        timings["embed_query"] = sum(embedded.timings_ms.values())
    try:
        found, pipeline, answered_by = await run_in_threadpool(
            service.candidates,
            query,
            k=body.k,
            mode=body.mode,
            search_filter=search_filter,
            rerank=body.rerank,
            rerank_depth=body.rerank_depth,
            snapshot=snapshot,
            query_vector=query_vector,
        )
    except StoreUnavailableError as exc:
        raise IndexUnavailableError(
            f"the search index is unavailable, retry later: {exc} (set "
            "SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED=true to answer from the embedded index "
            "meanwhile)"
        ) from exc
    timings.update(found.timings_ms)
    scores = None
    if found.texts and pipeline.reranker is not None:
        reranking = time.perf_counter()
        scored = await inference.rerank(
            pipeline.reranker,
            found.query,
            found.texts,
            schedulers=service.schedulers,
            document_vectors=found.document_vectors,
            query_vector=found.query_vector,
            deadline=deadline,
            metrics=metrics,
        )
        scores = [float(score) for score in scored.logits]
        timings.update(scored.timings_ms)
        timings["rerank"] = 1e3 * (time.perf_counter() - reranking)
    outcome = pipeline.ranked(found, scores)
    timings["total"] = 1e3 * (time.perf_counter() - start)
    metrics.observe_stages(timings)
    reranked = outcome.reranked > 0
    _name_versions(response, snapshot, reranked=reranked)
    _server_timing(response, timings)
    return SearchResponse(
        query=query,
        results=[
            SearchHit(
                id=r.product.id,
                title=r.product.title,
                brand=r.product.brand,
                color=r.product.color,
                category=list(r.product.category),
                price=r.product.price,
                score=r.score,
                retrieval_score=r.retrieval_score,
                rerank_score=r.rerank_score,
            )
            for r in outcome.results
        ],
        reranked=outcome.reranked,
        timings_ms={stage: round(ms, 3) for stage, ms in timings.items()},
        index=answered_by,
        model_version=snapshot.reranker_label if reranked else None,
        embedder_version=snapshot.embedder_label,
    )


@router.post("/v1/rerank", response_model=CohereRerankResponse | list[RerankScore], tags=["rerank"])
async def cohere_rerank(
    body: CohereRerankRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: ScoringDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    response_format: Annotated[
        RerankFormat,
        Query(
            alias="format",
            description="cohere: {id, results, meta}; array: a bare JSON array of "
            "{index, relevance_score}, what OpenSearch ML Commons' "
            "connector.post_process.default.rerank reads.",
        ),
    ] = "cohere",
) -> CohereRerankResponse | list[RerankScore]:
    """Cohere-style rerank: results carry ``index`` and ``relevance_score`` in [0, 1].

    ``?format=array`` answers the same results, best first, as a bare JSON array of
    ``{index, relevance_score}``: the shape ML Commons' default rerank post-process function
    expects from a connector (``shoprank opensearch setup-rerank`` registers one). The
    ``x-model-version`` header (and ``meta.model_version``) names the version that scored;
    ``server-timing`` (and ``meta.timings_ms``) the time per stage.
    """
    reranker = _reranker_of(snapshot)
    texts = [d.text if isinstance(d, RerankDocument) else d for d in body.documents]
    logits, timings = await inference.score_documents(
        request,
        service,
        snapshot,
        settings,
        metrics,
        query=body.query,
        documents=texts,
        truncate=body.truncate,
        field="documents",
    )
    scores = _sigmoid(logits)
    order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))[: body.top_n]
    _name_versions(response, snapshot)
    _server_timing(response, timings)
    if response_format == "array":
        return [RerankScore(index=i, relevance_score=float(scores[i])) for i in order]
    return CohereRerankResponse(
        id=str(uuid.uuid4()),
        results=[
            CohereRerankResult(
                index=i,
                relevance_score=float(scores[i]),
                document=RerankDocument(text=texts[i]) if body.return_documents else None,
            )
            for i in order
        ],
        meta={
            "model": reranker.model_id,
            "model_version": snapshot.reranker_label,
            "timings_ms": timings,
        },
    )


@router.post("/rerank", response_model=list[TeiRank], tags=["rerank"])
async def tei_rerank(
    body: TeiRerankRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: ScoringDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> list[TeiRank]:
    """text-embeddings-inference-style rerank: ``[{index, score}]``, best first; the
    ``x-model-version`` header names the version that scored, ``server-timing`` the time
    per stage."""
    logits, timings = await inference.score_documents(
        request,
        service,
        snapshot,
        settings,
        metrics,
        query=body.query,
        documents=body.texts,
        truncate=body.truncate,
        field="texts",
    )
    scores = logits.astype(np.float64) if body.raw_scores else _sigmoid(logits)
    order = sorted(range(len(body.texts)), key=lambda i: (-scores[i], i))
    _name_versions(response, snapshot)
    _server_timing(response, timings)
    return [
        TeiRank(index=i, score=float(scores[i]), text=body.texts[i] if body.return_text else None)
        for i in order
    ]


@router.post("/embed", response_model=list[list[float]], tags=["embed"])
async def tei_embed(
    body: TeiEmbedRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> list[list[float]]:
    """text-embeddings-inference-style embed: one vector per input; ``x-embedder-version``
    names the bi-encoder, ``server-timing`` the time per stage."""
    start = time.perf_counter()
    deadline = inference.deadline_of(request.headers)
    embedder = snapshot.embedder
    if embedder is None:  # _embedding checked it; this tells mypy
        raise NotReadyError("no embedder is loaded")
    inference.admit(service.schedulers.get(embedder))
    inputs = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    inputs = [require_text(text, what=f"inputs[{i}]") for i, text in enumerate(inputs)]
    checked = await run_in_threadpool(
        check_documents,
        inputs,
        limits=settings.api,
        tokenizer=embedder.tokenizer,
        max_tokens=embedder.tokenizer.max_length,
        truncate=body.truncate,
        what="inputs",
        max_count=settings.api.max_embed_inputs,
    )
    timings = {"validate": 1e3 * (time.perf_counter() - start)}
    embedded = await inference.embed(
        embedder,
        checked,
        schedulers=service.schedulers,
        normalize=body.normalize,
        deadline=deadline,
        metrics=metrics,
    )
    timings.update(embedded.timings_ms)
    metrics.observe_stages(timings)
    _name_versions(response, snapshot, reranked=False)
    _server_timing(response, timings)
    return [[float(value) for value in vector] for vector in embedded.vectors]
