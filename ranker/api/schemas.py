"""shoprank's own HTTP request and response shapes.

Unknown fields are refused (``extra="forbid"``), so a typo never silently changes a
request's meaning, and so is text that no model or store can read: a lone surrogate
(``"\\ud800"`` in the JSON) anywhere in a request. Length limits that depend on settings
are checked in :mod:`ranker.api.validation`, before any model runs. The shapes of other
services' APIs (Cohere, OpenAI, text-embeddings-inference, Infinity) are in
:mod:`ranker.api.compat`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def _lone_surrogate_at(value: Any, where: str) -> str | None:
    """Where in ``value`` (JSON data) the first string with a lone surrogate is; else None."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate_at(key, where) or _lone_surrogate_at(
                item, f"{where}.{key}" if where else str(key)
            )
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_at(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        """Refuse a lone surrogate (``\\ud800`` without its pair) anywhere in the request."""
        where = _lone_surrogate_at(data, "")
        if where is not None:
            raise ValueError(
                f"{where} holds a lone surrogate (an unpaired \\ud800-\\udfff escape), "
                "which is not text; send valid UTF-8"
            )
        return data


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
    rerank_depth: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        default=None,
        description="Candidates reranked; default from settings. 'auto': the deepest rerank "
        "whose predicted cost (the reranker's cost model, measured at warm-up, plus the "
        "predicted queue wait) fits latency_budget_ms, up to api.max_auto_rerank_depth; 0 "
        "(no rerank, retrieval order) when not even one candidate fits. The response's "
        "rerank_depth and the x-rerank-depth header say which depth served.",
    )
    latency_budget_ms: float | None = Field(
        default=None,
        gt=0,
        le=60_000,
        description="Only with rerank_depth 'auto': the whole request's budget in "
        "milliseconds; default from settings (api.latency_budget_ms).",
    )
    truncate: bool = Field(default=True, description="Cut an over-long query instead of 413.")
    correct_spelling: bool = Field(
        default=True,
        description="Correct the query's words the catalog does not use to the nearest ones it "
        "does before searching (see corrected_query in the answer); false searches the query "
        "as typed ('search instead for').",
    )
    model_version: str | None = Field(
        default=None,
        pattern=r"^v\d+$",
        examples=["v2"],
        description="The registered reranker version to rerank with (see GET /rerankers); "
        "default: the serving one. Another version is verified against its manifest and "
        "loaded on first use, then kept (404 for an unknown version, 422 `integrity` when "
        "its files changed); ignored with rerank false. Its lookup (and first load) is the "
        "`model_version` stage of timings_ms.",
    )

    @model_validator(mode="after")
    def _budget_needs_auto(self) -> SearchRequest:
        if self.latency_budget_ms is not None and self.rerank_depth != "auto":
            raise ValueError("latency_budget_ms applies only with rerank_depth 'auto'")
        return self


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
    corrected_query: str | None = Field(
        default=None,
        description="What was searched instead of query, its misspelled words corrected "
        "('showing results for'); null when nothing was corrected.",
    )
    results: list[SearchHit]
    reranked: int = Field(description="How many candidates the cross-encoder scored.")
    rerank_depth: int | None = Field(
        default=None,
        description="The rerank depth this request used (also the x-rerank-depth header): the "
        "one asked for, the default, or the one 'auto' chose (0: none fitted the budget); "
        "null when rerank was off. reranked can be lower when fewer candidates were found.",
    )
    predicted_rerank_ms: float | None = Field(
        default=None,
        description="With rerank_depth 'auto': the cost model's prediction of the chosen "
        "depth's inference; null otherwise, or when no cost model was measured.",
    )
    timings_ms: dict[str, float]
    index: Literal["embedded", "opensearch"] = Field(
        default="embedded",
        description="The index that answered: the configured one, or the embedded fallback "
        "while OpenSearch is unreachable.",
    )
    model_version: str | None = Field(
        default=None,
        description="The reranker version that scored the results (also the x-model-version "
        "header), e.g. reranker/v3; null when nothing was reranked.",
    )
    embedder_version: str | None = Field(
        default=None, description="The bi-encoder version whose vectors were searched."
    )


class IndexHealth(BaseModel):
    """Which index answers searches, and whether the configured one is reachable."""

    backend: Literal["embedded", "opensearch"] = Field(description="The configured index.")
    serving: Literal["embedded", "opensearch"] | None = Field(
        description="The index that answers searches now; null: none does."
    )
    reachable: bool | None = Field(description="Whether the OpenSearch cluster answers.")
    fallback: bool = Field(description="Whether the embedded fallback index is loaded.")
    detail: str = ""


class HealthResponse(BaseModel):
    """``GET /healthz``.

    ``fallback``: everything is loaded but OpenSearch is unreachable, and searches are
    answered from the embedded fallback index (HTTP 200, so a load balancer keeps the
    instance). ``degraded`` with HTTP 200: everything serves, but not the registry's
    production version of a model (it failed to verify or load, or a new bi-encoder needs a
    reindex): ``detail`` says why and ``versions`` what serves instead. Any other status
    answers 503.
    """

    status: Literal["ok", "fallback", "degraded", "unavailable"]
    products: int | None
    embedder: str | None
    reranker: str | None
    backend: dict[str, str]
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="The serving version of each model: its registry reference "
        "(reranker/v3), else its model id.",
    )
    index: IndexHealth | None = None
    rerank_cost: dict[str, float] | None = Field(
        default=None,
        description="The serving reranker's cost model, measured at warm-up: predicted "
        "milliseconds of one call are fixed_ms + per_pair_ms * pairs + per_token_ms * "
        "pairs * tokens per pair (samples: the timed calls it was fitted on); null when not "
        "measured.",
    )
    detail: str = ""


class ErrorResponse(BaseModel):
    """Every error body: a message, a closed ``error_type`` and the request's id (also the
    ``x-request-id`` header). A refused promotion adds ``reasons`` and ``gate``."""

    error: str
    error_type: str
    request_id: str | None = Field(
        default=None, description="The request's id, as the server log records it."
    )


# ----------------------------------------------------------------------------- workbench

NDCG_K = 10
"""The cut-off of the NDCG ``POST /judgments`` reports (the project's headline NDCG@10)."""


class JudgmentsRequest(_Request):
    """``POST /judgments``: a query, and rankings (product ids, best first) to score."""

    query: str = Field(min_length=1, max_length=512, examples=["kindle fire"])
    rankings: dict[str, list[str]] = Field(
        default_factory=dict,
        max_length=8,
        examples=[{"hybrid": ["B01J6RPGKG", "B013TMNPBQ"]}],
        description="Named rankings, e.g. one per workbench column; each gets its NDCG@10.",
    )


class JudgmentsResponse(BaseModel):
    """The query's judged products and each ranking's NDCG@10; ``judged`` false (and
    ``labels`` and ``ndcg`` empty) when the server's judgments do not hold the query."""

    query: str
    judged: bool
    query_id: str | None = None
    labels: dict[str, str] = Field(
        default_factory=dict, description="product id -> label as the judgments file writes it"
    )
    gains: dict[str, float] = Field(default_factory=dict, description="product id -> gain")
    ndcg: dict[str, float] = Field(
        default_factory=dict, description=f"ranking name -> NDCG@{NDCG_K} against the gains"
    )
    source: str | None = Field(
        default=None, description="The judgments file's name; null: the server has none."
    )


class RerankerVersion(BaseModel):
    """One registered reranker version, as far as a page that compares rankings needs."""

    version: str
    ref: str
    state: str
    created_at: str | None = None
    ndcg_at_10: float | None = Field(
        default=None, description="The NDCG@10 its registration recorded, if any."
    )


class RerankersResponse(BaseModel):
    """``GET /rerankers``: the registry's reranker versions, production and what serves."""

    production: str | None
    serving: str | None = Field(description="What this API process serves now.")
    versions: list[RerankerVersion]


# ----------------------------------------------------------------------------- /admin

ModelRole = Literal["embedder", "reranker"]


class JobSubmitRequest(_Request):
    """``POST /admin/jobs``: a job kind and its parameters (ids, paths, small overrides).

    The workers check both (``workers.jobspec``); an unknown kind or parameter is 422
    ``bad_request``.
    """

    kind: str = Field(
        min_length=1,
        max_length=64,
        examples=["retrain"],
        description="index, retrain, compress, evaluate, promote, finetune_reranker, "
        "finetune_embedder, ...",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, examples=[{"judgments": "/data/judgments.csv"}]
    )


class JobSubmitted(BaseModel):
    """The submitted job's id and where to follow it."""

    id: str
    kind: str
    status_url: str


class JobStatus(BaseModel):
    """``GET /admin/jobs/{id}``: a job's state, progress and result (or error)."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str | None = None
    state: str
    progress: Any = None
    result: Any = None
    error: str | None = None


class PromoteRequest(_Request):
    """``POST /admin/promote``: judge a candidate by the gate and promote it when it passes."""

    role: ModelRole
    version: str = Field(pattern=r"^v\d+$", examples=["v3"])
    force: bool = Field(default=False, description="Promote even when the gate refuses.")


class PromoteResponse(BaseModel):
    """The production version now, and the gate's decision with its reasons."""

    role: ModelRole
    production: str | None
    forced: bool
    gate: dict[str, Any]


class RollbackRequest(_Request):
    """``POST /admin/rollback``: production back to ``to``, or to what it replaced last."""

    role: ModelRole
    to: str | None = Field(default=None, pattern=r"^v\d+$")
    reason: str = Field(default="", max_length=500)


class RollbackResponse(BaseModel):
    """The production version now and the one it replaced."""

    role: ModelRole
    production: str
    previous: str | None


class ModelVersionInfo(BaseModel):
    """One registered version, as its manifest records it."""

    version: str
    ref: str
    state: str
    created_at: str | None = None
    created_by: dict[str, Any] = Field(default_factory=dict)
    key: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    gate: dict[str, Any] | None = None
    lineage: dict[str, Any] = Field(default_factory=dict)


class RoleModels(BaseModel):
    """A role's versions, which one is production and which one this API serves."""

    production: str | None
    serving: str | None = Field(description="What this API process serves now.")
    problem: str | None = Field(
        default=None, description="Why production does not serve here, when it does not."
    )
    versions: list[ModelVersionInfo]


class ModelsResponse(BaseModel):
    """``GET /admin/models``."""

    roles: dict[str, RoleModels]
