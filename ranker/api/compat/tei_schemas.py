"""text-embeddings-inference's shapes (``/embed``, ``/rerank``, ``/info``, ``/tokenize``) and
Infinity's rerank shape, which shares ``POST /rerank``.

TEI's defaults: ``truncate`` null means false (TEI's ``--auto-truncate`` is off by default), so
an input longer than the model reads is refused with 413, as TEI does; ``normalize`` true;
``truncation_direction`` Right. TEI's ``Left``/``Right`` are accepted in either case
(huggingface_hub sends ``left``/``right``). TEI leaves ``text`` out of a rank unless asked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ranker.api.schemas import _Request

TruncationDirection = Literal["Left", "Right", "left", "right"]


class TeiEmbedRequest(_Request):
    """``POST /embed`` (and ``POST /``): one vector per input, unit length by default."""

    inputs: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string or a list of strings; token ids are refused (422)."
    )
    truncate: bool | None = Field(default=None, description="null: false, as in TEI.")
    truncation_direction: TruncationDirection = "Right"
    prompt_name: str | None = Field(
        default=None, description="Refused unless null: the served model has no prompts."
    )
    normalize: bool = True
    dimensions: int | None = Field(
        default=None, ge=1, description="Only the model's own dimension is served."
    )


class TeiRerankRequest(_Request):
    """``POST /rerank`` with ``texts``: the text-embeddings-inference shape."""

    query: str
    texts: list[str]
    truncate: bool | None = Field(default=None, description="null: false, as in TEI.")
    truncation_direction: TruncationDirection = "Right"
    raw_scores: bool = Field(default=False, description="Logits instead of sigmoid scores.")
    return_text: bool = False


class TeiRank(BaseModel):
    """One scored text; ``text`` only with ``return_text``."""

    index: int
    score: float
    text: str | None = None


class InfinityRerankRequest(_Request):
    """``POST /rerank`` with ``documents``: Infinity's (Cohere-like) shape; over-long
    documents are cut, as Infinity does."""

    query: str
    documents: list[str]
    return_documents: bool = False
    raw_scores: bool = Field(default=False, description="Logits instead of sigmoid scores.")
    model: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    top_n: int | None = Field(default=None, gt=0)


class InfinityRerankResult(BaseModel):
    """One scored document; ``document`` only with ``return_documents``."""

    relevance_score: float
    index: int
    document: str | None = None


class InfinityUsage(BaseModel):
    """Tokens the model read (query and document pairs)."""

    prompt_tokens: int
    total_tokens: int


class InfinityRerankResponse(BaseModel):
    """Infinity's rerank answer; ``model`` is the version that scored."""

    object: Literal["rerank"] = "rerank"
    results: list[InfinityRerankResult]
    model: str
    usage: InfinityUsage
    id: str
    created: int


class TeiTokenizeRequest(_Request):
    """``POST /tokenize``: the embedder's tokens of each input."""

    inputs: str | list[str]
    add_special_tokens: bool = True
    prompt_name: str | None = Field(
        default=None, description="Refused unless null: the served model has no prompts."
    )


class TeiToken(BaseModel):
    """One token; a special token has no ``start``/``stop`` (character offsets)."""

    id: int
    text: str
    special: bool
    start: int | None
    stop: int | None


class TeiInfo(BaseModel):
    """``GET /info``: TEI's fields for the embedder (the reranker when no embedder serves),
    plus ``model_version`` and the other model's summary."""

    model_id: str
    model_sha: str | None = None
    model_dtype: str
    model_type: dict[str, dict[str, Any]] = Field(
        description="{'embedding': {'pooling': 'mean'}} or {'reranker': {id2label, label2id}}"
    )
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None = None
    max_client_batch_size: int
    auto_truncate: bool = False
    tokenization_workers: int = 1
    version: str
    sha: str | None = None
    docker_label: str | None = None
    model_version: str | None = Field(default=None, description="shoprank's: the version.")
    reranker: dict[str, Any] | None = Field(
        default=None, description="shoprank's: the reranker's id, version and limits."
    )
