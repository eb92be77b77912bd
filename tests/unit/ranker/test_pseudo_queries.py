"""Pseudo-queries cut from product titles for distillation."""

from __future__ import annotations

from ranker.compress.distill import pseudo_queries

TITLES = [
    "Amazon Basics AA Rechargeable Batteries, 8-Pack",
    "Women's Running Shoes - Lightweight Mesh Sneakers",
    "Stainless Steel Water Bottle 32 oz",
    "Lamp",
]


def test_queries_are_runs_of_title_words_lower_cased() -> None:
    words = {w.strip(",").lower() for title in TITLES for w in title.split()}
    for query in pseudo_queries(TITLES, 20, seed=1):
        parts = query.split()
        assert 2 <= len(parts) <= 5
        assert query == query.lower()
        assert set(parts) <= words | {"8-pack"}
        flat = [title.lower().replace(",", "").replace(" -", "") for title in TITLES]
        assert any(f" {query} " in f" {title} " for title in flat)


def test_queries_are_unique_and_deterministic() -> None:
    first = pseudo_queries(TITLES, 15, seed=7)
    assert len(first) == len(set(first))
    assert first == pseudo_queries(TITLES, 15, seed=7)
    assert first != pseudo_queries(TITLES, 15, seed=8)


def test_one_word_titles_are_skipped_and_small_catalogs_give_fewer() -> None:
    assert pseudo_queries(["Lamp", "Chair"], 5, seed=0) == []
    few = pseudo_queries(["Red Lamp"], 5, seed=0)
    assert few == ["red lamp"]
