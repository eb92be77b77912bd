"""The index design: template, product documents, and the k-NN and BM25 query bodies.

One document per product (``_id`` = product id) holds its text, its filter fields and its
vector, so one index serves the vector store, the BM25 index and the product store.

- ``embedding``: ``knn_vector``, HNSW in the lucene engine (the only one without native
  libraries), ``innerproduct`` on unit vectors like FAISS, or ``cosinesimil``.
- Text fields are analyzed like the embedded SQLite FTS5 index's
  ``porter unicode61 remove_diacritics 2`` tokenizer: split on everything but Unicode
  letters, numbers and private-use characters (unicode61's default token characters),
  lowercase, fold diacritics, Porter stemmer; no stop words (FTS5 keeps them).
- BM25 queries are ``cross_fields`` with ``tie_breaker`` 1, the closest OpenSearch 2.19 has to
  FTS5's ``bm25()``: FTS5 scores each query term once per row, with the row's document
  frequency and a weighted sum of the columns' term frequencies; ``cross_fields`` blends
  the fields' document frequencies into one per term (so a term's rarity is judged per
  product, not per field, unlike ``most_fields``) and, with ``tie_breaker`` 1, adds every
  field's evidence (``best_fields`` would keep only the best field's). The fields carry the
  SQLite index's column weights (title 3, brand 2, color and bullets 1, description and
  category 0.5) translated to boosts that score a single occurrence as FTS5 does
  (:func:`fts5_equivalent_boost`: FTS5 weighs term frequency inside the saturation, Lucene
  the field's score after it). What remains different: Lucene saturates term frequency and
  normalizes length per field, FTS5 over the whole row (``combined_fields``, Lucene's BM25F,
  arrives in OpenSearch 3.2), and Lucene's idf is ``log(1 + (N - n + 0.5) / (n + 0.5))``, FTS5's the
  same without the ``1 +``.
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
from indexer.stores.opensearch.config import OpenSearchConfig, SpaceType

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
BM25_K1 = 1.2
"""k1 of FTS5's ``bm25()`` and of OpenSearch's default BM25 similarity (b is 0.75 in both)."""


def fts5_equivalent_boost(weight: float, *, k1: float = BM25_K1) -> float:
    """The field boost that scores like an FTS5 column weight, ``w (k1 + 1) / (w + k1)``.

    FTS5 multiplies a column's term frequency by its weight inside BM25's saturation,
    ``tf (k1 + 1) / (tf + k1 N)``; Lucene multiplies the field's whole score by the boost. For
    the common case, a query term once in one column of an average-length row (tf 1, N 1),
    FTS5 scores ``w (k1 + 1) / (w + k1)`` times the idf and Lucene ``boost`` times the idf,
    so this boost makes the two agree there: title 3 acts as 1.57, brand 2 as 1.38, color
    and bullets 1 as 1, description and category 0.5 as 0.65.
    """
    return weight * (k1 + 1.0) / (weight + k1)


CROSS_FIELD_TIE_BREAKER = 0.1
"""How much a query term's other fields add to its best field's score.

FTS5 saturates the weighted sum of a term's frequencies over all columns, so a second
column adds little: with one occurrence each, title alone scores 1.57, title and bullets
1.69 (+0.12 for a column worth 1.0 alone), title and description 1.64 (+0.07 for 0.65),
title, bullets and description 1.74 (+0.17 for 1.65). A term-centric ``dis_max`` over the
fields (``cross_fields``) with this tie-breaker adds about that fraction (0.1 to 0.12 when
the title matches, the common case for a relevant product).
"""

TEXT_FIELD_BOOSTS: Mapping[str, float] = {
    name: round(fts5_equivalent_boost(weight), 4) for name, weight in TEXT_FIELD_WEIGHTS.items()
}
"""BM25 field boosts: the FTS5 column weights, translated (:func:`fts5_equivalent_boost`)."""


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
    )


def product_fields(product: Product, *, model_text: str) -> dict[str, Any]:
    """A product's document fields, without its vector; ``model_text``: its rendered text."""
    fields = product.model_dump(mode="json")
    fields[MODEL_TEXT_FIELD] = model_text
    return fields


def product_document(product: Product, vector: FloatMatrix, *, model_text: str) -> dict[str, Any]:
    """A product's whole document: its fields, its rendered text and its vector."""
    document = product_fields(product, model_text=model_text)
    document[VECTOR_FIELD] = [float(x) for x in np.asarray(vector, dtype=np.float32)]
    return document


def product_from_source(source: Mapping[str, Any]) -> Product:
    """The product a document's ``_source`` holds (its vector and rendered text left out)."""
    return Product.model_validate(
        {k: v for k, v in source.items() if k not in (VECTOR_FIELD, MODEL_TEXT_FIELD)}
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
    """A BM25 search body over the weighted text fields, filters in the same bool query.

    ``cross_fields`` with :data:`CROSS_FIELD_TIE_BREAKER` and ``operator`` or: see the module
    docstring for why this is the closest to the embedded index's FTS5 ``bm25()``.
    """
    match = {
        "multi_match": {
            "query": query,
            "type": "cross_fields",
            "tie_breaker": CROSS_FIELD_TIE_BREAKER,
            "operator": "or",
            "fields": [f"{name}^{boost:g}" for name, boost in TEXT_FIELD_BOOSTS.items()],
        }
    }
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
