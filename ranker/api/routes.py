"""The search route. The client-compatible rerank and embed routes live in
:mod:`ranker.api.compat`; shapes in schemas.py, shared dependencies in deps.py.

``/search`` names the versions that served it: the header ``x-model-version`` and
``model_version`` (the reranker, when it reranked), ``x-embedder-version`` and
``embedder_version`` (the bi-encoder). It is async: it awaits the models' schedulers (see
:mod:`ranker.api.inference`) and retrieves in a worker thread, so the event loop always
answers, a 429 at once.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from indexer.stores.base import SearchFilter, StoreUnavailableError
from ranker.api import inference
from ranker.api.deps import (
    EmbeddingDep,
    MetricsDep,
    RerankerVersionsDep,
    ServiceDep,
    SettingsDep,
    embedder_of,
    name_stages,
    name_versions,
)
from ranker.api.errors import (
    ROUTE_ERROR_RESPONSES,
    IndexUnavailableError,
    RequestValidationFailedError,
    error_responses,
)
from ranker.api.rerank_budget import DepthChoice, choose_depth
from ranker.api.schemas import SearchHit, SearchRequest, SearchResponse
from ranker.api.service import Service, Snapshot
from ranker.api.validation import check_filter_values, check_query
from ranker.pipeline import SearchPipeline
from ranker.search_results import Candidates

router = APIRouter()

RERANK_DEPTH_HEADER = "x-rerank-depth"


@router.post(
    "/search",
    response_model=SearchResponse,
    tags=["search"],
    responses={**ROUTE_ERROR_RESPONSES, **error_responses(404)},
)
async def search(
    body: SearchRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    versions: RerankerVersionsDep,
) -> SearchResponse:
    """Retrieve (dense, lexical or hybrid), then rerank the top candidates.

    The query is embedded once, through the bi-encoder's scheduler (or found in its query
    cache); its vector serves both retrieval and the reranker's dense prior. Retrieval runs
    in a worker thread, the rerank through the reranker's scheduler; ``timings_ms`` (and
    the ``server-timing`` header) break the time down per stage. 503 ``index_unavailable``
    when the OpenSearch cluster cannot be reached and no embedded fallback is configured
    (``SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED``); with one, the answer's ``index`` says
    ``embedded``. ``model_version`` and the ``x-model-version`` header name the reranker
    version that scored the results; ``x-embedder-version`` the bi-encoder's.
    ``model_version`` in the request reranks with that registered version instead of the
    serving one (loaded and verified on first use; see :mod:`ranker.api.reranker_versions`):
    404 ``not_found`` for an unknown version, 422 ``integrity`` for one whose files changed.

    ``rerank_depth: "auto"`` reranks as deep as ``latency_budget_ms`` allows (see
    :mod:`ranker.api.rerank_budget`); ``rerank_depth`` in the answer and the
    ``x-rerank-depth`` header say which depth served (0: none fitted, retrieval order).
    """
    start = time.perf_counter()
    deadline = inference.deadline_of(request.headers)
    embedder = embedder_of(snapshot)
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
    auto = body.rerank_depth == "auto"
    asked_depth = body.rerank_depth if isinstance(body.rerank_depth, int) else None
    if asked_depth is not None and asked_depth > settings.api.max_documents:
        raise RequestValidationFailedError(
            f"rerank_depth {asked_depth} is above the limit {settings.api.max_documents}"
        )
    if auto:
        asked_depth = min(settings.api.max_auto_rerank_depth, settings.api.max_documents)
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
    timings = {"validate": 1e3 * (time.perf_counter() - start)}
    if body.model_version is not None and body.rerank:
        loading = time.perf_counter()
        snapshot = await run_in_threadpool(versions.snapshot_with, snapshot, body.model_version)
        reranker = snapshot.reranker
        timings["model_version"] = 1e3 * (time.perf_counter() - loading)
    spelled = None
    if body.correct_spelling:
        spelled = await run_in_threadpool(service.spelled, query, snapshot)
    searched = spelled.text if spelled is not None else query
    query_vector = None
    prior = reranker.prior if reranker is not None else None
    if (body.mode or settings.retrieval.mode) != "lexical" or (
        prior is not None and prior.reads_vectors_of(embedder)
    ):
        embedded = await inference.embed_query(
            embedder, searched, schedulers=service.schedulers, deadline=deadline, metrics=metrics
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
            rerank_depth=asked_depth,
            snapshot=snapshot,
            query_vector=query_vector,
            spelled=spelled,
            correct_spelling=False,  # corrected above, before the query was embedded
        )
    except StoreUnavailableError as exc:
        raise IndexUnavailableError(
            f"the search index is unavailable, retry later: {exc} (set "
            "SHOPRANK_OPENSEARCH__FALLBACK_TO_EMBEDDED=true to answer from the embedded index "
            "meanwhile)"
        ) from exc
    timings.update(found.timings_ms)
    choice = None
    if auto and pipeline.reranker is not None:
        choice = _auto_depth(
            found,
            pipeline=pipeline,
            service=service,
            snapshot=snapshot,
            budget_ms=body.latency_budget_ms or settings.api.latency_budget_ms,
            spent_ms=1e3 * (time.perf_counter() - start),
        )
        found = found.with_head(choice.depth)
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
    depth = _depth_used(pipeline, rerank=body.rerank, asked=asked_depth, choice=choice)
    name_versions(response, snapshot, reranked=reranked)
    name_stages(response, timings)
    if depth is not None:
        response.headers[RERANK_DEPTH_HEADER] = str(depth)
    return SearchResponse(
        query=query,
        corrected_query=outcome.corrected_query,
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
        rerank_depth=depth,
        predicted_rerank_ms=(
            round(choice.predicted_ms, 3) if choice and choice.predicted_ms is not None else None
        ),
        timings_ms={stage: round(ms, 3) for stage, ms in timings.items()},
        index=answered_by,
        model_version=snapshot.reranker_label if reranked else None,
        embedder_version=snapshot.embedder_label,
    )


def _auto_depth(
    found: Candidates,
    *,
    pipeline: SearchPipeline,
    service: Service,
    snapshot: Snapshot,
    budget_ms: float,
    spent_ms: float,
) -> DepthChoice:
    """The depth ``auto`` reranks: what fits the budget by the snapshot's cost model, pairs
    counted at the reranker's full length, after the wait its scheduler predicts. Without a
    measured cost model: the configured depth."""
    candidates = len(found.texts)
    cost = snapshot.reranker_cost
    reranker = pipeline.reranker
    if cost is None or reranker is None:
        return DepthChoice(min(pipeline.rerank_settings.depth, candidates), None, None)
    scheduler = service.schedulers.get(reranker)
    return choose_depth(
        cost,
        budget_ms=budget_ms,
        spent_ms=spent_ms,
        queue_wait_ms=1e3 * scheduler.estimated_wait_s() if scheduler is not None else 0.0,
        candidates=candidates,
        max_depth=candidates,
        tokens_per_pair=reranker.tokenizer.max_length,
    )


def _depth_used(
    pipeline: SearchPipeline, *, rerank: bool, asked: int | None, choice: DepthChoice | None
) -> int | None:
    """The depth a search reranked to: auto's choice, the one asked, else the default; None
    when it did not rerank at all (rerank off, or no reranker)."""
    if not rerank or pipeline.reranker is None:
        return None
    if choice is not None:
        return choice.depth
    return asked if asked is not None else pipeline.rerank_settings.depth
