"""text-embeddings-inference's routes, for ``huggingface_hub.InferenceClient(base_url=...)``
and TEI clients, and Infinity's rerank on the same ``POST /rerank``.

``POST /rerank`` answers each body in its own shape: ``{query, texts}`` (TEI) with a bare
list of ``{index, score, text?}``, ``{query, documents}`` (Infinity) with
``{object: "rerank", results, model, usage, id, created}``. ``POST /`` embeds, as TEI serving
an embedding model does. TEI's defaults hold (see :mod:`ranker.api.compat.tei_schemas`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import Discriminator, Tag

from ranker import __version__
from ranker.api.compat.embedding import (
    as_floats,
    check_dimensions,
    embed_texts,
    refuse_token_ids,
)
from ranker.api.compat.tei_schemas import (
    InfinityRerankRequest,
    InfinityRerankResponse,
    InfinityRerankResult,
    InfinityUsage,
    TeiEmbedRequest,
    TeiInfo,
    TeiRank,
    TeiRerankRequest,
    TeiToken,
    TeiTokenizeRequest,
)
from ranker.api.deps import (
    EmbeddingDep,
    MetricsDep,
    ScoringDep,
    ServiceDep,
    SettingsDep,
    SnapshotDep,
    best_first,
    embedder_of,
    name_stages,
    name_versions,
    not_loaded,
    reranker_of,
    sigmoid,
)
from ranker.api.errors import (
    ROUTE_ERROR_RESPONSES,
    EmptyInputError,
    InputTooLargeError,
    NotReadyError,
    RequestValidationFailedError,
)
from ranker.api.inference import Side, score_documents
from ranker.api.service import Snapshot
from ranker.settings import Settings

RERANK_SHAPES = ("tei", "infinity")


def _rerank_shape(body: Any) -> str:
    """Infinity's body has ``documents``; TEI's has ``texts``."""
    return "infinity" if isinstance(body, dict) and "documents" in body else "tei"


RerankBody = Annotated[
    Annotated[TeiRerankRequest, Tag("tei")] | Annotated[InfinityRerankRequest, Tag("infinity")],
    Discriminator(_rerank_shape),
]


class _UntaggedErrors(APIRoute):
    """Validation errors name a field as its shape does (``texts``, not ``tei.texts``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def untagged(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = []
                for error in exc.errors():
                    loc = tuple(error.get("loc", ()))
                    if loc[:1] == ("body",) and loc[1:2] and loc[1] in RERANK_SHAPES:
                        error = {**error, "loc": (loc[0], *loc[2:])}
                    errors.append(error)
                raise RequestValidationError(errors, body=exc.body) from exc

        return untagged


tei_router = APIRouter(route_class=_UntaggedErrors, responses=ROUTE_ERROR_RESPONSES)


def _side(direction: str) -> Side:
    """TEI's truncation direction: the side an over-long input loses."""
    return "left" if direction.lower() == "left" else "right"


def _refuse_prompt(prompt_name: str | None) -> None:
    if prompt_name is not None:
        raise RequestValidationFailedError(
            f"prompt_name {prompt_name!r}: the served model has no prompts (send null)"
        )


@tei_router.post(
    "/rerank",
    response_model=list[TeiRank] | InfinityRerankResponse,
    response_model_exclude_none=True,
    tags=["rerank"],
)
async def rerank(
    body: RerankBody,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: ScoringDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> list[TeiRank] | InfinityRerankResponse:
    """TEI's rerank (``texts``): every text, best first, as ``[{index, score, text?}]``; or
    Infinity's (``documents``): ``results`` best first, cut to ``top_n``, with ``usage``.

    Scores are sigmoid relevance in [0, 1], or logits with ``raw_scores``. The
    ``x-model-version`` header (and Infinity's ``model``) names the version that scored,
    ``server-timing`` the time per stage.
    """
    reranker = reranker_of(snapshot)
    side: Side = "right"
    if isinstance(body, InfinityRerankRequest):
        texts, truncate, field = body.documents, True, "documents"
    else:
        texts, truncate, field = body.texts, bool(body.truncate), "texts"
        side = _side(body.truncation_direction)
    scored = await score_documents(
        request,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        query=body.query,
        documents=texts,
        truncate=truncate,
        field=field,
        side=side,
        count_tokens=isinstance(body, InfinityRerankRequest),
    )
    scores = scored.logits.astype("float64") if body.raw_scores else sigmoid(scored.logits)
    name_versions(response, snapshot)
    name_stages(response, scored.timings_ms)
    if isinstance(body, InfinityRerankRequest):
        return InfinityRerankResponse(
            results=[
                InfinityRerankResult(
                    relevance_score=float(scores[i]),
                    index=i,
                    document=texts[i] if body.return_documents else None,
                )
                for i in best_first(scores, body.top_n)
            ],
            model=snapshot.reranker_label or reranker.model_id,
            usage=InfinityUsage(prompt_tokens=scored.tokens, total_tokens=scored.tokens),
            id=f"infinity-{uuid.uuid4()}",
            created=int(time.time()),
        )
    return [
        TeiRank(index=i, score=float(scores[i]), text=texts[i] if body.return_text else None)
        for i in best_first(scores)
    ]


@tei_router.post("/", response_model=list[list[float]], tags=["embed"])
@tei_router.post("/embed", response_model=list[list[float]], tags=["embed"])
async def embed(
    body: TeiEmbedRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> list[list[float]]:
    """TEI's embed (also ``POST /``, where TEI serving an embedding model embeds): one vector
    per input; an input longer than the model reads is 413 unless ``truncate`` is true.
    ``x-embedder-version`` names the bi-encoder, ``server-timing`` the time per stage."""
    refuse_token_ids(body.inputs, field="inputs")
    _refuse_prompt(body.prompt_name)
    embedder = embedder_of(snapshot)
    check_dimensions(embedder, body.dimensions, field="dimensions")
    inputs = [body.inputs] if isinstance(body.inputs, str) else [str(t) for t in body.inputs]
    embedded = await embed_texts(
        request,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        texts=inputs,
        truncate=bool(body.truncate),
        side=_side(body.truncation_direction),
        normalize=body.normalize,
    )
    name_versions(response, snapshot, reranked=False)
    name_stages(response, embedded.timings_ms)
    return as_floats(embedded.vectors)


@tei_router.post("/tokenize", response_model=list[list[TeiToken]], tags=["embed"])
def tokenize(
    body: TeiTokenizeRequest, snapshot: EmbeddingDep, settings: SettingsDep
) -> list[list[TeiToken]]:
    """The bi-encoder's tokens of each input, whole (never truncated): ``id``, ``text``,
    ``special``, and character offsets ``start``/``stop`` (null for special tokens)."""
    _refuse_prompt(body.prompt_name)
    inputs = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not inputs:
        raise EmptyInputError("inputs is empty")
    limit = settings.api.max_embed_inputs
    if len(inputs) > limit:
        raise InputTooLargeError(f"{len(inputs)} inputs; the limit per call is {limit}")
    for index, text in enumerate(inputs):
        if not text:
            raise EmptyInputError(f"inputs[{index}] is empty")
        if len(text) > settings.api.max_document_chars:
            raise InputTooLargeError(
                f"inputs[{index}] has {len(text)} characters; the limit is "
                f"{settings.api.max_document_chars}"
            )
    encodings = embedder_of(snapshot).tokenizer.tokenize(
        inputs, add_special_tokens=body.add_special_tokens
    )
    return [
        [
            TeiToken(id=token_id, text=token, special=True, start=None, stop=None)
            if special
            else TeiToken(id=token_id, text=text[start:stop], special=False, start=start, stop=stop)
            for token_id, token, special, (start, stop) in zip(
                encoding.ids,
                encoding.tokens,
                encoding.special_tokens_mask,
                encoding.offsets,
                strict=True,
            )
        ]
        for text, encoding in zip(inputs, encodings, strict=True)
    ]


def _info(snapshot: Snapshot, settings: Settings) -> TeiInfo:
    """TEI's ``/info`` for the embedder, else for the reranker."""
    embedder, reranker = snapshot.embedder, snapshot.reranker
    reranker_summary = None
    if reranker is not None:
        reranker_summary = {
            "model_id": reranker.model_id,
            "model_version": snapshot.reranker_label,
            "max_input_length": reranker.tokenizer.max_length,
            "max_client_batch_size": settings.api.max_documents,
        }
    if embedder is not None:
        return TeiInfo(
            model_id=embedder.identity.model_id,
            model_dtype=str(getattr(embedder.backend, "dtype", "float32")),
            model_type={"embedding": {"pooling": "mean"}},
            max_input_length=embedder.tokenizer.max_length,
            max_batch_tokens=embedder.batch_size * embedder.tokenizer.max_length,
            max_client_batch_size=settings.api.max_embed_inputs,
            model_version=snapshot.embedder_label,
            reranker=reranker_summary,
            max_concurrent_requests=settings.api.max_concurrent_requests,
            version=__version__,
        )
    reranker = reranker_of(snapshot)
    return TeiInfo(
        model_id=reranker.model_id,
        model_dtype=str(getattr(reranker.backend, "dtype", "float32")),
        model_type={"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}},
        max_input_length=reranker.tokenizer.max_length,
        max_batch_tokens=reranker.batch_size * reranker.tokenizer.max_length,
        max_client_batch_size=settings.api.max_documents,
        model_version=snapshot.reranker_label,
        max_concurrent_requests=settings.api.max_concurrent_requests,
        version=__version__,
    )


@tei_router.get("/info", response_model=TeiInfo, tags=["health"])
def info(service: ServiceDep, snapshot: SnapshotDep, settings: SettingsDep) -> TeiInfo:
    """TEI's model info: the embedder's id, dtype, pooling and limits (the reranker's when no
    embedder serves; 503 when neither does)."""
    if snapshot.embedder is None and snapshot.reranker is None:
        raise not_loaded("model", service)
    return _info(snapshot, settings)


@tei_router.get("/health", response_class=Response, tags=["health"])
def health(snapshot: SnapshotDep) -> Response:
    """TEI's health check: 200 with an empty body while a model serves and its backend is
    healthy; else 503 ``unhealthy``."""
    models = [model for model in (snapshot.embedder, snapshot.reranker) if model is not None]
    if not models or not all(model.backend.health() for model in models):
        raise NotReadyError("unhealthy")
    return Response(status_code=200)
