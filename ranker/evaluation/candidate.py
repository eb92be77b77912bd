"""The evaluate job: the figures the promotion gate compares, measured on this machine.

For a reranker candidate it times rerank-50 (each judged query's judged products, up to 50,
caches cold) with the bi-encoder that serves, and records it as ``rerank50_p50_ms``. As
serving does, the dense prior reads the indexed products' vectors by their text when the
index holds them (``latency_basis`` says whether it did). When
production has no NDCG@10 on the candidate's judgments yet, it scores production as it
serves on them (the rerank task) and records the figure in production's ``on_judgments``, so
the gate compares both on the same queries. That figure is in-sample for queries production
was trained on, which favours production: the gate errs towards keeping what serves.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from indexer.catalog import CatalogInput
from ranker.compress.measure import mean, per_query_ndcg, rerank_cases
from ranker.compress.timing import time_calls
from ranker.evaluation.judgment_files import JudgmentsInput
from ranker.promotion import (
    BASIS,
    JUDGMENTS,
    LATENCY,
    NDCG,
    ON_JUDGMENTS,
    production_figure,
)
from ranker.registry import ModelVersion, Registry
from ranker.settings import Settings

if TYPE_CHECKING:
    from ranker.embedder import Embedder
    from ranker.pipeline import SearchPipeline
    from ranker.reranker import Reranker
    from ranker.training.jobs import TrainingData

logger = logging.getLogger(__name__)

Scorer = Callable[[str, Sequence[str]], Any]


def evaluate_candidate(
    settings: Settings,
    role: str,
    version: str,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    repeats: int = 30,
    embedder_loader: Callable[[], Embedder] | None = None,
) -> dict[str, Any]:
    """Measure what the gate needs for ``role/version`` and record it in the registry.

    Returns the figures: the candidate's latency (rerankers), its NDCG@10 and production's
    on these judgments. ``embedder_loader`` returns the bi-encoder that serves (a worker's
    cached one); None: it is loaded here.
    """
    from ranker.serving_models import open_registry
    from ranker.training.jobs import load_training_data

    registry = open_registry(settings)
    candidate = registry.verify(role, version)
    data = load_training_data(settings, judgments=judgments, catalog=catalog)
    production = registry.production(role)
    result: dict[str, Any] = {"candidate": candidate.ref, JUDGMENTS: data.sha256}
    if candidate.role != "reranker":
        result["note"] = "bi-encoder candidates are judged by their own job's figures"
        return result
    if embedder_loader is None:
        from ranker.loading import load_embedder

        embedder = load_embedder(settings)
    else:
        embedder = embedder_loader()
    scorers = _RerankScorers(settings, embedder, _index(settings, embedder))
    reranker = scorers.load(candidate)
    score = reranker.score
    cases = rerank_cases(data.judgments, data.product_texts)

    def call(i: int) -> object:
        query, documents = cases[i % len(cases)]
        return score(query, documents)

    latency = time_calls(call, repeats=repeats).p50_ms
    metrics = {
        **candidate.metrics,
        LATENCY: latency,
        "latency_host": socket.gethostname(),
        "latency_basis": scorers.latency_basis(reranker),
    }
    if candidate.metrics.get(JUDGMENTS) != data.sha256:
        _record_on_judgments(metrics, data.sha256, score, data)
    registry.update(role, version, metrics=metrics)
    result[LATENCY] = latency
    own = metrics.get(JUDGMENTS) == data.sha256
    result["candidate_ndcg@10"] = (
        metrics.get(NDCG) if own else metrics[ON_JUDGMENTS][data.sha256][NDCG]
    )
    if production is not None and production.version != candidate.version:
        figure = production_figure(production, data.sha256)
        if figure is None:
            figure = _score_production(registry, production, scorers, data)
        result["production"] = production.ref
        result["production_ndcg@10"] = figure
    logger.info("evaluated %s: %s", candidate.ref, result)
    return result


def _index(settings: Settings, embedder: Embedder) -> SearchPipeline | None:
    """The index as serving opens it, for the priors to read its vectors; None without an
    index this bi-encoder can search."""
    from indexer.stores.base import StoreError
    from ranker.loading import open_pipeline

    try:
        return open_pipeline(settings, embedder=embedder, reranker=None)
    except StoreError as exc:
        logger.warning("timing with the prior embedding every product: %s", exc)
        return None


class _RerankScorers:
    """Rerankers loaded as serving loads them, sharing one bi-encoder for their priors, which
    read the index's product vectors (``index``) where they fit, as serving's do."""

    def __init__(self, settings: Settings, embedder: Embedder, index: SearchPipeline | None):
        self.settings = settings
        self.embedder = embedder
        self.index = index

    def load(self, version: ModelVersion) -> Reranker:
        """``version`` as serving loads it."""
        from ranker.loading import load_reranker
        from ranker.serving_models import ModelSource

        reranker = load_reranker(
            self.settings, embedder=self.embedder, source=ModelSource(version.path, version)
        )
        if self.index is not None:
            reranker.read_prior_vectors_from(self.index.with_reranker(reranker).catalog_vectors())
        return reranker

    def for_version(self, version: ModelVersion) -> Scorer:
        """``version``'s scores for a query and texts."""
        return self.load(version).score

    def latency_basis(self, reranker: Reranker) -> str:
        """How ``reranker``'s timed calls got the products' vectors for its dense prior."""
        if reranker.prior is None:
            return "rerank-50 (no dense prior)"
        if reranker.prior.catalog is None:
            return "rerank-50, the dense prior embedding every product"
        return "rerank-50 of indexed products, the dense prior reading their vectors (as /search)"


def _record_on_judgments(
    metrics: dict[str, Any], sha256: str, score: Scorer, data: TrainingData
) -> float:
    def by_ids(qid: str, ids: Sequence[str]) -> Any:
        return score(data.judgments.queries[qid], [data.product_texts[pid] for pid in ids])

    figure = mean(
        per_query_ndcg(by_ids, data.judgments, list(data.judgments.queries), data.product_texts)
    )
    metrics[ON_JUDGMENTS] = {
        **(metrics.get(ON_JUDGMENTS) or {}),
        sha256: {NDCG: figure, BASIS: "scored as it serves (rerank task), not cross-validated"},
    }
    return figure


def _score_production(
    registry: Registry, production: ModelVersion, scorers: _RerankScorers, data: TrainingData
) -> float:
    metrics = dict(production.metrics)
    figure = _record_on_judgments(metrics, data.sha256, scorers.for_version(production), data)
    registry.update(production.role, production.version, metrics=metrics)
    return figure
