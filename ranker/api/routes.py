"""The search route. The client-compatible rerank and embed routes live in
:mod:`ranker.api.compat`; shapes in schemas.py, shared dependencies in deps.py.

``/search`` names the versions that served it: the header ``x-model-version`` and
``model_version`` (the reranker, when it reranked), ``x-embedder-version`` and
``embedder_version`` (the bi-encoder).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from indexer.stores.base import SearchFilter, StoreUnavailableError
from ranker.api.deps import (
    EmbeddingDep,
    MetricsDep,
    ServiceDep,
    SettingsDep,
    embedder_of,
    name_versions,
)
from ranker.api.errors import (
    ROUTE_ERROR_RESPONSES,
    IndexUnavailableError,
    RequestValidationFailedError,
)
from ranker.api.schemas import SearchHit, SearchRequest, SearchResponse
from ranker.api.validation import check_filter_values, check_query

router = APIRouter()


@router.post(
    "/search", response_model=SearchResponse, tags=["search"], responses=ROUTE_ERROR_RESPONSES
)
def search(
    body: SearchRequest,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> SearchResponse:
    """Retrieve (dense, lexical or hybrid), then rerank the top candidates.

    503 ``index_unavailable`` when the OpenSearch cluster cannot be reached and no embedded
    fallback is configured (``SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED``); with one, the
    answer's ``index`` says ``embedded``. ``model_version`` and the ``x-model-version``
    header name the reranker version that scored the results; ``x-embedder-version`` the
    bi-encoder's.
    """
    start = time.perf_counter()
    embedder = embedder_of(snapshot)
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
        check_filter_values(body.filters.brands, limits=settings.api, what="filters.brands")
        check_filter_values(body.filters.categories, limits=settings.api, what="filters.categories")
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
            snapshot=snapshot,
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
    reranked = outcome.reranked > 0
    name_versions(response, snapshot, reranked=reranked)
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
