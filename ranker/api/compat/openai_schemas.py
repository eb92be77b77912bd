"""OpenAI's embeddings and models shapes (``/v1/embeddings``, ``/v1/models``), as the openai
SDK sends and reads them (it asks for ``base64`` unless told ``float``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ranker.api.schemas import _Request


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
