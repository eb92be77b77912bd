"""OpenAI's embeddings and models shapes (``/v1/embeddings``, ``/v1/models``), as the openai
SDK sends and reads them (it asks for ``base64`` unless told ``float``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ranker.api.schemas import _Request

EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"
OPENAI_PATHS = (EMBEDDINGS_PATH, MODELS_PATH)
"""The routes in OpenAI's shape; their errors take OpenAI's error body too."""


class OpenAIEmbeddingRequest(_Request):
    """``POST /v1/embeddings``: text only; token-id arrays are refused with 422."""

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: each vector's little-endian float32 bytes."
    )
    dimensions: int | None = Field(
        default=None, ge=1, description="Only the model's own dimension is served."
    )
    user: str | None = None
    truncate: bool = Field(
        default=True,
        description="shoprank's: cut an over-long input to what the model reads (false: 413).",
    )


class OpenAIEmbedding(BaseModel):
    """One input's vector: floats, or a base64 string."""

    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class OpenAIUsage(BaseModel):
    """Tokens the model read."""

    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    """Vectors in input order; ``model`` is the serving bi-encoder's version."""

    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    """One served model, named by its version (``embedder/v2``) or its model id."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="When the version was registered (Unix seconds); 0: unknown.")
    owned_by: str = "shoprank"
    role: Literal["embedder", "reranker"]


class OpenAIModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class OpenAIErrorDetail(BaseModel):
    """OpenAI's error object; ``type`` and ``code`` are shoprank's ``error_type``."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorResponse(BaseModel):
    """Every error of the OpenAI routes, as the openai SDK reads it (the status and
    ``error_type`` come from the same table as every other route's)."""

    error: OpenAIErrorDetail
    request_id: str | None = Field(
        default=None, description="The request's id (also the x-request-id header)."
    )
