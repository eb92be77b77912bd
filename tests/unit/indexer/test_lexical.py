"""SqliteBm25Index: BM25 ranking, filters inside retrieval, updates, persistence, safe queries."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from indexer.catalog import Product
from indexer.stores.base import Hit, LexicalIndex, SearchFilter, StoreError
from indexer.stores.lexical import (
    DEFAULT_COLUMN_WEIGHTS,
    SqliteBm25Index,
    fts5_match_expression,
    query_tokens,
)

CATALOG = [
    Product(
        id="knife",
        title="Stainless steel chef knife",
        brand="Acme",
        category=("Home", "Kitchen", "Knives"),
        price=30.0,
    ),
    Product(
        id="mat",
        title="Silicone baking mat",
        brand="Globex",
        description="Non-stick, food grade.",
        category=("Home", "Kitchen", "Bakeware"),
        price=12.5,
    ),
    Product(
        id="case",
        title="Clear phone case",
        brand="Initech",
        description="Made of soft silicone.",
        bullet_points=("Shock absorbing", "Slim fit"),
        category=("Electronics", "Phone Accessories"),
    ),
    Product(
        id="tent",
        title="Camping tent for 4 people",
        brand="Acme",
        color="Green",
        category=("Sports", "Outdoor", "Tents"),
        price=150.0,
    ),
    Product(id="creme", title="Crème brûlée torch", brand="Flambé", price=25.0),
]


def ids(hits: list[Hit]) -> list[str]:
    return [hit.product_id for hit in hits]


@pytest.fixture
def index(tmp_path: Path) -> SqliteBm25Index:
    lexical = SqliteBm25Index.open(tmp_path / "bm25.sqlite")
    lexical.upsert(CATALOG)
    return lexical


def bottle_catalog() -> list[Product]:
    """60 bottles; the 6 by brand Rare (4 in Outdoor > Hiking, 3 priced 10..30) rank last."""
    products = []
    for i in range(60):
        rare = i % 10 == 9
        products.append(
            Product(
                id=f"b{i:02d}",
                title="water bottle" if not rare else "flask",
                description="bottle " + "filler words " * (40 if rare else 1),
                brand="Rare" if rare else "Common",
                category=("Sports", "Outdoor", "Hiking") if rare and i < 45 else ("Kitchen",),
                price=None if i == 19 else float(i // 2),
            )
        )
    return products


def test_satisfies_the_lexical_index_protocol(index: SqliteBm25Index) -> None:
    assert isinstance(index, LexicalIndex)
    assert len(index) == len(CATALOG)


def test_bm25_ranks_the_obvious_document_first(index: SqliteBm25Index) -> None:
    assert ids(index.search("chef knife", 3))[0] == "knife"
    assert ids(index.search("camping tents", 3))[0] == "tent"  # porter: tents -> tent
    assert ids(index.search("creme brulee", 3)) == ["creme"]  # diacritics removed
    hits = index.search("silicone", 5)
    assert ids(hits) == ["mat", "case"]  # title weight 3.0 beats description weight 0.5
    assert hits[0].score > hits[1].score > 0


def test_brand_and_color_are_searchable(index: SqliteBm25Index) -> None:
    assert set(ids(index.search("acme", 5))) == {"knife", "tent"}
    assert ids(index.search("green", 5)) == ["tent"]
    assert ids(index.search("slim", 5)) == ["case"]  # bullet points


def test_empty_and_wordless_queries_return_nothing(index: SqliteBm25Index) -> None:
    for query in ["", "   ", "!!! ??? --", "*"]:
        assert index.search(query, 5) == []
    assert fts5_match_expression("") is None


@pytest.mark.parametrize(
    "query",
    [
        '%100 silicone "not" clear',
        "AND OR NOT NEAR(",
        "c++",
        "*",
        'title:knife "unbalanced',
        "NEAR(chef knife, 2)",
        "knife*",
        "^chef",
        "{title brand}: acme",
        "a - b + c",
        "'; DROP TABLE products; --",
        "\x00\u200b\ufeff",
    ],
)
def test_query_syntax_never_reaches_fts5(index: SqliteBm25Index, query: str) -> None:
    hits = index.search(query, 5)
    assert all(isinstance(hit, Hit) for hit in hits)
    assert len(index) == len(CATALOG)


def test_query_building_quotes_every_token() -> None:
    assert query_tokens('%100 Silicone "NOT" clear c++') == ["100", "silicone", "not", "clear", "c"]
    assert fts5_match_expression("AND or NOT") == '"and" OR "or" OR "not"'
    assert ids_for_not_query() == ["case"]


def ids_for_not_query() -> list[str]:
    with SqliteBm25Index.open(Path(":memory:")) as lexical:
        lexical.upsert(CATALOG)
        return ids(lexical.search('"not" clear', 5))


def test_k_must_be_positive(index: SqliteBm25Index) -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        index.search("knife", 0)


@pytest.mark.parametrize(
    ("search_filter", "expected"),
    [
        (SearchFilter(brands=("RARE",)), {"b09", "b19", "b29", "b39", "b49", "b59"}),
        (SearchFilter(categories=("outdoor",)), {"b09", "b19", "b29", "b39"}),
        (SearchFilter(categories=("HIKING", "nowhere")), {"b09", "b19", "b29", "b39"}),
        (SearchFilter(brands=("rare",), price_min=10, price_max=20), {"b29", "b39"}),
        (SearchFilter(brands=("rare",), price_max=9.5), {"b09"}),  # b19 has no price
        (
            SearchFilter(brands=("rare", "nobody"), categories=("sports",), price_min=0),
            {"b09", "b29", "b39"},
        ),
        (SearchFilter(brands=("nobody",)), set()),
    ],
)
@pytest.mark.parametrize("k", [3, 10])
def test_filters_apply_inside_retrieval(
    tmp_path: Path, search_filter: SearchFilter, expected: set[str], k: int
) -> None:
    products = bottle_catalog()
    lexical = SqliteBm25Index.build(tmp_path / "bm25.sqlite", products)
    unfiltered = ids(lexical.search("bottle", 60))
    assert all(pid in unfiltered[-6:] for pid in expected)  # a post-filter of top-k would miss
    hits = ids(lexical.search("bottle", k, search_filter))
    assert len(hits) == min(k, len(expected))
    assert set(hits) <= expected
    by_id = {p.id: p for p in products}
    assert {p for p in by_id if search_filter.matches(by_id[p])} == expected


def test_upsert_replaces_text_and_filters(index: SqliteBm25Index) -> None:
    renamed = CATALOG[0].model_copy(
        update={"title": "Garden hose", "brand": "Hoseco", "category": ("Garden",), "price": None}
    )
    index.upsert([renamed])
    assert len(index) == len(CATALOG)
    assert "knife" not in ids(index.search("chef knife stainless", 5))
    assert ids(index.search("garden hose", 5)) == ["knife"]
    assert index.search("hose", 5, SearchFilter(categories=("kitchen",))) == []
    assert ids(index.search("hose", 5, SearchFilter(categories=("garden",)))) == ["knife"]
    assert index.search("hose", 5, SearchFilter(price_max=1000)) == []
    assert index.search("hose", 5, SearchFilter(brands=("acme",))) == []


def test_delete(index: SqliteBm25Index) -> None:
    assert index.delete(["knife", "missing", "knife"]) == 1
    assert len(index) == len(CATALOG) - 1
    assert index.search("chef knife", 5) == []
    assert index.delete(["knife"]) == 0
    assert ids(index.search("kitchen", 5, SearchFilter(categories=("kitchen",)))) == ["mat"]


def test_index_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bm25.sqlite"
    weights = {"title": 1.0, "description": 10.0}
    with SqliteBm25Index.open(path, column_weights=weights) as lexical:
        lexical.upsert(CATALOG)
        before = lexical.search("silicone", 5)
    assert ids(before) == ["case", "mat"]  # description now outweighs title
    with SqliteBm25Index.open(path) as reopened:
        assert len(reopened) == len(CATALOG)
        assert reopened.column_weights["description"] == 10.0
        assert reopened.column_weights["brand"] == DEFAULT_COLUMN_WEIGHTS["brand"]
        assert reopened.search("silicone", 5) == before


def test_unknown_column_weight_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown column"):
        SqliteBm25Index.open(tmp_path / "bm25.sqlite", column_weights={"titel": 2.0})


def test_build_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bm25.sqlite"
    SqliteBm25Index.build(path, CATALOG[:2]).close()
    rebuilt = SqliteBm25Index.build(path, CATALOG[2:])
    assert len(rebuilt) == 3
    assert rebuilt.search("knife", 5) == []
    rebuilt.close()

    def fail(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SqliteBm25Index, "_upsert_one", staticmethod(fail))
    with pytest.raises(StoreError, match="disk I/O error"):
        SqliteBm25Index.build(path, CATALOG)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bm25.sqlite"]
    with SqliteBm25Index.open(path) as kept:
        assert len(kept) == 3


def test_open_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "bm25.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"bm25\.sqlite"):
        SqliteBm25Index.open(path)
