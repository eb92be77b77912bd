"""The cross-encoder reranker: scores (query, product text) pairs."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.stores.base import FloatMatrix
from ranker.backends import Backend, ModelTask, load_backend
from ranker.backends.base import FloatArray
from ranker.caching import TextCache
from ranker.catalog_vectors import CatalogVectors
from ranker.embedder import Embedder
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.model_files import model_id, read_manifest, resolve_model_dir, weights_sha256
from ranker.settings import BackendSettings
from ranker.stages import PreparedTokens, run_prepared
from ranker.tokenization import PairTokenizer

logger = logging.getLogger(__name__)


class RerankerError(ValueError):
    """A reranker that cannot be served as configured."""


@dataclass(frozen=True)
class DensePrior:
    """``w * cos(E(q), E(d)) + v . lexical(q, d) + b`` added to the cross-encoder's logit
    (see training); ``v`` (``lexical_weights``, one per
    :data:`~ranker.lexical_features.LEXICAL_FEATURES`) is empty for a model trained
    without lexical features.

    Product vectors are kept in a bounded LRU cache (``cache``) between requests; a text
    the cache misses is looked up in the index's stored vectors (``catalog``, when serving
    attached one) before the bi-encoder embeds it.
    """

    weight: float
    bias: float
    embedder: Embedder
    lexical_weights: tuple[float, ...] = ()
    cache: TextCache[FloatArray] = field(default_factory=lambda: TextCache(0))
    catalog: CatalogVectors | None = None

    @classmethod
    def from_parameters(
        cls, parameters: Mapping[str, Any], embedder: Embedder, *, cache_size: int = 0
    ) -> DensePrior:
        """The prior from its learned parameters, as training returns them and the manifest
        records them (``weight``, ``bias``, optional ``lexical_weights`` by feature name)."""
        lexical = parameters.get("lexical_weights") or {}
        if lexical and set(lexical) != set(LEXICAL_FEATURES):
            raise RerankerError(
                f"the prior weighs the lexical features {sorted(lexical)}, "
                f"this shoprank computes {list(LEXICAL_FEATURES)}; retrain the reranker"
            )
        return cls(
            weight=float(parameters["weight"]),
            bias=float(parameters["bias"]),
            embedder=embedder,
            lexical_weights=tuple(float(lexical[name]) for name in LEXICAL_FEATURES if lexical),
            cache=TextCache(cache_size),
        )

    def scores(
        self,
        query: str,
        documents: Sequence[str],
        document_vectors: FloatMatrix | None = None,
        *,
        query_vector: FloatArray | None = None,
    ) -> FloatArray:
        """The prior for each document: the query's vector as given (retrieval embedded it
        with this bi-encoder), else embedded now; the documents' vectors as given (e.g.
        stored in the index by this bi-encoder), else from the cache, the catalog's stored
        vectors or the bi-encoder, in that order."""
        query_vector = self.embedder.embed([query])[0] if query_vector is None else query_vector
        vectors = (
            document_vectors
            if document_vectors is not None
            else np.stack(self.cache.get_many(documents, self._document_vectors))
        )
        prior = self.weight * (vectors @ query_vector) + self.bias
        if self.lexical_weights:
            lexical = lexical_features(query, documents) @ np.array(self.lexical_weights)
            combined: FloatArray = (prior + lexical).astype(np.float32)
            return combined
        return prior.astype(np.float32)

    def reads_vectors_of(self, embedder: Embedder) -> bool:
        """Whether ``embedder``'s vectors are this prior's bi-encoder's (the same model)."""
        return embedder is self.embedder or embedder.identity == self.embedder.identity

    def _document_vectors(self, texts: list[str]) -> list[FloatArray]:
        """Stored vectors where the catalog has the text; the bi-encoder embeds the rest."""
        found = self.catalog.vectors(texts) if self.catalog is not None else [None] * len(texts)
        missing = [i for i, vector in enumerate(found) if vector is None]
        if missing:
            embedded = self.embedder.embed([texts[i] for i in missing])
            for i, vector in zip(missing, embedded, strict=True):
                found[i] = vector
        return [vector for vector in found if vector is not None]


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
        return cls(
            tokenizer=tokenizer,
            backend=load_backend(backend, model_dir, task=ModelTask.SCORE, config=backend_config),
            model_id=model_id(model_dir),
            weights_sha256=weights_sha256(model_dir),
            batch_size=batch_size,
            max_query_tokens=max_query_tokens,
            prior=dense_prior(model_dir, embedder, cache_size=prior_cache_size),
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
        the query cut to ``max_query_tokens`` and each document to what is left."""
        if document_vectors is not None and len(document_vectors) != len(documents):
            raise ValueError(
                f"{len(document_vectors)} document vectors for {len(documents)} documents"
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
        scores = np.asarray(logits, dtype=np.float32).reshape(len(prepared.documents))
        if self.prior is None or not prepared.documents:
            return scores, np.zeros_like(scores)
        prior = self.prior.scores(
            prepared.query,
            prepared.documents,
            prepared.document_vectors,
            query_vector=None if prepared.query_cut else query_vector,
        )
        return scores, prior


def dense_prior(
    model_dir: Path, embedder: Embedder | None, *, cache_size: int = 0
) -> DensePrior | None:
    """The prior a model's manifest declares, checked against the serving bi-encoder."""
    declared = (read_manifest(model_dir) or {}).get("prior")
    if not declared:
        return None
    trained_with = declared.get("embedder", {})
    if embedder is None:
        raise RerankerError(
            f"{model_dir} adds a bi-encoder prior ({trained_with.get('model_id')}); "
            "load it with that embedder"
        )
    if trained_with.get("weights_sha256") not in embedder.lineage:
        raise RerankerError(
            f"{model_dir} was trained with the bi-encoder {trained_with.get('model_id')} "
            f"(weights sha256 {str(trained_with.get('weights_sha256'))[:12]}), but the serving "
            f"embedder is {embedder.identity.model_id} "
            f"({embedder.identity.weights_sha256[:12]}); retrain the reranker or serve that one"
        )
    if trained_with.get("weights_sha256") != embedder.identity.weights_sha256:
        logger.info(
            "%s: the prior's bi-encoder runs as its export %s",
            model_dir,
            embedder.identity.model_id,
        )
    try:
        return DensePrior.from_parameters(declared, embedder, cache_size=cache_size)
    except RerankerError as exc:
        raise RerankerError(f"{model_dir}: {exc}") from None
