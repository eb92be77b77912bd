"""Retrieved, unjudged products as weak negatives for fine-tuning.

A shop's judgments are pooled from its own search results: a few products per query, and
most of any system's top 10 is unjudged. A model trained on judged products alone never sees
the rest of the catalog and learns to promote it. Here each training query's retrieval top
``depth`` (the shop's index, the served retrieval mode) minus its judged products is the pool
that weak negatives are drawn from. Some of them are relevant; a weak target (gain 0 by
default, or a small one) and a few per query keep that noise small.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

from indexer.progress import progress_bar
from ranker.evaluation.judgments import Judgments
from ranker.pipeline import SearchPipeline


def retrieved_unjudged(
    pipeline: SearchPipeline,
    judgments: Judgments,
    *,
    depth: int,
    qids: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, list[str]]:
    """qid -> the products retrieval ranks in its top ``depth`` that are not judged for that
    query, best first (the served retrieval mode; no reranking)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    chosen = list(qids) if qids is not None else list(judgments.queries)
    pools: dict[str, list[str]] = {}
    for qid in progress_bar(chosen, desc="retrieving negatives", disable=not progress):
        judged = judgments.qrels[qid]
        hits = pipeline.retrieve(judgments.queries[qid], k=depth)
        pools[qid] = [hit.product_id for hit in hits if hit.product_id not in judged]
    return pools


def sample_unjudged(
    pools: Mapping[str, Sequence[str]], *, count: int, seed: int
) -> dict[str, list[str]]:
    """Up to ``count`` products drawn from each query's pool, in pool order.

    The draw for a query depends only on its pool, ``seed`` and its id, so a fold of
    cross-validation draws what the full run draws for the same query.
    """
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    sampled: dict[str, list[str]] = {}
    for qid, pool in pools.items():
        if len(pool) <= count:
            sampled[qid] = list(pool)
            continue
        digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
        picked = set(random.Random(digest).sample(range(len(pool)), count))
        sampled[qid] = [pid for index, pid in enumerate(pool) if index in picked]
    return sampled
