"""The reranker: scores (query, product text) pairs with a cross-encoder and its dense prior.

A prior-only reranker (a "0-layer" student, its manifest says ``cross_encoder: false``)
serves the prior alone: it runs no transformer, so it has no tokenize or inference stage.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.stores.base import FloatMatrix
from ranker.backends import Backend, ModelTask, load_backend
from ranker.backends.base import FloatArray
from ranker.backends.no_cross_encoder import NoCrossEncoder
from ranker.catalog_vectors import CatalogVectors
from ranker.embedder import Embedder
from ranker.model_files import model_id, resolve_model_dir, weights_sha256
from ranker.prior import (
    DensePrior,
    RerankerError,
    dense_prior,
    has_cross_encoder,
    prior_only_sha256,
)
from ranker.settings import BackendSettings
from ranker.stages import PreparedTokens, run_prepared
from ranker.tokenization import PairTokenizer

__all__ = ["DensePrior", "PreparedPairs", "Reranker", "RerankerError", "dense_prior"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedPairs:
    """One request's (query, document) pairs after :meth:`Reranker.prepare`."""

    query: str
    """The query as the cross-encoder reads it (cut to ``max_query_tokens``)."""
    query_cut: bool
    """Whether that cut shortened the query the request sent."""
    documents: tuple[str, ...]
    tokens: PreparedTokens
    document_vectors: FloatMatrix | None = None


class Reranker:
    """Scores pairs in length-sorted, dynamically padded micro-batches.

    Its stages, which :meth:`score_parts` chains and a scheduler runs apart (see
    :mod:`ranker.stages`): :meth:`prepare`, :meth:`infer` and :meth:`finish`.

    The query is cut to ``max_query_tokens`` word pieces; the product text fills the rest of
    ``max_length``. A model trained with a dense prior adds the bi-encoder's cosine (and,
    if trained with them, weighted lexical features of the full texts), so it needs the same
    bi-encoder it was trained with.
    """

    def __init__(
        self,
        *,
        tokenizer: PairTokenizer,
        backend: Backend,
        model_id: str,
        weights_sha256: str,
        batch_size: int = 32,
        max_query_tokens: int = 48,
        prior: DensePrior | None = None,
    ) -> None:
        if backend.task is not ModelTask.SCORE:
            raise ValueError(f"a Reranker needs a scoring backend, got {backend.task}")
        if max_query_tokens >= tokenizer.max_length - 3:
            raise ValueError(
                f"max_query_tokens {max_query_tokens} leaves no room for the document in "
                f"max_length {tokenizer.max_length}"
            )
        self.tokenizer = tokenizer
        self.backend = backend
        self.model_id = model_id
        self.weights_sha256 = weights_sha256
        self.batch_size = batch_size
        self.max_query_tokens = max_query_tokens
        self.prior = prior
        if not self.has_cross_encoder and prior is None:
            raise RerankerError(f"{model_id} has neither a cross-encoder nor a prior to serve")

    @property
    def has_cross_encoder(self) -> bool:
        """False for a prior-only reranker: no transformer, no tokenize or infer stage."""
        return not isinstance(self.backend, NoCrossEncoder)

    def prior_alone(self) -> Reranker:
        """The same reranker without its cross-encoder: it scores by the dense prior alone,
        which is what the cross-encoder must beat to earn its cost.

        Raises:
            RerankerError: the model has no prior.
        """
        if self.prior is None:
            raise RerankerError(f"{self.model_id} has no prior to score by alone")
        return Reranker(
            tokenizer=self.tokenizer,
            backend=NoCrossEncoder(),
            model_id=f"{self.model_id} (prior alone)",
            weights_sha256=self.weights_sha256,
            batch_size=self.batch_size,
            max_query_tokens=self.max_query_tokens,
            prior=self.prior,
        )

    def read_prior_vectors_from(self, catalog: CatalogVectors | None) -> bool:
        """Let the dense prior read indexed products' vectors by their text instead of
        embedding them, as serving does; whether it can (a prior, and a catalog)."""
        if self.prior is None or catalog is None:
            return False
        self.prior = dataclasses.replace(self.prior, catalog=catalog)
        return True

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        backend: str = "auto",
        max_length: int = 96,
        batch_size: int = 32,
        max_query_tokens: int = 48,
        embedder: Embedder | None = None,
        token_cache_size: int = 0,
        prior_cache_size: int = 0,
        backend_config: BackendSettings | None = None,
    ) -> Reranker:
        """Load a trained cross-encoder directory (or an ONNX export of one) on a backend.

        ``embedder`` is required for a model trained with a dense prior, and must be the
        bi-encoder named in its manifest (or an export of it). The caches keep product
        texts' token ids and prior vectors between requests.
        """
        model_dir = resolve_model_dir(model)
        tokenizer = PairTokenizer.from_model_dir(
            model_dir, max_length=max_length, cache_size=token_cache_size
        )
        cross_encoder = has_cross_encoder(model_dir)
        return cls(
            tokenizer=tokenizer,
            backend=(
                load_backend(backend, model_dir, task=ModelTask.SCORE, config=backend_config)
                if cross_encoder
                else NoCrossEncoder()
            ),
            model_id=model_id(model_dir),
            weights_sha256=(
                weights_sha256(model_dir) if cross_encoder else prior_only_sha256(model_dir)
            ),
            batch_size=batch_size,
            max_query_tokens=max_query_tokens,
            prior=dense_prior(
                model_dir, embedder, cache_size=prior_cache_size, backend_config=backend_config
            ),
        )

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        document_vectors: FloatMatrix | None = None,
        query_vector: FloatArray | None = None,
    ) -> FloatArray:
        """Relevance logits, one per document, in the documents' order.

        ``document_vectors``: the documents' vectors from the prior's bi-encoder, when the
        caller has them (the index stores them), so the prior does not embed them again;
        ``query_vector``: the query's, likewise (retrieval embedded it).
        """
        cross_encoder, prior = self.score_parts(
            query, documents, document_vectors=document_vectors, query_vector=query_vector
        )
        return cross_encoder + prior

    def score_parts(
        self,
        query: str,
        documents: Sequence[str],
        *,
        document_vectors: FloatMatrix | None = None,
        query_vector: FloatArray | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """The cross-encoder's logits and the dense prior's terms (zeros without one)."""
        prepared = self.prepare(query, documents, document_vectors=document_vectors)
        (logits,) = self.infer([prepared.tokens])
        return self.finish(prepared, logits, query_vector=query_vector)

    def prepare(
        self,
        query: str,
        documents: Sequence[str],
        *,
        document_vectors: FloatMatrix | None = None,
    ) -> PreparedPairs:
        """The ``prepare`` stage: ``[CLS] query [SEP] document [SEP]`` token ids per document,
        the query cut to ``max_query_tokens`` and each document to what is left (no tokens,
        and the query whole, for a prior-only reranker)."""
        if document_vectors is not None and len(document_vectors) != len(documents):
            raise ValueError(
                f"{len(document_vectors)} document vectors for {len(documents)} documents"
            )
        if not self.has_cross_encoder:
            return PreparedPairs(
                query=query,
                query_cut=False,
                documents=tuple(documents),
                tokens=PreparedTokens((), (), pad_id=self.tokenizer.pad_id),
                document_vectors=document_vectors,
            )
        cut, pieces = self.tokenizer.encode_query(query, self.max_query_tokens)
        encodings = (
            self.tokenizer.pair_encodings(pieces, self.tokenizer.encode_documents(documents))
            if documents
            else []
        )
        return PreparedPairs(
            query=cut,
            query_cut=cut != query,
            documents=tuple(documents),
            tokens=PreparedTokens.from_encodings(encodings, pad_id=self.tokenizer.pad_id),
            document_vectors=document_vectors,
        )

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[FloatArray]:
        """The ``infer`` stage: the cross-encoder's logits, one array per input."""
        return run_prepared(self.backend, inputs, batch_size=self.batch_size)

    def finish(
        self,
        prepared: PreparedPairs,
        logits: FloatArray,
        *,
        query_vector: FloatArray | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """The ``finish`` stage: the logits and the dense prior's terms (zeros without one).

        ``query_vector``: the prior's bi-encoder's vector of the query as the request sent
        it; used unless :meth:`prepare` cut the query (then the cut query is embedded).
        """
        scores = (
            np.asarray(logits, dtype=np.float32).reshape(len(prepared.documents))
            if self.has_cross_encoder
            else np.zeros(len(prepared.documents), dtype=np.float32)
        )
        if self.prior is None or not prepared.documents:
            return scores, np.zeros_like(scores)
        prior = self.prior.scores(
            prepared.query,
            prepared.documents,
            prepared.document_vectors,
            query_vector=None if prepared.query_cut else query_vector,
        )
        return scores, prior
