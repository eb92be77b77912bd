"""Runs of the pipeline's systems on judged queries, for both ESCI tasks.

- Retrieval task: search the whole index; the top ``depth`` products form the run.
- Rerank task: order each query's judged products. A system does this by searching with
  an id filter holding exactly those products, so the same code serves both tasks and
  ``shoprank run --candidates``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from indexer.progress import progress_bar
from indexer.stores.base import SearchFilter
from ranker.evaluation.metrics import Run
from ranker.pipeline import RetrievalMode, SearchPipeline

logger = logging.getLogger(__name__)

Task = Literal["rerank", "retrieval"]


@dataclass(frozen=True)
class System:
    """A retrieval mode, with or without the cross-encoder on top."""

    name: str
    mode: RetrievalMode
    rerank: bool


BASELINE_SYSTEMS = (
    System("BM25", "lexical", rerank=False),
    System("dense", "dense", rerank=False),
    System("hybrid (RRF)", "hybrid", rerank=False),
)
RERANKED_SYSTEM = System("hybrid + rerank", "hybrid", rerank=True)
PRIOR_ALONE_SYSTEM = System("hybrid + prior alone", "hybrid", rerank=True)
"""The reranker's dense prior without its cross-encoder (see ``Reranker.prior_alone``)."""
PRIOR_ALONE = ", prior alone"
"""The suffix of a result key (``"rerank, prior alone"``) scored by the prior alone."""


def system_run(
    pipeline: SearchPipeline,
    system: System,
    queries: Mapping[str, str],
    *,
    task: Task,
    candidates: Mapping[str, Sequence[str]] | None = None,
    depth: int = 100,
    rerank_depth: int | None = None,
    progress: bool = False,
) -> Run:
    """One run of ``system``: ``{qid: {product_id: score}}``.

    For the rerank task ``candidates`` gives each query's products; candidates the index
    lacks are appended below the scored ones, in the given order.
    """
    run: Run = {}
    items: Iterable[tuple[str, str]] = queries.items()
    for qid, query in progress_bar(
        items, desc=system.name, disable=not progress, total=len(queries)
    ):
        if task == "rerank":
            if candidates is None:
                raise ValueError("the rerank task needs candidates")
            wanted = list(dict.fromkeys(candidates.get(qid, ())))
            if not wanted:
                run[qid] = {}
                continue
            outcome = pipeline.search(
                query,
                k=len(wanted),
                mode=system.mode,
                search_filter=SearchFilter(product_ids=frozenset(wanted)),
                rerank=system.rerank,
                rerank_depth=rerank_depth or max(len(wanted), pipeline.rerank_settings.depth),
                correct_spelling=False,  # as /v1/rerank: the given products, the query as typed
            )
            scores = {r.product.id: r.score for r in outcome.results}
            floor = min(scores.values(), default=0.0) - 1.0
            for position, product_id in enumerate(p for p in wanted if p not in scores):
                scores[product_id] = floor - position * 1e-3
            run[qid] = scores
        else:
            outcome = pipeline.search(
                query, k=depth, mode=system.mode, rerank=system.rerank, rerank_depth=rerank_depth
            )
            run[qid] = {r.product.id: r.score for r in outcome.results}
    return run
