"""The OpenSearch index design: template, documents, filters and score conversion."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import SecretStr

from indexer.catalog import Product
from indexer.stores.base import SearchFilter
from indexer.stores.opensearch.mapping import (
    ANALYZER,
    BM25_TEXT_FIELD,
    FTS5_K1,
    MODEL_TEXT_FIELD,
    ROW_SIMILARITY,
    ROW_WEIGHT_SCALE,
    TEXT_FIELD_WEIGHTS,
    VECTOR_FIELD,
    bm25_query,
    bm25_text,
    column_repetitions,
    filter_clauses,
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


def test_bm25_matches_any_token_of_the_fts5_row() -> None:
    match = bm25_query("usb c charger", k=5, search_filter=None)["query"]["bool"]["must"][0]
    assert match == {"match": {BM25_TEXT_FIELD: {"query": "usb c charger", "operator": "or"}}}


def test_the_row_repeats_each_column_by_its_weight() -> None:
    product = Product(
        id="p1",
        title="Kettle",
        brand="Acme",
        color="red",
        bullet_points=("1.7 l", "steel"),
        description="boils",
        category=("Home", "Kitchen"),
    )
    lines = bm25_text(product).split("\n")
    assert lines.count("Kettle") == 6
    assert lines.count("Acme") == 4
    assert lines.count("red") == 2
    assert lines.count("steel") == 2
    assert lines.count("boils") == 1
    assert lines.count("Home > Kitchen") == 1
    with pytest.raises(ValueError, match="multiple of 1/2"):
        column_repetitions({"title": 0.3})


def test_the_row_field_is_unstored_with_k1_scaled_by_the_repetition() -> None:
    body = index_template(OpenSearchSettings(), dimension=4, index_patterns=["x-v*"])
    mappings = body["template"]["mappings"]
    similarity = body["template"]["settings"]["similarity"][ROW_SIMILARITY]
    assert mappings["properties"][BM25_TEXT_FIELD]["similarity"] == ROW_SIMILARITY
    assert mappings["_source"] == {"excludes": [BM25_TEXT_FIELD]}
    assert similarity == {"type": "BM25", "k1": FTS5_K1 * ROW_WEIGHT_SCALE, "b": 0.75}


@pytest.mark.parametrize("weighted_tf", [0.5, 1.0, 3.5, 7.0])
@pytest.mark.parametrize("norm", [0.6, 1.0, 2.5])
def test_row_bm25_saturates_like_fts5(weighted_tf: float, norm: float) -> None:
    # FTS5: f (k1 + 1) / (f + k1 N) with f the weighted term frequency; the row field sees
    # s f and k1 s: the same up to the constant factor (k1 s + 1) / (k1 + 1).
    fts5 = weighted_tf * (FTS5_K1 + 1) / (weighted_tf + FTS5_K1 * norm)
    k1 = FTS5_K1 * ROW_WEIGHT_SCALE
    tf = weighted_tf * ROW_WEIGHT_SCALE
    row = tf * (k1 + 1) / (tf + k1 * norm)
    assert row / fts5 == pytest.approx((k1 + 1) / (FTS5_K1 + 1))
    assert set(column_repetitions()) == set(TEXT_FIELD_WEIGHTS)


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
        not in knn_query(np.zeros(3, dtype=np.float32), k=1, ef_search=1, search_filter=None)[
            "query"
        ]["knn"][VECTOR_FIELD]
    )
    bm25 = bm25_query("red kettle", k=5, search_filter=search_filter)
    assert bm25["query"]["bool"]["filter"] == clauses
    assert BM25_TEXT_FIELD in bm25["query"]["bool"]["must"][0]["match"]


@pytest.mark.parametrize("similarity", [-0.9, -0.2, 0.0, 0.3, 1.0])
def test_lucene_scores_convert_back_to_similarities(similarity: float) -> None:
    inner_product_score = similarity + 1 if similarity >= 0 else 1 / (1 - similarity)
    assert similarity_from_score(inner_product_score, "innerproduct") == pytest.approx(similarity)
    cosine_score = (1 + similarity) / 2
    assert similarity_from_score(cosine_score, "cosinesimil") == pytest.approx(similarity)


def test_settings_refuse_two_kinds_of_auth() -> None:
    with pytest.raises(ValueError, match="not both"):
        OpenSearchSettings(username="u", password=SecretStr("p"), api_key=SecretStr("k"))
    with pytest.raises(ValueError, match="both username and password"):
        OpenSearchSettings(username="u")
