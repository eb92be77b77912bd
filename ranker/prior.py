"""The reranker's dense prior: ``w * cos(E(q), E(d)) + v . lexical(q, d) + b``, and
``+ t * cos(E(q), E(title(d)))`` for a prior trained with the title cosine.

A reranker trained with a prior adds it to its cross-encoder's logit; a prior-only reranker
(a "0-layer" student, see ``ranker.compress.prior_student``) serves it alone. ``E`` is the
serving bi-encoder. A product text the index holds has its vector there; a text it does not
hold is embedded by the prior's *miss embedder* when the model ships one (a shallow student
of the bi-encoder, distilled to its vectors: ``ranker.compress.miss_embedder``), else by the
bi-encoder itself. A title (the text's first line) is embedded the same way as a text the
index does not hold. The query's vector always comes from the serving bi-encoder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.caching import TextCache
from indexer.stores.base import FloatMatrix
from ranker.backends.base import FloatArray
from ranker.catalog_vectors import CatalogVectors
from ranker.embedder import Embedder
from ranker.lexical_features import (
    LEXICAL_FEATURES,
    DocumentWords,
    lexical_features,
    title_line,
)
from ranker.model_files import read_manifest, weights_sha256
from ranker.settings import BackendSettings

logger = logging.getLogger(__name__)

MISS_EMBEDDER_DIR = "miss-embedder"
"""Where a reranker directory keeps its prior's miss embedder (a model directory)."""


class RerankerError(ValueError):
    """A reranker that cannot be served as configured."""


@dataclass(frozen=True)
class DensePrior:
    """``w * cos(E(q), E(d)) + v . lexical(q, d) + b`` added to the cross-encoder's logit
    (see training); ``v`` (``lexical_weights``, one per
    :data:`~ranker.lexical_features.LEXICAL_FEATURES`) is empty for a model trained
    without lexical features.

    Product vectors are kept in a bounded LRU cache (``cache``) between requests, and so
    are the products' words for the lexical features (``words_cache``) and, for a prior
    with a ``title_weight``, their titles' vectors (``title_cache``); a text
    the cache misses is looked up in the index's stored vectors (``catalog``, when serving
    attached one), and a text the index does not hold either is embedded by
    ``miss_embedder`` when there is one, else by the bi-encoder (``embedder``). Titles are
    embedded the same way; a one-line text is its own title.
    """

    weight: float
    bias: float
    embedder: Embedder
    lexical_weights: tuple[float, ...] = ()
    cache: TextCache[FloatArray] = field(default_factory=lambda: TextCache(0))
    words_cache: TextCache[DocumentWords] = field(default_factory=lambda: TextCache(0))
    catalog: CatalogVectors | None = None
    miss_embedder: Embedder | None = None
    title_weight: float = 0.0
    title_cache: TextCache[FloatArray] = field(default_factory=lambda: TextCache(0))

    @classmethod
    def from_parameters(
        cls,
        parameters: Mapping[str, Any],
        embedder: Embedder,
        *,
        cache_size: int = 0,
        miss_embedder: Embedder | None = None,
    ) -> DensePrior:
        """The prior from its learned parameters, as training returns them and the manifest
        records them (``weight``, ``bias``, optional ``lexical_weights`` by feature name and
        ``title_weight``)."""
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
            words_cache=TextCache(cache_size),
            miss_embedder=miss_embedder,
            title_weight=float(parameters.get("title_weight", 0.0)),
            title_cache=TextCache(cache_size),
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
        vectors or the miss embedder (else the bi-encoder), in that order."""
        query_vector = self.embedder.embed([query])[0] if query_vector is None else query_vector
        vectors = (
            document_vectors
            if document_vectors is not None
            else np.stack(self.cache.get_many(documents, self._document_vectors))
        )
        prior = self.weight * (vectors @ query_vector) + self.bias
        if self.title_weight:
            prior += self.title_weight * (self._title_vectors(documents, vectors) @ query_vector)
        if self.lexical_weights:
            lexical = lexical_features(query, documents, cache=self.words_cache) @ np.array(
                self.lexical_weights
            )
            combined: FloatArray = (prior + lexical).astype(np.float32)
            return combined
        return prior.astype(np.float32)

    def _title_vectors(self, documents: Sequence[str], vectors: FloatMatrix) -> FloatMatrix:
        """The documents' titles' vectors (:func:`title_vectors`), from the title cache, else
        the miss embedder (else the bi-encoder)."""
        encoder = self.miss_embedder or self.embedder
        return title_vectors(
            documents,
            vectors,
            lambda titles: np.stack(
                self.title_cache.get_many(titles, lambda texts: list(encoder.embed(texts)))
            ),
        )

    def reads_vectors_of(self, embedder: Embedder) -> bool:
        """Whether ``embedder``'s vectors are this prior's bi-encoder's (the same model)."""
        return embedder is self.embedder or embedder.identity == self.embedder.identity

    def _document_vectors(self, texts: list[str]) -> list[FloatArray]:
        """Stored vectors where the catalog has the text; the miss embedder (else the
        bi-encoder) embeds the rest."""
        found = self.catalog.vectors(texts) if self.catalog is not None else [None] * len(texts)
        missing = [i for i, vector in enumerate(found) if vector is None]
        if missing:
            encoder = self.miss_embedder or self.embedder
            embedded = encoder.embed([texts[i] for i in missing])
            for i, vector in zip(missing, embedded, strict=True):
                found[i] = vector
        return [vector for vector in found if vector is not None]


def title_vectors(
    texts: Sequence[str], text_vectors: FloatMatrix, embed: Callable[[list[str]], FloatMatrix]
) -> FloatMatrix:
    """The vectors of ``texts``' titles (their first lines): a one-line text's own, from
    ``text_vectors`` (in the same order); the other titles from ``embed``, in one call."""
    titles = [title_line(text) for text in texts]
    longer = [row for row, text in enumerate(texts) if titles[row] != text]
    if not longer:
        return text_vectors
    vectors = np.array(text_vectors, dtype=np.float32, copy=True)
    vectors[longer] = embed([titles[row] for row in longer])
    return vectors


def has_cross_encoder(model_dir: Path) -> bool:
    """False for a prior-only reranker directory (its manifest says ``cross_encoder:
    false``): it holds no transformer to run, only the prior's parameters."""
    return (read_manifest(model_dir) or {}).get("cross_encoder", True) is not False


def prior_only_sha256(model_dir: Path) -> str:
    """What identifies a prior-only reranker's weights: the prior's parameters (its manifest's
    ``prior``) and its miss embedder's weights, hashed together."""
    prior = (read_manifest(model_dir) or {}).get("prior")
    digest = hashlib.sha256(json.dumps(prior, sort_keys=True).encode())
    miss_dir = model_dir / MISS_EMBEDDER_DIR
    if miss_dir.is_dir():
        digest.update(weights_sha256(miss_dir).encode())
    return digest.hexdigest()


def dense_prior(
    model_dir: Path,
    embedder: Embedder | None,
    *,
    cache_size: int = 0,
    backend_config: BackendSettings | None = None,
) -> DensePrior | None:
    """The prior a model's manifest declares, checked against the serving bi-encoder, with
    its miss embedder when the directory ships one."""
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
    miss = load_miss_embedder(model_dir, declared, backend_config=backend_config)
    try:
        return DensePrior.from_parameters(
            declared, embedder, cache_size=cache_size, miss_embedder=miss
        )
    except RerankerError as exc:
        raise RerankerError(f"{model_dir}: {exc}") from None


def load_miss_embedder(
    model_dir: Path,
    declared: Mapping[str, Any],
    *,
    backend_config: BackendSettings | None = None,
) -> Embedder | None:
    """The miss embedder the prior declares (``miss_embedder``: its directory inside
    ``model_dir`` and input length), None when it declares none."""
    miss = declared.get("miss_embedder")
    if not miss:
        return None
    path = model_dir / str(miss.get("path", MISS_EMBEDDER_DIR))
    if not path.is_dir():
        raise RerankerError(f"{model_dir}: its prior's miss embedder {path} is missing")
    embedder = Embedder.load(
        path,
        backend="auto",
        max_length=int(miss["max_length"]),
        batch_size=int(miss.get("batch_size", 64)),
        backend_config=backend_config,
    )
    logger.info(
        "%s: texts the index does not hold are embedded by %s (%d word pieces)",
        model_dir,
        embedder.identity.model_id,
        int(miss["max_length"]),
    )
    return embedder
