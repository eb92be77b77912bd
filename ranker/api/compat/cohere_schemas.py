"""Cohere's rerank and embed shapes (``/v1/rerank``, ``/v2/rerank``, ``/v1/embed``,
``/v2/embed``), as the cohere SDK's v1 and v2 clients, langchain-cohere and litellm send and
read them.

Keys a client does not ask for are left out of answers rather than sent as null (litellm
refuses ``"document": null``), so the routes answer with ``response_model_exclude_none``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ranker.api.schemas import _Request

CohereDocument = str | dict[str, Any]
"""A document: its text, or an object whose ``text`` (or ``rank_fields``) is ranked."""


class CohereRerankRequest(_Request):
    """``POST /v1/rerank`` and ``POST /v2/rerank``: the fields of both versions.

    Also what an OpenSearch ML Commons connector sends with the pre-process function
    ``connector.pre_process.default.rerank`` (in 2.19 the same function as
    ``connector.pre_process.cohere.rerank``): it makes the parameters ``query`` (the text),
    ``documents`` (a JSON array of strings) and ``top_n`` (the number of documents), which the
    connector's request body ``{"query": "${parameters.query}", "documents":
    ${parameters.documents}, "top_n": ${parameters.top_n}}`` turns into this shape.
    """

    query: str
    documents: list[CohereDocument]
    model: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    top_n: int | None = Field(default=None, ge=1)
    rank_fields: list[str] | None = Field(
        default=None,
        description="The object fields to rank on, in order, as 'field: value' lines (what "
        "langchain-cohere sends as YAML); default: the object's 'text'.",
    )
    return_documents: bool = False
    max_chunks_per_doc: int | None = Field(
        default=None, ge=1, description="v1; accepted and ignored: long documents are cut."
    )
    max_tokens_per_doc: int | None = Field(
        default=None, ge=1, description="v2; each document is cut to this many word pieces."
    )
    priority: int | None = Field(default=None, description="v2; accepted and ignored.")
    truncate: bool = Field(default=True, description="Cut over-long inputs instead of 413.")


class CohereRerankResult(BaseModel):
    """One scored document: its index in the request and a score in [0, 1]."""

    index: int
    relevance_score: float
    document: dict[str, Any] | None = Field(
        default=None, description="With return_documents only: the document, with its 'text'."
    )


class CohereApiVersion(BaseModel):
    """Which Cohere API version answered: ``1`` or ``2``."""

    version: str


class CohereBilledUnits(BaseModel):
    """What Cohere would bill: search units (100 documents each) or input tokens."""

    search_units: int | None = None
    input_tokens: int | None = None


class CohereMeta(BaseModel):
    """Cohere's ``meta``, plus which model and version scored (clients keep extra keys)."""

    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    model: str | None = Field(default=None, description="The serving model's id.")
    model_version: str | None = Field(
        default=None, description="The version that scored (also the x-model-version header)."
    )
    timings_ms: dict[str, float] | None = None


class CohereRerankResponse(BaseModel):
    """Results ordered by relevance, best first."""

    id: str
    results: list[CohereRerankResult]
    meta: CohereMeta


RerankFormat = Literal["cohere", "array"]
"""``POST /v1/rerank?format=``: ``cohere`` (default) or ``array``."""


class RerankScore(BaseModel):
    """One element of ``POST /v1/rerank?format=array``: a bare JSON array of these.

    What ML Commons' ``connector.post_process.default.rerank`` reads (2.19: the Cohere
    rerank post-process with the response filter ``$[*]``, where ``...cohere.rerank`` uses
    ``$.results``): a JSON array of objects whose ``index`` is an integer and whose
    ``relevance_score`` is a float (it is read as a Java Double, so always written with a
    decimal point). It places each score at its ``index``, so the array must cover every
    document (the pre-process function asks for ``top_n`` = all of them).
    """

    index: int
    relevance_score: float


CohereInputType = Literal[
    "search_document", "search_query", "classification", "clustering", "image"
]
CohereTruncate = Literal["NONE", "START", "END"]


class CohereEmbedRequest(_Request):
    """``POST /v1/embed`` and ``POST /v2/embed``: texts only, float embeddings only.

    ``input_type`` is accepted and changes nothing: one bi-encoder embeds queries and
    products alike. ``truncate``: ``END`` (default) cuts the end of an over-long text,
    ``START`` its start, ``NONE`` refuses it (413).
    """

    texts: list[str] | None = None
    images: list[str] | None = Field(default=None, description="Refused: text only.")
    inputs: list[dict[str, Any]] | None = Field(
        default=None, description="v2 content objects; refused: send texts."
    )
    model: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    input_type: CohereInputType | None = None
    embedding_types: list[str] | None = Field(
        default=None, description="Only 'float' is served; v1 answers by type when given."
    )
    truncate: CohereTruncate | None = None
    max_tokens: int | None = Field(default=None, ge=1, description="v2; word pieces per text.")
    output_dimension: int | None = Field(
        default=None, ge=1, description="v2; only the model's own dimension is served."
    )
    priority: int | None = Field(default=None, description="v2; accepted and ignored.")


class CohereEmbeddingsByType(BaseModel):
    """The embeddings of each type asked for; only ``float`` is served."""

    model_config = ConfigDict(populate_by_name=True)

    float_: list[list[float]] = Field(alias="float")


class CohereEmbedFloatsResponse(BaseModel):
    """v1 without ``embedding_types``: one float vector per text."""

    response_type: Literal["embeddings_floats"] = "embeddings_floats"
    id: str
    embeddings: list[list[float]]
    texts: list[str]
    meta: CohereMeta


class CohereEmbedByTypeResponse(BaseModel):
    """v2, and v1 with ``embedding_types``: ``embeddings: {float: [...]}``."""

    response_type: Literal["embeddings_by_type"] = "embeddings_by_type"
    id: str
    embeddings: CohereEmbeddingsByType
    texts: list[str]
    meta: CohereMeta
