"""Offline evaluation: judgments, ranking metrics, TREC run files and comparison reports."""

from ranker.evaluation.judgments import (
    Judgments,
    kfold_query_splits,
    load_candidates,
    load_judgments,
    load_queries,
)
from ranker.evaluation.metrics import (
    MRR,
    NDCG_AT_10,
    RECALL_AT_100,
    EvalResult,
    Qrels,
    Run,
    dcg,
    evaluate_run,
    mrr,
    ndcg_at_k,
    ranked_ids,
    recall_at_k,
)
from ranker.evaluation.report import SystemResult, markdown_table, text_table, write_report
from ranker.evaluation.trec import read_trec_run, write_trec_run

__all__ = [
    "MRR",
    "NDCG_AT_10",
    "RECALL_AT_100",
    "EvalResult",
    "Judgments",
    "Qrels",
    "Run",
    "SystemResult",
    "dcg",
    "evaluate_run",
    "kfold_query_splits",
    "load_candidates",
    "load_judgments",
    "load_queries",
    "markdown_table",
    "mrr",
    "ndcg_at_k",
    "ranked_ids",
    "read_trec_run",
    "recall_at_k",
    "text_table",
    "write_report",
    "write_trec_run",
]
