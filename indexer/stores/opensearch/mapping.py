"""The index design: template, product documents, and the k-NN and BM25 query bodies.

One document per product (``_id`` = product id) holds its text, its filter fields and its
vector, so one index serves the vector store, the BM25 index and the product store.

- ``embedding``: ``knn_vector``, HNSW in the lucene engine (the only one without native
  libraries), ``innerproduct`` on unit vectors like FAISS, or ``cosinesimil``.
- Text is analyzed like the embedded SQLite FTS5 index's
  ``porter unicode61 remove_diacritics 2`` tokenizer: split on everything but Unicode
  letters, numbers and private-use characters (unicode61's default token characters),
  lowercase, fold diacritics, Porter stemmer; no stop words (FTS5 keeps them).
- BM25 runs on ``bm25_text``, one field that is the FTS5 row: FTS5's ``bm25()`` is a single
  BM25 over all columns of a row, each query term scored once with the row's document
  frequency, the row's length, and the columns' term frequencies summed with the column
  weights (title 3, brand 2, color and bullets 1, description and category 0.5) inside the
  saturation. ``bm25_text`` holds each column repeated twice its weight (title 6 times,
  description once), so its term frequency is twice FTS5's weighted one, and its BM25 has
  k1 2.4 (twice FTS5's 1.2, which undoes the factor 2) and b 0.75. What remains different:
  the length normalization sees the weighted length (FTS5: the plain token count), Lucene
  stores lengths lossily, and its idf is ``log(1 + (N - n + 0.5) / (n + 0.5))`` (FTS5: the
  same without ``1 +``, floored at 1e-6). Per-field queries (``most_fields``,
  ``cross_fields``) cannot express the weighted sum inside one saturation, and
  ``combined_fields`` (Lucene's BM25F) arrives only in OpenSearch 3.2. The field is
  indexed without positions and left out of ``_source``. The separate text fields stay for
  other queries (the rerank pipeline's example, users' own).
- ``model_text`` keeps the text the models read (the text template's rendering), stored but
  not indexed, for the ``rerank`` search processor's ``document_fields``.
- ``brand.keyword`` and ``category.keyword`` (lowercased) and ``price`` carry the filters.
  A filter sits inside the k-NN query, so the lucene engine filters during the graph search
  and a filtered query returns k hits whenever k products match.
- ``_meta.shoprank`` records the embedder identity and text template the index was built
  with; opening the index with another model is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from indexer.catalog import Product, TextTemplate
from indexer.stores.base import FloatMatrix, ModelIdentity, SearchFilter
from indexer.stores.opensearch.config import HybridNormalization, OpenSearchConfig, SpaceType

FORMAT_VERSION = 2
META_KEY = "shoprank"
VECTOR_FIELD = "embedding"
MODEL_TEXT_FIELD = "model_text"
"""The text template's rendering of a product: what the embedder and the reranker read."""
NORMALIZER = "shoprank_lowercase"
ANALYZER = "shoprank_text"
TOKENIZER = "shoprank_unicode61"
TOKEN_SEPARATORS = r"[^\p{L}\p{N}\p{Co}]+"
"""Runs of characters that are not FTS5 unicode61's default token characters (L*, N*, Co)."""
TEXT_FILTERS = ("lowercase", "asciifolding", "porter_stem")
"""unicode61 folds case and (remove_diacritics 2) diacritics; FTS5's porter stems."""
TEXT_FIELD_WEIGHTS: Mapping[str, float] = {
    "title": 3.0,
    "brand": 2.0,
    "color": 1.0,
    "bullet_points": 1.0,
    "description": 0.5,
    "category": 0.5,
}
"""The embedded SQLite index's FTS5 column weights."""
BM25_TEXT_FIELD = "bm25_text"
"""The FTS5 row: every text column repeated ``ROW_WEIGHT_SCALE`` times its weight."""
ROW_WEIGHT_SCALE = 2
"""Repetitions per unit of column weight: the smallest that makes every weight whole."""
FTS5_K1 = 1.2
FTS5_B = 0.75
ROW_SIMILARITY = "shoprank_fts5_row"
ROW_SIMILARITY_SETTINGS = {"type": "BM25", "k1": FTS5_K1 * ROW_WEIGHT_SCALE, "b": FTS5_B}
"""BM25 whose k1 absorbs the repetition: ``s tf / (s tf + s k1 N) = tf / (tf + k1 N)``."""


def column_repetitions(weights: Mapping[str, float] = TEXT_FIELD_WEIGHTS) -> dict[str, int]:
    """How many times each column goes into ``bm25_text``; refuses weights it cannot express."""
    repetitions = {name: round(weight * ROW_WEIGHT_SCALE) for name, weight in weights.items()}
    for name, weight in weights.items():
        if weight < 0 or abs(repetitions[name] - weight * ROW_WEIGHT_SCALE) > 1e-9:
            raise ValueError(
                f"column weight {name}={weight} is not a multiple of 1/{ROW_WEIGHT_SCALE}"
            )
    return repetitions


COLUMN_REPETITIONS = column_repetitions()


def fts5_columns(product: Product) -> dict[str, str]:
    """A product's text columns as the embedded FTS5 index stores them."""
    return {
        "title": product.title,
        "brand": product.brand,
        "color": product.color,
        "bullet_points": "\n".join(product.bullet_points),
        "description": product.description,
        "category": " > ".join(product.category),
    }


def bm25_text(product: Product) -> str:
    """The product's FTS5 row, each column repeated by its weight (see the module docstring)."""
    columns = fts5_columns(product)
    return "\n".join(
        columns[name]
        for name, times in COLUMN_REPETITIONS.items()
        for _ in range(times)
        if columns[name]
    )


def _text(*, keyword: bool = False) -> dict[str, Any]:
    field: dict[str, Any] = {"type": "text", "analyzer": ANALYZER}
    if keyword:
        field["fields"] = {
            "keyword": {"type": "keyword", "normalizer": NORMALIZER, "ignore_above": 512}
        }
    return field


def index_template(
    config: OpenSearchConfig, *, dimension: int, index_patterns: Sequence[str]
) -> dict[str, Any]:
    """An index template body for ``index_patterns``: settings and mappings, HNSW included."""
    if dimension < 1:
        raise ValueError(f"dimension must be positive, got {dimension}")
    return {
        "index_patterns": list(index_patterns),
        "priority": 100,
        "template": {
            "settings": {
                "index": {
                    "knn": True,
                    "number_of_shards": config.shards,
                    "number_of_replicas": config.replicas,
                },
                "similarity": {ROW_SIMILARITY: dict(ROW_SIMILARITY_SETTINGS)},
                "analysis": {
                    "normalizer": {NORMALIZER: {"type": "custom", "filter": ["lowercase"]}},
                    "tokenizer": {TOKENIZER: {"type": "pattern", "pattern": TOKEN_SEPARATORS}},
                    "analyzer": {
                        ANALYZER: {
                            "type": "custom",
                            "tokenizer": TOKENIZER,
                            "filter": list(TEXT_FILTERS),
                        }
                    },
                },
            },
            "mappings": {
                "dynamic": "strict",
                "_source": {"excludes": [BM25_TEXT_FIELD]},
                "properties": {
                    "id": {"type": "keyword"},
                    "title": _text(),
                    "description": _text(),
                    "bullet_points": _text(),
                    "brand": _text(keyword=True),
                    "color": _text(),
                    "category": _text(keyword=True),
                    "price": {"type": "double"},
                    "attributes": {"type": "object", "enabled": False},
                    MODEL_TEXT_FIELD: {"type": "text", "index": False},
                    BM25_TEXT_FIELD: {
                        "type": "text",
                        "analyzer": ANALYZER,
                        "similarity": ROW_SIMILARITY,
                        "index_options": "freqs",
                    },
                    VECTOR_FIELD: {
                        "type": "knn_vector",
                        "dimension": dimension,
                        "method": {
                            "name": "hnsw",
                            "engine": "lucene",
                            "space_type": config.space_type,
                            "parameters": {
                                "m": config.hnsw_m,
                                "ef_construction": config.hnsw_ef_construction,
                            },
                        },
                    },
                },
            },
        },
    }


def index_meta(
    *, identity: ModelIdentity, template: TextTemplate, space_type: SpaceType, source: str
) -> dict[str, Any]:
    """What ``_meta.shoprank`` records about a build."""
    return {
        "format_version": FORMAT_VERSION,
        "embedder": {
            "model_id": identity.model_id,
            "weights_sha256": identity.weights_sha256,
            "dimension": identity.dimension,
            "lineage": list(identity.lineage),
        },
        "text_template": template.template,
        "space_type": space_type,
        "source": source,
    }


def identity_from_meta(meta: Mapping[str, Any]) -> ModelIdentity:
    """The embedder identity recorded in ``_meta.shoprank``."""
    embedder = meta["embedder"]
    return ModelIdentity(
        model_id=str(embedder["model_id"]),
        weights_sha256=str(embedder["weights_sha256"]),
        dimension=int(embedder["dimension"]),
        lineage=tuple(str(digest) for digest in embedder.get("lineage", ())),
    )


def product_fields(product: Product, *, model_text: str) -> dict[str, Any]:
    """A product's document fields, without its vector; ``model_text``: its rendered text."""
    fields = product.model_dump(mode="json")
    fields[MODEL_TEXT_FIELD] = model_text
    fields[BM25_TEXT_FIELD] = bm25_text(product)
    return fields


def product_document(product: Product, vector: FloatMatrix, *, model_text: str) -> dict[str, Any]:
    """A product's whole document: its fields, its rendered text and its vector."""
    document = product_fields(product, model_text=model_text)
    document[VECTOR_FIELD] = [float(x) for x in np.asarray(vector, dtype=np.float32)]
    return document


def product_from_source(source: Mapping[str, Any]) -> Product:
    """The product a document's ``_source`` holds (its vector and rendered text left out)."""
    return Product.model_validate(
        {
            k: v
            for k, v in source.items()
            if k not in (VECTOR_FIELD, MODEL_TEXT_FIELD, BM25_TEXT_FIELD)
        }
    )


def filter_clauses(search_filter: SearchFilter | None) -> list[dict[str, Any]]:
    """Filter clauses for a bool query; empty for no filter."""
    if search_filter is None or search_filter.is_empty:
        return []
    clauses: list[dict[str, Any]] = []
    if search_filter.brands:
        brands = sorted({b.casefold() for b in search_filter.brands})
        clauses.append({"terms": {"brand.keyword": brands}})
    if search_filter.categories:
        categories = sorted({c.casefold() for c in search_filter.categories})
        clauses.append({"terms": {"category.keyword": categories}})
    if search_filter.price_min is not None or search_filter.price_max is not None:
        bounds: dict[str, float] = {}
        if search_filter.price_min is not None:
            bounds["gte"] = search_filter.price_min
        if search_filter.price_max is not None:
            bounds["lte"] = search_filter.price_max
        clauses.append({"range": {"price": bounds}})
    if search_filter.product_ids is not None:
        clauses.append({"ids": {"values": sorted(search_filter.product_ids)}})
    return clauses


_TIE_BREAK = [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}]


def knn_query(
    vector: FloatMatrix, *, k: int, ef_search: int, search_filter: SearchFilter | None
) -> dict[str, Any]:
    """A k-NN search body; a filter runs inside the lucene graph search (efficient filtering)."""
    knn: dict[str, Any] = {
        "vector": [float(x) for x in np.asarray(vector, dtype=np.float32).reshape(-1)],
        "k": k,
        "method_parameters": {"ef_search": max(ef_search, k)},
    }
    clauses = filter_clauses(search_filter)
    if clauses:
        knn["filter"] = {"bool": {"filter": clauses}}
    return {
        "size": k,
        "query": {"knn": {VECTOR_FIELD: knn}},
        "_source": False,
        "sort": _TIE_BREAK,
        "track_scores": True,
    }


def bm25_query(query: str, *, k: int, search_filter: SearchFilter | None) -> dict[str, Any]:
    """A BM25 search body on the FTS5 row field, filters in the same bool query.

    Any query token matches (``operator`` or), as the embedded index OR-s them.
    """
    match = {"match": {BM25_TEXT_FIELD: {"query": query, "operator": "or"}}}
    return {
        "size": k,
        "query": {"bool": {"must": [match], "filter": filter_clauses(search_filter)}},
        "_source": False,
        "sort": _TIE_BREAK,
        "track_scores": True,
    }


def similarity_from_score(score: float, space_type: SpaceType) -> float:
    """Undo the lucene engine's score scaling: the inner product or cosine back.

    Lucene scores inner product ``ip`` as ``ip + 1`` when ``ip >= 0`` and ``1 / (1 - ip)``
    below, and cosine as ``(1 + cos) / 2``.
    """
    if space_type == "cosinesimil":
        return 2.0 * score - 1.0
    return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score


def hybrid_weights(*, dense: float, lexical: float) -> tuple[float, float]:
    """The dense and BM25 weights as the normalization processor wants them: summing to 1."""
    if dense < 0 or lexical < 0 or dense + lexical <= 0:
        raise ValueError(f"hybrid weights must be >= 0 and not both 0, got {dense}, {lexical}")
    share = round(dense / (dense + lexical), 6)
    return share, round(1.0 - share, 6)


def hybrid_pipeline_body(
    *, normalization: HybridNormalization, weights: tuple[float, float]
) -> dict[str, Any]:
    """A search pipeline whose ``normalization-processor`` (neural-search) fuses a hybrid
    query's two sub-queries: each one's scores normalized (``min_max`` or ``l2``), then their
    weighted arithmetic mean; ``weights`` in the order of :func:`hybrid_query`'s queries
    (dense, BM25), summing to 1."""
    if len(weights) != 2 or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"two weights summing to 1 are needed, got {weights}")
    return {
        "description": "shoprank: server-side hybrid, k-NN and BM25 normalized and combined",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": normalization},
                    "combination": {
                        "technique": "arithmetic_mean",
                        "parameters": {"weights": [float(w) for w in weights]},
                    },
                }
            }
        ],
    }


def hybrid_query(
    query: str,
    vector: FloatMatrix,
    *,
    depth: int,
    ef_search: int,
    search_filter: SearchFilter | None,
) -> dict[str, Any]:
    """A ``hybrid`` search body: the k-NN query and the BM25 query of the other bodies, each
    keeping its own filter (inside the graph search for k-NN), fused by the search pipeline.

    Each sub-query keeps its top ``depth`` per shard (a hybrid query keeps ``from + size``),
    so ``size`` is ``depth`` and the caller takes the first k: the fusion sees as many
    candidates as client-side RRF does.
    """
    dense = knn_query(vector, k=depth, ef_search=ef_search, search_filter=search_filter)
    lexical = bm25_query(query, k=depth, search_filter=search_filter)
    return {
        "size": depth,
        "query": {"hybrid": {"queries": [dense["query"], lexical["query"]]}},
        "_source": False,
    }
