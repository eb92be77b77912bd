"""The bi-encoder: embeds product texts and queries into normalized float32 vectors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from indexer.caching import TextCache
from indexer.progress import progress_bar
from indexer.stores.base import FloatMatrix, ModelIdentity
from ranker.backends import Backend, ModelTask, TokenBatch, load_backend
from ranker.backends.base import FloatArray
from ranker.model_files import lineage, model_id, resolve_model_dir
from ranker.settings import BackendSettings
from ranker.stages import PreparedTokens, run_prepared
from ranker.tokenization import PairTokenizer

logger = logging.getLogger(__name__)


class Embedder:
    """Tokenizes, batches by length, runs the backend and L2-normalizes.

    Its stages, which :meth:`embed` chains and a scheduler runs apart (see
    :mod:`ranker.stages`): :meth:`prepare`, :meth:`infer` and :meth:`finish`.
    ``query_cache`` keeps the unit vectors of the last ``query_cache_size`` queries (LRU,
    read-only arrays); it belongs to this model, so a reloaded model starts with its own.
    """

    def __init__(
        self,
        *,
        tokenizer: PairTokenizer,
        backend: Backend,
        identity: ModelIdentity,
        batch_size: int = 64,
        query_cache_size: int = 0,
    ) -> None:
        if backend.task is not ModelTask.EMBED:
            raise ValueError(f"an Embedder needs an embedding backend, got {backend.task}")
        self.tokenizer = tokenizer
        self.backend = backend
        self.identity = identity
        self.batch_size = batch_size
        self.lineage = (identity.weights_sha256, *identity.lineage)
        """Its weights hash, then those of the models it was exported or quantized from."""
        self.query_cache: TextCache[FloatArray] = TextCache(query_cache_size)

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        backend: str = "auto",
        max_length: int = 128,
        batch_size: int = 64,
        backend_config: BackendSettings | None = None,
        query_cache_size: int = 0,
    ) -> Embedder:
        """Load a bi-encoder (``minilm``, a directory, or an ONNX export of one) on a backend."""
        model_dir = resolve_model_dir(model)
        loaded = load_backend(backend, model_dir, task=ModelTask.EMBED, config=backend_config)
        tokenizer = PairTokenizer.from_model_dir(model_dir, max_length=max_length)
        dimension = _probe_dimension(loaded)
        identity = model_identity(model_dir, dimension=dimension)
        return cls(
            tokenizer=tokenizer,
            backend=loaded,
            identity=identity,
            batch_size=batch_size,
            query_cache_size=query_cache_size,
        )

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return self.identity.dimension

    def prepare(self, texts: Sequence[str]) -> PreparedTokens:
        """The ``prepare`` stage: ``texts`` tokenized, truncated to ``max_length``."""
        return PreparedTokens.from_encodings(
            self.tokenizer.encode_texts(texts), pad_id=self.tokenizer.pad_id
        )

    def infer(
        self, inputs: Sequence[PreparedTokens], *, on_rows: Callable[[int], object] | None = None
    ) -> list[FloatArray]:
        """The ``infer`` stage: pooled vectors, not normalized, ``(rows, dim)`` per input."""
        return run_prepared(self.backend, inputs, batch_size=self.batch_size, on_rows=on_rows)

    def finish(self, vectors: FloatArray, *, normalize: bool = True) -> FloatMatrix:
        """The ``finish`` stage: one request's vectors as float32, unit length by default."""
        output = np.array(vectors, dtype=np.float32).reshape(-1, self.dimension)
        if normalize:
            output /= np.maximum(np.linalg.norm(output, axis=1, keepdims=True), 1e-12)
        return output

    def embed(
        self, texts: Sequence[str], *, progress: bool = False, normalize: bool = True
    ) -> FloatMatrix:
        """Embed ``texts``; returns ``(len(texts), dim)`` vectors, unit length by default."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        prepared = self.prepare(texts)
        with progress_bar(
            total=len(texts), desc="embedding", unit="text", disable=not progress
        ) as bar:
            (vectors,) = self.infer([prepared], on_rows=bar.update)
        return self.finish(vectors, normalize=normalize)

    def embed_query(self, query: str) -> FloatArray:
        """One query's unit vector, shape ``(dim,)`` (read-only: it may be the cached one)."""
        cached = self.query_cache.get(query)
        if cached is not None:
            return cached
        return self.keep_query_vector(query, self.embed([query])[0])

    def keep_query_vector(self, query: str, vector: FloatArray) -> FloatArray:
        """``vector`` (``query``'s unit vector) made read-only and kept in the query cache."""
        kept = np.array(vector, dtype=np.float32)
        kept.flags.writeable = False
        self.query_cache.put(query, kept)
        return kept


def _probe_dimension(backend: Backend) -> int:
    """The embedding size, read off one tiny forward pass."""
    ones = np.ones((1, 2), dtype=np.int64)
    probe = TokenBatch(input_ids=ones * 101, attention_mask=ones, token_type_ids=ones * 0)
    return int(backend.infer(probe).shape[1])


def model_identity(model_dir: Path, *, dimension: int) -> ModelIdentity:
    """Which bi-encoder a model directory holds: its id, weights hash and lineage."""
    digests = lineage(model_dir)
    return ModelIdentity(
        model_id=model_id(model_dir),
        weights_sha256=digests[0],
        dimension=dimension,
        lineage=digests[1:],
    )
