"""How a reranker variant is measured: NDCG@10 per query on the rerank task, rerank-50
timings, and its size on disk."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ranker.compress.records import RERANK_DEPTH, Variant
from ranker.compress.timing import time_calls
from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import ndcg_at_k, ranked_ids
from ranker.reranker import Reranker


def rerank_cases(
    judgments: Judgments, texts: Mapping[str, str], depth: int = RERANK_DEPTH
) -> list[tuple[str, list[str]]]:
    """Each judged query with up to ``depth`` of its judged products' texts."""
    return [
        (query, [texts[pid] for pid in judgments.qrels[qid] if pid in texts][:depth])
        for qid, query in judgments.queries.items()
    ]


def per_query_ndcg(
    score: Callable[[str, Sequence[str]], Any],
    judgments: Judgments,
    qids: Sequence[str],
    texts: Mapping[str, str],
) -> dict[str, float]:
    """qid -> NDCG@10 of ``score(qid, product_ids)`` over the query's judged products."""
    values = {}
    for qid in qids:
        ids = [pid for pid in judgments.qrels[qid] if pid in texts]
        scores = np.asarray(score(qid, ids), dtype=np.float64)
        values[qid] = ndcg_at_k(
            ranked_ids(dict(zip(ids, scores.tolist(), strict=True))), judgments.qrels[qid], k=10
        )
    return values


def mean(values: Mapping[str, float]) -> float:
    """The mean of a per-query figure; 0 for none."""
    return float(np.mean(list(values.values()))) if values else 0.0


def time_variant(
    variant: Variant,
    reranker: Reranker,
    cases: Sequence[tuple[str, list[str]]],
    *,
    repeats: int,
    cv_ndcg: float | None,
) -> Variant:
    """Fill ``variant``'s rerank timings (one case per call), its figure and its size."""

    def call(i: int) -> object:
        query, documents = cases[i % len(cases)]
        return reranker.score(query, documents)

    timing = time_calls(call, repeats=repeats)
    variant.p50_ms, variant.p99_ms = timing.p50_ms, timing.p99_ms
    mean_docs = float(np.mean([len(documents) for _, documents in cases]))
    variant.pairs_per_s = mean_docs / timing.mean_ms * 1e3
    variant.cv_ndcg = cv_ndcg
    if variant.path is not None:
        variant.size_mb = size_mb(Path(variant.path))
    return variant


def model_layers(model_dir: Path) -> int:
    """The transformer layers ``config.json`` records."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config.get("num_hidden_layers", 0))


def size_mb(path: Path) -> float:
    """MiB of weight files (ONNX graphs, safetensors, bin) under ``path``."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".onnx", ".safetensors", ".bin")]
    return sum(p.stat().st_size for p in weights) / 2**20
