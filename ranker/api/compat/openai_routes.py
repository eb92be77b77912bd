"""OpenAI's embeddings routes, for the openai SDK given ``base_url=<shoprank>/v1``.

``model`` in answers is the serving bi-encoder's version (also ``x-embedder-version``); the
``model`` a request names is accepted and ignored, as one bi-encoder serves. Errors come in
OpenAI's body (see :mod:`ranker.api.error_shapes`), so the SDK's exceptions carry them.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response

from ranker.api.compat.embedding import (
    as_base64,
    as_floats,
    check_dimensions,
    embed_texts,
    refuse_token_ids,
)
from ranker.api.compat.openai_schemas import (
    EMBEDDINGS_PATH,
    MODELS_PATH,
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIErrorResponse,
    OpenAIModel,
    OpenAIModelList,
    OpenAIUsage,
)
from ranker.api.deps import (
    EmbeddingDep,
    MetricsDep,
    ServiceDep,
    SettingsDep,
    SnapshotDep,
    embedder_of,
    name_stages,
    name_versions,
)
from ranker.api.errors import ROUTE_ERROR_STATUSES, error_responses
from ranker.serving_models import ModelSource

openai_router = APIRouter(
    responses=error_responses(*ROUTE_ERROR_STATUSES, model=OpenAIErrorResponse)
)


@openai_router.post(EMBEDDINGS_PATH, response_model=OpenAIEmbeddingResponse, tags=["embed"])
async def openai_embeddings(
    body: OpenAIEmbeddingRequest,
    request: Request,
    response: Response,
    service: ServiceDep,
    snapshot: EmbeddingDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> OpenAIEmbeddingResponse:
    """OpenAI embeddings: unit vectors as floats or base64 (little-endian float32), with usage.

    ``input`` is a string or a list of strings; token-id arrays are refused (422), and so is
    a ``dimensions`` other than the model's. Inputs longer than the model reads are cut at
    the end unless ``truncate`` is false (then 413). ``server-timing`` has the time per
    stage.
    """
    refuse_token_ids(body.input, field="input")
    embedder = embedder_of(snapshot)
    check_dimensions(embedder, body.dimensions, field="dimensions")
    texts = [body.input] if isinstance(body.input, str) else [str(text) for text in body.input]
    embedded = await embed_texts(
        request,
        service=service,
        snapshot=snapshot,
        settings=settings,
        metrics=metrics,
        texts=texts,
        truncate=body.truncate,
        count_tokens=True,
        field="input",
    )
    name_versions(response, snapshot, reranked=False)
    name_stages(response, embedded.timings_ms)
    if body.encoding_format == "base64":
        data = [
            OpenAIEmbedding(embedding=as_base64(vector), index=i)
            for i, vector in enumerate(embedded.vectors)
        ]
    else:
        data = [
            OpenAIEmbedding(embedding=vector, index=i)
            for i, vector in enumerate(as_floats(embedded.vectors))
        ]
    return OpenAIEmbeddingResponse(
        data=data,
        model=snapshot.embedder_label or embedder.identity.model_id,
        usage=OpenAIUsage(prompt_tokens=embedded.tokens, total_tokens=embedded.tokens),
    )


def _created(source: ModelSource | None) -> int:
    """When a registry version was registered, in Unix seconds; 0 when unknown."""
    stamp = source.version.manifest.get("created_at") if source and source.version else None
    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp()) if stamp else 0
    except ValueError:
        return 0


@openai_router.get(MODELS_PATH, response_model=OpenAIModelList, tags=["embed"])
def openai_models(snapshot: SnapshotDep) -> OpenAIModelList:
    """The served models in OpenAI's list shape: the bi-encoder and the reranker, each named
    by its version."""
    models = []
    if snapshot.embedder_label is not None:
        created = _created(snapshot.embedder_source)
        models.append(OpenAIModel(id=snapshot.embedder_label, created=created, role="embedder"))
    if snapshot.reranker_label is not None:
        created = _created(snapshot.reranker_source)
        models.append(OpenAIModel(id=snapshot.reranker_label, created=created, role="reranker"))
    return OpenAIModelList(data=models)
