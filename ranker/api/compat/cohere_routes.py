"""Cohere's rerank and embed routes, for the cohere SDK (``Client`` and ``ClientV2`` given
``base_url``), langchain-cohere's ``CohereRerank`` and litellm's cohere provider (``api_base``).

Rerank scores are the cross-encoder's logits through a sigmoid, in [0, 1]. ``meta`` is
Cohere's (``api_version``, ``billed_units``) plus ``model`` and ``model_version``, which
Cohere's clients keep as extra fields; the ``x-model-version`` header names the version too.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from ranker.api.compat.cohere_schemas import (
    CohereApiVersion,
    CohereBilledUnits,
    CohereDocument,
    CohereEmbedByTypeResponse,
    CohereEmbeddingsByType,
    CohereEmbedFloatsResponse,
    CohereEmbedRequest,
    CohereMeta,
    CohereRerankRequest,
    CohereRerankResponse,
    CohereRerankResult,
    RerankFormat,
    RerankScore,
)
from ranker.api.compat.embedding import as_floats, check_dimensions, embed_texts
from ranker.api.deps import (
    EmbeddingDep,
    MetricsDep,
    ScoringDep,
    ServiceDep,
    SettingsDep,
    best_first,
    embedder_of,
    name_stages,
    name_versions,
    reranker_of,
    sigmoid,
)
from ranker.api.errors import ROUTE_ERROR_RESPONSES, RequestValidationFailedError
from ranker.api.inference import score_documents
from ranker.api.metrics import Metrics
from ranker.api.service import Service, Snapshot
from ranker.settings import Settings

cohere_router = APIRouter(responses=ROUTE_ERROR_RESPONSES)

DOCUMENTS_PER_SEARCH_UNIT = 100
"""Cohere bills one search unit per query and up to 100 documents."""


def _field_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def document_text(document: CohereDocument, index: int, rank_fields: list[str] | None) -> str:
    """The text ranked for one document.

    A string is itself. An object is its ``text`` field, or with ``rank_fields`` those
    fields it has, in that order, as ``field: value`` lines (how langchain-cohere writes
    an object as YAML).
    """
    if isinstance(document, str):
        return document
    if rank_fields is None:
        if "text" not in document:
            raise RequestValidationFailedError(
                f"documents[{index}] has no 'text' field (send rank_fields to name the fields "
                "to rank on)"
            )
        return _field_text(document["text"])
    lines = [f"{name}: {_field_text(document[name])}" for name in rank_fields if name in document]
    if not lines:
        raise RequestValidationFailedError(
            f"documents[{index}] has none of the rank_fields {rank_fields}"
        )
    return "\n".join(lines)


def _returned_document(document: CohereDocument, text: str) -> dict[str, Any]:
    """What a result carries with return_documents: the object given, with a ``text``."""
    if isinstance(document, str):
        return {"text": document}
    return {**document, "text": document.get("text", text)}


def _meta(
    version: str,
    *,
    billed: CohereBilledUnits,
    model_version: str | None,
    model: str | None = None,
    timings_ms: dict[str, float] | None = None,
) -> CohereMeta:
    return CohereMeta(
        api_version=CohereApiVersion(version=version),
        billed_units=billed,
        model=model,
        model_version=model_version,
        timings_ms=timings_ms,
    )


async def _rerank(
    body: CohereRerankRequest,
    request: Request,
    *,
    response: Response,
    service: Service,
    snapshot: Snapshot,
    settings: Settings,
    metrics: Metrics,
    version: str,
) -> tuple[CohereRerankResponse, list[RerankScore]]:
    """Score, order, cut to ``top_n``: the answer, and the same results as an array."""
    reranker = reranker_of(snapshot)
    texts = [document_text(d, i, body.rank_fields) for i, d in enumerate(body.documents)]
    scored = await score_documents(
        request,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        query=body.query,
        documents=texts,
        truncate=body.truncate,
        field="documents",
        max_document_tokens=body.max_tokens_per_doc,
    )
    scores = sigmoid(scored.logits)
    order = best_first(scores, body.top_n)
    name_versions(response, snapshot)
    name_stages(response, scored.timings_ms)
    results = [
        CohereRerankResult(
            index=i,
            relevance_score=float(scores[i]),
            document=_returned_document(body.documents[i], texts[i])
            if body.return_documents
            else None,
        )
        for i in order
    ]
    meta = _meta(
        version,
        billed=CohereBilledUnits(search_units=math.ceil(len(texts) / DOCUMENTS_PER_SEARCH_UNIT)),
        model_version=snapshot.reranker_label,
        model=reranker.model_id,
        timings_ms=scored.timings_ms,
    )
    answer = CohereRerankResponse(id=str(uuid.uuid4()), results=results, meta=meta)
    return answer, [RerankScore(index=r.index, relevance_score=r.relevance_score) for r in results]


@cohere_router.post(
    "/v1/rerank",
    response_model=CohereRerankResponse | list[RerankScore],
    response_model_exclude_none=True,
    tags=["rerank"],
)
async def cohere_rerank_v1(
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
    """Cohere v1 rerank: results carry ``index`` and ``relevance_score`` in [0, 1], best first.

    Documents are strings or objects (ranked on their ``text``, or on ``rank_fields``);
    ``document`` is in a result only with ``return_documents``. ``?format=array`` answers the
    same results as a bare JSON array of ``{index, relevance_score}``: the shape ML Commons'
    default rerank post-process function expects from a connector (``shoprank opensearch
    setup-rerank`` registers one). The ``x-model-version`` header (and
    ``meta.model_version``) names the version that scored; ``server-timing`` (and
    ``meta.timings_ms``) the time per stage.
    """
    answer, array = await _rerank(
        body,
        request,
        response=response,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        version="1",
    )
    return array if response_format == "array" else answer


@cohere_router.post(
    "/v2/rerank",
    response_model=CohereRerankResponse,
    response_model_exclude_none=True,
    tags=["rerank"],
)
async def cohere_rerank_v2(
    body: CohereRerankRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: ScoringDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> CohereRerankResponse:
    """Cohere v2 rerank (``ClientV2.rerank``, litellm): as v1, and ``max_tokens_per_doc``
    cuts each document to that many word pieces."""
    answer, _ = await _rerank(
        body,
        request,
        response=response,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        version="2",
    )
    return answer


async def _embed(
    body: CohereEmbedRequest,
    request: Request,
    *,
    response: Response,
    service: Service,
    snapshot: Snapshot,
    settings: Settings,
    metrics: Metrics,
) -> tuple[list[list[float]], CohereBilledUnits]:
    """Refuse what is not served (images, content objects, other types), then embed."""
    embedder = embedder_of(snapshot)
    if body.images or body.inputs or body.input_type == "image":
        raise RequestValidationFailedError("only texts are embedded: send texts")
    if body.texts is None:
        raise RequestValidationFailedError("missing field 'texts'")
    others = sorted(set(body.embedding_types or ()) - {"float"})
    if others:
        raise RequestValidationFailedError(
            f"embedding_types {others}: only 'float' embeddings are served"
        )
    check_dimensions(embedder, body.output_dimension, field="output_dimension")
    embedded = await embed_texts(
        request,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        texts=body.texts,
        truncate=body.truncate != "NONE",
        side="left" if body.truncate == "START" else "right",
        max_tokens=body.max_tokens,
        count_tokens=True,
        field="texts",
    )
    name_versions(response, snapshot, reranked=False)
    name_stages(response, embedded.timings_ms)
    return as_floats(embedded.vectors), CohereBilledUnits(input_tokens=embedded.tokens)


@cohere_router.post(
    "/v1/embed",
    response_model=CohereEmbedFloatsResponse | CohereEmbedByTypeResponse,
    response_model_exclude_none=True,
    tags=["embed"],
)
async def cohere_embed_v1(
    body: CohereEmbedRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> CohereEmbedFloatsResponse | CohereEmbedByTypeResponse:
    """Cohere v1 embed: ``embeddings`` is a list of float vectors, or ``{float: [...]}`` when
    ``embedding_types`` is given; ``meta.model_version`` and ``x-embedder-version`` name the
    bi-encoder."""
    vectors, billed = await _embed(
        body,
        request,
        response=response,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
    )
    meta = _meta("1", billed=billed, model_version=snapshot.embedder_label)
    texts = body.texts or []
    if body.embedding_types is None:
        return CohereEmbedFloatsResponse(
            id=str(uuid.uuid4()), embeddings=vectors, texts=texts, meta=meta
        )
    return CohereEmbedByTypeResponse(
        id=str(uuid.uuid4()),
        embeddings=CohereEmbeddingsByType.model_validate({"float": vectors}),
        texts=texts,
        meta=meta,
    )


@cohere_router.post(
    "/v2/embed",
    response_model=CohereEmbedByTypeResponse,
    response_model_exclude_none=True,
    tags=["embed"],
)
async def cohere_embed_v2(
    body: CohereEmbedRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> CohereEmbedByTypeResponse:
    """Cohere v2 embed (``ClientV2.embed``): ``embeddings: {float: [...]}``; ``max_tokens``
    cuts each text; ``meta.model_version`` and ``x-embedder-version`` name the bi-encoder."""
    vectors, billed = await _embed(
        body,
        request,
        response=response,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
    )
    return CohereEmbedByTypeResponse(
        id=str(uuid.uuid4()),
        embeddings=CohereEmbeddingsByType.model_validate({"float": vectors}),
        texts=body.texts or [],
        meta=_meta("2", billed=billed, model_version=snapshot.embedder_label),
    )
