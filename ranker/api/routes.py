"""The HTTP routes. Shapes live in schemas.py, limits in validation.py, errors in errors.py."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse

from indexer.stores.base import SearchFilter, StoreError, StoreUnavailableError
from ranker.api.errors import IndexUnavailableError, NotReadyError, RequestValidationFailedError
from ranker.api.metrics import Metrics
from ranker.api.schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    HealthResponse,
    IndexHealth,
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
from ranker.api.service import Service
from ranker.api.validation import check_documents, check_query, require_text
from ranker.embedder import Embedder
from ranker.reranker import Reranker
from ranker.settings import Settings

router = APIRouter()


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


def _reranker(service: Annotated[Service, Depends(_service)]) -> Reranker:
    if service.reranker is None:
        raise NotReadyError("no reranker is loaded (" + "; ".join(service.problems) + ")")
    return service.reranker


def _embedder(service: Annotated[Service, Depends(_service)]) -> Embedder:
    if service.embedder is None:
        raise NotReadyError("no embedder is loaded (" + "; ".join(service.problems) + ")")
    return service.embedder


ServiceDep = Annotated[Service, Depends(_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
RerankerDep = Annotated[Reranker, Depends(_reranker)]
EmbedderDep = Annotated[Embedder, Depends(_embedder)]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def _score_documents(
    reranker: Reranker,
    settings: Settings,
    *,
    query: str,
    documents: list[str],
    truncate: bool,
    field: str,
) -> tuple[np.ndarray, dict[str, float]]:
    """Validate, then score; returns logits and stage timings."""
    start = time.perf_counter()
    query = check_query(query, limits=settings.api, tokenizer=reranker.tokenizer, truncate=truncate)
    query_tokens = reranker.tokenizer.count_tokens([query])[0] - 2
    documents = check_documents(
        documents,
        limits=settings.api,
        tokenizer=reranker.tokenizer,
        # A pair is [CLS] query [SEP] document [SEP]; counts include [CLS] and [SEP].
        max_tokens=reranker.tokenizer.max_length - query_tokens - 1,
        truncate=truncate,
        what=field,
    )
    validated = time.perf_counter()
    logits = reranker.score(query, documents)
    done = time.perf_counter()
    return logits, {"validate": 1e3 * (validated - start), "rerank": 1e3 * (done - validated)}


@router.post("/search", response_model=SearchResponse, tags=["search"])
def search(
    body: SearchRequest, service: ServiceDep, settings: SettingsDep, metrics: MetricsDep
) -> SearchResponse:
    """Retrieve (dense, lexical or hybrid), then rerank the top candidates.

    503 ``index_unavailable`` when the OpenSearch cluster cannot be reached and no embedded
    fallback is configured (``SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED``); with one, the
    answer's ``index`` says ``embedded``.
    """
    start = time.perf_counter()
    if service.embedder is None:
        raise NotReadyError("no embedder is loaded (" + "; ".join(service.problems) + ")")
    query = check_query(
        body.query,
        limits=settings.api,
        tokenizer=service.embedder.tokenizer,
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
    validated = time.perf_counter()
    try:
        outcome, answered_by = service.search(
            query,
            k=body.k,
            mode=body.mode,
            search_filter=search_filter,
            rerank=body.rerank,
            rerank_depth=body.rerank_depth,
        )
    except StoreUnavailableError as exc:
        raise IndexUnavailableError(
            f"the search index is unavailable, retry later: {exc} (set "
            "SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED=true to answer from the embedded index "
            "meanwhile)"
        ) from exc
    timings = {"validate": 1e3 * (validated - start), **outcome.timings_ms}
    timings["total"] = 1e3 * (time.perf_counter() - start)
    metrics.observe_stages(timings)
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
    )


@router.post("/v1/rerank", response_model=CohereRerankResponse | list[RerankScore], tags=["rerank"])
def cohere_rerank(
    body: CohereRerankRequest,
    reranker: RerankerDep,
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
    expects from a connector (``shoprank opensearch setup-rerank`` registers one).
    """
    texts = [d.text if isinstance(d, RerankDocument) else d for d in body.documents]
    logits, timings = _score_documents(
        reranker,
        settings,
        query=body.query,
        documents=texts,
        truncate=body.truncate,
        field="documents",
    )
    metrics.observe_stages(timings)
    scores = _sigmoid(logits)
    order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))[: body.top_n]
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
        meta={"model": reranker.model_id, "timings_ms": timings},
    )


@router.post("/rerank", response_model=list[TeiRank], tags=["rerank"])
def tei_rerank(
    body: TeiRerankRequest, reranker: RerankerDep, settings: SettingsDep, metrics: MetricsDep
) -> list[TeiRank]:
    """text-embeddings-inference-style rerank: ``[{index, score}]``, best first."""
    logits, timings = _score_documents(
        reranker,
        settings,
        query=body.query,
        documents=body.texts,
        truncate=body.truncate,
        field="texts",
    )
    metrics.observe_stages(timings)
    scores = logits.astype(np.float64) if body.raw_scores else _sigmoid(logits)
    order = sorted(range(len(body.texts)), key=lambda i: (-scores[i], i))
    return [
        TeiRank(index=i, score=float(scores[i]), text=body.texts[i] if body.return_text else None)
        for i in order
    ]


@router.post("/embed", response_model=list[list[float]], tags=["embed"])
def tei_embed(
    body: TeiEmbedRequest, embedder: EmbedderDep, settings: SettingsDep
) -> list[list[float]]:
    """text-embeddings-inference-style embed: one vector per input."""
    inputs = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    inputs = [require_text(text, what=f"inputs[{i}]") for i, text in enumerate(inputs)]
    checked = check_documents(
        inputs,
        limits=settings.api,
        tokenizer=embedder.tokenizer,
        max_tokens=embedder.tokenizer.max_length,
        truncate=body.truncate,
        what="inputs",
        max_count=settings.api.max_embed_inputs,
    )
    vectors = embedder.embed(checked, normalize=body.normalize)
    return [[float(value) for value in vector] for vector in vectors]


@router.get(
    "/healthz",
    response_model=HealthResponse,
    tags=["health"],
    responses={503: {"model": HealthResponse, "description": "Not everything is loaded."}},
)
def healthz(request: Request, response: Response) -> HealthResponse:
    """Which components are loaded, on which backend, and which index answers searches.

    200 when everything is loaded and the configured index answers (``ok``), or the
    embedded fallback answers while OpenSearch is unreachable (``fallback``); else 503.
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
    backends = {}
    if service.embedder is not None:
        backends["embedder"] = f"{service.embedder.backend.name}:{service.embedder.backend.device}"
    if service.reranker is not None:
        backends["reranker"] = f"{service.reranker.backend.name}:{service.reranker.backend.device}"
    state = service.index_state()
    status = service.status
    models_loaded = service.embedder is not None and service.reranker is not None
    if models_loaded and state.serving is not None:
        status = "ok" if state.serving == state.backend else "fallback"
    elif status == "ok":
        status = "degraded"
    response.status_code = 200 if status in ("ok", "fallback") else 503
    serving = service.fallback if status == "fallback" else service.pipeline
    products = None
    if serving is not None and state.serving is not None:
        try:
            products = len(serving.product_store)
        except StoreError:
            products = None
    return HealthResponse(
        status=status,  # type: ignore[arg-type]
        products=products,
        embedder=service.embedder.identity.model_id if service.embedder else None,
        reranker=service.reranker.model_id if service.reranker else None,
        backend=backends,
        index=IndexHealth(
            backend=state.backend,
            serving=state.serving,
            reachable=state.reachable,
            fallback=state.fallback,
            detail=state.detail,
        ),
        detail="; ".join([*service.problems, *([state.detail] if state.detail else [])]),
    )


@router.get("/metrics", response_class=PlainTextResponse, tags=["health"])
def metrics_text(metrics: MetricsDep) -> str:
    """Prometheus text format."""
    return metrics.render()
