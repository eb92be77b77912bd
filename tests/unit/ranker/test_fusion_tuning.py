"""Fusion tuned by k-fold cross-validation by query, on synthetic retrieved lists."""

from __future__ import annotations

from typing import Any

import pytest

from indexer.stores.base import Hit
from ranker.evaluation.judgments import Judgments
from ranker.fusion_tuning import (
    GridPoint,
    RetrievedLists,
    choose_by_cross_validation,
    fused_run,
    tune,
    tune_fusion_grid,
    tuning_report,
)
from ranker.settings import RetrievalSettings

QIDS = [f"q{i}" for i in range(12)]


def hits(*product_ids: str) -> list[Hit]:
    return [Hit(pid, 1.0 / rank) for rank, pid in enumerate(product_ids, start=1)]


def judgments() -> Judgments:
    """Each query has one relevant product, ``r<qid>`` (gain 2)."""
    qrels = {qid: {f"r{qid}": 2.0} for qid in QIDS}
    return Judgments(
        queries={qid: f"query {qid}" for qid in QIDS},
        qrels=qrels,
        labels={qid: {pid: str(g) for pid, g in judged.items()} for qid, judged in qrels.items()},
    )


def lexical_knows_best() -> RetrievedLists:
    """Lexical ranks the relevant product first; dense ranks it fifth, after noise that
    lexical also ranks second to fifth."""
    dense, lexical = {}, {}
    for qid in QIDS:
        noise = [f"n{qid}-{i}" for i in range(4)]
        dense[qid] = hits(*noise, f"r{qid}")
        lexical[qid] = hits(f"r{qid}", *noise)
    return RetrievedLists(dense, lexical)


def test_fused_run_is_serving_rrf() -> None:
    lists = lexical_knows_best()
    run = fused_run(lists, GridPoint(rrf_k=60, dense_weight=0.0))
    assert max(run["q0"], key=lambda pid: run["q0"][pid]) == "rq0"
    assert run["q0"]["rq0"] == pytest.approx(1 / 61)


def test_the_grid_prefers_the_retriever_that_ranks_relevant_products_first() -> None:
    grid = [GridPoint(60, 1.0), GridPoint(60, 0.5), GridPoint(10, 0.0)]
    result, points = tune_fusion_grid(lexical_knows_best(), judgments(), grid, folds=3, seed=1)
    assert points[result.chosen] == GridPoint(10, 0.0)
    assert result.mean(result.chosen) == pytest.approx(1.0)
    assert result.cross_validated == pytest.approx(1.0)
    assert result.fold_choices == [result.chosen] * 3
    # Equal weights put the relevant product behind noise ranked 1st by dense, 2nd by lexical.
    assert result.mean(GridPoint(60, 1.0).label()) < 1.0


def test_cross_validation_scores_each_query_with_the_choice_made_without_it() -> None:
    # Option A is perfect on the first half of the queries, B on the second half.
    first = set(QIDS[:6])
    per_query = {
        "A": {q: 1.0 if q in first else 0.0 for q in QIDS},
        "B": {q: 0.0 if q in first else 0.9 for q in QIDS},
    }
    result = choose_by_cross_validation(per_query, folds=4, seed=3)
    assert result.chosen == "A"  # 0.5 over all queries against 0.45
    # Each held-out query scores what the option chosen on the other folds gives it, so the
    # figure is below the best option's in-sample mean whenever the folds disagree.
    assert len(result.fold_test_means) == 4
    assert result.cross_validated <= max(result.mean("A"), result.mean("B"))
    assert set(result.fold_choices) <= {"A", "B"}


def test_ties_go_to_the_earlier_option() -> None:
    per_query = {"first": dict.fromkeys(QIDS, 0.5), "second": dict.fromkeys(QIDS, 0.5)}
    result = choose_by_cross_validation(per_query, folds=2, seed=0)
    assert result.chosen == "first"
    assert result.fold_choices == ["first", "first"]


def test_options_must_share_their_queries() -> None:
    with pytest.raises(ValueError, match="same queries"):
        choose_by_cross_validation({"a": {"q1": 1.0}, "b": {"q2": 1.0}}, folds=2, seed=0)
    with pytest.raises(ValueError, match="no options"):
        choose_by_cross_validation({}, folds=2, seed=0)


class ListsPipeline:
    """Just what tuning asks of a pipeline, over fixed lists; no reranker."""

    def __init__(self, lists: RetrievedLists) -> None:
        self.lists = lists
        self.retrieval = RetrievalSettings()
        self.reranker = None
        self.by_query = {f"query {qid}": qid for qid in QIDS}

    def retrieve(self, query: str, *, k: int, mode: str, **_: Any) -> list[Hit]:
        qid = self.by_query[query]
        return (self.lists.dense if mode == "dense" else self.lists.lexical)[qid][:k]


def test_tune_scores_the_served_setting_and_writes_the_winner() -> None:
    pipeline = ListsPipeline(lexical_knows_best())
    grid = [GridPoint(20, 0.0), GridPoint(20, 0.5)]
    tuning = tune(pipeline, judgments(), grid, depths=(10, 20), folds=3)  # type: ignore[arg-type]
    assert tuning.default == GridPoint(60, 1.0, 1.0)
    assert tuning.default.label() in tuning.fusion.options
    assert (tuning.tuned.rrf_k, tuning.tuned.dense_weight) == (20, 0.0)
    assert tuning.tuned.rerank_depth is None  # no reranker: the depth is left alone
    assert tuning.tuned.tuning["fusion_cv"] == pytest.approx(1.0)
    assert tuning.tuned.tuning["served_all_queries"] < 1.0
    report = tuning_report(tuning)
    assert "| **k 20, dense 0, lexical 1** | 1.0000 |" in report
    assert "k 60, dense 1, lexical 1 (served)" in report
    assert "3-fold CV by query" in report
    assert "Written: RRF k 20, dense weight 0, lexical weight 1." in report
