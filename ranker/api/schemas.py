"""Every HTTP request and response shape, in one place.

Unknown fields are refused (``extra="forbid"``), so a typo never silently changes a
request's meaning. Length limits that depend on settings are checked in
:mod:`ranker.api.validation`, before any model runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchFilters(_Request):
    """Applied inside retrieval: a filtered search still returns k hits when k exist."""

    brands: list[str] = Field(default_factory=list, examples=[["Amazon Basics"]])
    categories: list[str] = Field(
        default_factory=list, description="Matches any level of the category path."
    )
    price_min: float | None = Field(default=None, ge=0)
    price_max: float | None = Field(default=None, ge=0)


class SearchRequest(_Request):
    """``POST /search``."""

    query: str = Field(examples=["wireless mouse for laptop"])
    k: int = Field(default=10, ge=1, description="Results to return.")
    filters: SearchFilters | None = None
    mode: Literal["dense", "lexical", "hybrid"] | None = Field(
        default=None, description="Retrieval mode; default from settings (hybrid)."
    )
    rerank: bool = True
    rerank_depth: int | None = Field(default=None, ge=1, description="Candidates reranked.")
    truncate: bool = Field(default=True, description="Cut an over-long query instead of 413.")


class SearchHit(BaseModel):
    """One product in a search response."""

    id: str
    title: str
    brand: str
    color: str
    category: list[str]
    price: float | None
    score: float
    retrieval_score: float
    rerank_score: float | None


class SearchResponse(BaseModel):
    """Results, best first, and the milliseconds each stage took."""

    query: str
    results: list[SearchHit]
    reranked: int = Field(description="How many candidates the cross-encoder scored.")
    timings_ms: dict[str, float]


class RerankDocument(_Request):
    """A document given as an object."""

    text: str


class CohereRerankRequest(_Request):
    """``POST /v1/rerank``, the Cohere shape (also what OpenSearch ML Commons sends)."""

    query: str
    documents: list[str | RerankDocument]
    top_n: int | None = Field(default=None, ge=1)
    model: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    return_documents: bool = False
    truncate: bool = Field(default=True, description="Cut over-long inputs instead of 413.")


class CohereRerankResult(BaseModel):
    """One scored document: its index in the request and a score in [0, 1]."""

    index: int
    relevance_score: float
    document: RerankDocument | None = None


class CohereRerankResponse(BaseModel):
    """Results ordered by relevance, best first."""

    id: str
    results: list[CohereRerankResult]
    meta: dict[str, object] = Field(default_factory=dict)


class TeiRerankRequest(_Request):
    """``POST /rerank``, the text-embeddings-inference shape."""

    query: str
    texts: list[str]
    truncate: bool = True
    raw_scores: bool = Field(default=False, description="Logits instead of sigmoid scores.")
    return_text: bool = False


class TeiRank(BaseModel):
    """One scored text."""

    index: int
    score: float
    text: str | None = None


class TeiEmbedRequest(_Request):
    """``POST /embed``, the text-embeddings-inference shape."""

    inputs: str | list[str]
    normalize: bool = True
    truncate: bool = True


class HealthResponse(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok", "degraded", "unavailable"]
    products: int | None
    embedder: str | None
    reranker: str | None
    backend: dict[str, str]
    detail: str = ""


class ErrorResponse(BaseModel):
    """Every error body: a message and a closed ``error_type``."""

    error: str
    error_type: str
