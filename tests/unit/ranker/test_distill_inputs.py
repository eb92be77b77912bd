"""Distillation inputs: pseudo-queries cut from product titles, and teacher targets."""

from __future__ import annotations

from ranker.compress.distill import TeacherPair, pseudo_queries

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


def test_a_student_that_keeps_the_prior_learns_only_the_rest() -> None:
    pair = TeacherPair("q1", "red lamp", "p1", score=3.5, prior=2.0)
    assert pair.target(keep_prior=True) == 1.5
    assert pair.offset(keep_prior=True) == 2.0
    assert pair.target(keep_prior=False) == 3.5
    assert pair.offset(keep_prior=False) == 0.0
