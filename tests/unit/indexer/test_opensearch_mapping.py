"""The OpenSearch index design: template, documents, filters and score conversion."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.catalog import Product
from indexer.stores.base import SearchFilter
from indexer.stores.opensearch.mapping import (
    ANALYZER,
    BM25_K1,
    MODEL_TEXT_FIELD,
    TEXT_FIELD_BOOSTS,
    TEXT_FIELD_WEIGHTS,
    VECTOR_FIELD,
    bm25_query,
    filter_clauses,
    fts5_equivalent_boost,
    index_template,
    knn_query,
    product_document,
    product_from_source,
    similarity_from_score,
)
from ranker.settings import OpenSearchSettings


def test_template_carries_lucene_hnsw_with_the_settings() -> None:
    config = OpenSearchSettings(hnsw_m=24, hnsw_ef_construction=256, space_type="cosinesimil")
    body = index_template(config, dimension=384, index_patterns=["shop-v*"])
    vector = body["template"]["mappings"]["properties"][VECTOR_FIELD]
    assert vector["dimension"] == 384
    assert vector["method"] == {
        "name": "hnsw",
        "engine": "lucene",
        "space_type": "cosinesimil",
        "parameters": {"m": 24, "ef_construction": 256},
    }
    properties = body["template"]["mappings"]["properties"]
    assert properties["title"]["analyzer"] == ANALYZER
    assert properties[MODEL_TEXT_FIELD] == {"type": "text", "index": False}
    assert properties["brand"]["fields"]["keyword"]["type"] == "keyword"
    assert body["template"]["settings"]["index"]["knn"] is True
    with pytest.raises(ValueError, match="dimension"):
        index_template(config, dimension=0, index_patterns=["x"])


def test_documents_round_trip_without_their_vector() -> None:
    product = Product(
        id="p1",
        title="Kettle",
        bullet_points=("1.7 l", "steel"),
        category=("Home", "Kitchen"),
        price=19.5,
        attributes={"watts": 2200},
    )
    document = product_document(product, np.ones(4, dtype=np.float32), model_text="Kettle")
    assert document[VECTOR_FIELD] == [1.0] * 4
    assert document[MODEL_TEXT_FIELD] == "Kettle"
    assert product_from_source(document) == product


def test_the_analyzer_mirrors_fts5_porter_unicode61() -> None:
    body = index_template(OpenSearchSettings(), dimension=4, index_patterns=["x-v*"])
    analysis = body["template"]["settings"]["analysis"]
    analyzer = analysis["analyzer"][ANALYZER]
    tokenizer = analysis["tokenizer"][analyzer["tokenizer"]]
    # unicode61's default token characters are the categories L*, N* and Co; no stop words.
    assert tokenizer == {"type": "pattern", "pattern": r"[^\p{L}\p{N}\p{Co}]+"}
    assert analyzer["filter"] == ["lowercase", "asciifolding", "porter_stem"]


def test_bm25_sums_every_field_with_one_document_frequency_per_term() -> None:
    match = bm25_query("usb c charger", k=5, search_filter=None)["query"]["bool"]["must"][0]
    assert match["multi_match"]["type"] == "cross_fields"
    assert match["multi_match"]["tie_breaker"] == 1.0
    assert match["multi_match"]["operator"] == "or"
    assert match["multi_match"]["fields"] == [f"{f}^{w:g}" for f, w in TEXT_FIELD_BOOSTS.items()]


def test_filters_become_clauses_inside_the_queries() -> None:
    search_filter = SearchFilter(
        brands=("ACME", "acme"),
        categories=("Kitchen",),
        price_min=5,
        product_ids=frozenset({"b", "a"}),
    )
    clauses = filter_clauses(search_filter)
    assert {"terms": {"brand.keyword": ["acme"]}} in clauses
    assert {"terms": {"category.keyword": ["kitchen"]}} in clauses
    assert {"range": {"price": {"gte": 5}}} in clauses
    assert {"ids": {"values": ["a", "b"]}} in clauses
    assert filter_clauses(None) == []
    assert filter_clauses(SearchFilter()) == []

    knn = knn_query(np.zeros(3, dtype=np.float32), k=7, ef_search=100, search_filter=search_filter)
    inner = knn["query"]["knn"][VECTOR_FIELD]
    assert inner["k"] == 7
    assert knn["size"] == 7
    assert inner["filter"] == {"bool": {"filter": clauses}}
    assert (
        "filter"
        not in knn_query(np.zeros(3), k=1, ef_search=1, search_filter=None)["query"]["knn"][
            VECTOR_FIELD
        ]
    )
    bm25 = bm25_query("red kettle", k=5, search_filter=search_filter)
    assert bm25["query"]["bool"]["filter"] == clauses
    assert "title^1.5714" in bm25["query"]["bool"]["must"][0]["multi_match"]["fields"]


@pytest.mark.parametrize("similarity", [-0.9, -0.2, 0.0, 0.3, 1.0])
def test_lucene_scores_convert_back_to_similarities(similarity: float) -> None:
    inner_product_score = similarity + 1 if similarity >= 0 else 1 / (1 - similarity)
    assert similarity_from_score(inner_product_score, "innerproduct") == pytest.approx(similarity)
    cosine_score = (1 + similarity) / 2
    assert similarity_from_score(cosine_score, "cosinesimil") == pytest.approx(similarity)


def test_settings_refuse_two_kinds_of_auth() -> None:
    with pytest.raises(ValueError, match="not both"):
        OpenSearchSettings(username="u", password="p", api_key="k")
    with pytest.raises(ValueError, match="both username and password"):
        OpenSearchSettings(username="u")


@pytest.mark.parametrize("weight", [0.5, 1.0, 2.0, 3.0])
def test_boosts_score_one_occurrence_like_an_fts5_column_weight(weight: float) -> None:
    # One occurrence at average length (length norm 1): FTS5 saturates the weighted term
    # frequency, Lucene multiplies the saturated one by the boost.
    fts5 = weight * (BM25_K1 + 1) / (weight + BM25_K1)
    lucene = fts5_equivalent_boost(weight) * 1 * (BM25_K1 + 1) / (1 + BM25_K1)
    assert lucene == pytest.approx(fts5)
    assert fts5_equivalent_boost(1.0) == pytest.approx(1.0)
    assert set(TEXT_FIELD_BOOSTS) == set(TEXT_FIELD_WEIGHTS)
