"""Building the API's :class:`~ranker.api.service.Service` at start-up: the models the
registry serves, the index around them (and the embedded fallback), the prior reading the
index's vectors, warm backends; and rewiring a pipeline around new models on a hot reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from indexer.stores.base import StoreError, StoreUnavailableError
from ranker.api.rerank_budget import RerankCostModel, measure_cost_model
from ranker.api.service import PROBE_TIMEOUT_S, Service
from ranker.batching import SchedulerConfig
from ranker.pipeline import SearchPipeline
from ranker.reranker import Reranker
from ranker.settings import Settings

logger = logging.getLogger(__name__)


def load_service(settings: Settings) -> Service:
    """Load the embedder, the reranker and the index that settings name, once.

    A model the registry serves that fails to verify or load is replaced by the newest
    earlier production version that does (see :mod:`ranker.api.model_loading`); with none,
    its routes answer 503. Either way ``/healthz`` says why.
    """
    from ranker.api.model_loading import load_models
    from ranker.loading import open_embedded_pipeline, open_pipeline

    models = load_models(settings)
    embedder, reranker = models.embedder, models.reranker
    problems: list[str] = []
    pipeline = fallback = None
    reopen: Callable[[], SearchPipeline] | None = None
    probe: Callable[[], str | None] | None = None
    if embedder is not None:
        try:
            pipeline = open_pipeline(settings, embedder=embedder, reranker=reranker)
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"index: {exc}")
            if isinstance(exc, StoreUnavailableError):
                loaded_embedder = embedder

                def reopen_pipeline() -> SearchPipeline:
                    return open_pipeline(settings, embedder=loaded_embedder, reranker=reranker)

                reopen = reopen_pipeline
        if settings.index.backend == "opensearch":
            probe = _opensearch_probe(settings)
            if settings.opensearch.fallback_to_embedded:
                try:
                    fallback = open_embedded_pipeline(
                        settings, embedder=embedder, reranker=reranker
                    )
                except (OSError, ValueError, RuntimeError) as exc:
                    problems.append(f"fallback index: {exc}")
    if reranker is not None and pipeline is not None and settings.rerank.prior_from_index:
        attach_catalog_vectors(reranker, pipeline)
    for problem in [*problems, *models.problems.values()]:
        logger.error("not loaded: %s", problem)
    for component in (embedder, reranker):
        if component is not None:
            component.backend.warmup(batch_size=8, seq_len=component.tokenizer.max_length)
    reranker_cost = measured_cost(reranker) if reranker is not None else None
    return Service(
        embedder=embedder,
        reranker=reranker,
        pipeline=pipeline,
        problems=problems,
        backend=settings.index.backend,
        fallback=fallback,
        reopen=reopen,
        probe=probe,
        embedder_source=models.embedder_source,
        reranker_source=models.reranker_source,
        model_problems=dict(models.problems),
        batching=SchedulerConfig.from_settings(settings.api),
        reranker_cost=reranker_cost,
    )


def measured_cost(reranker: Reranker) -> RerankCostModel | None:
    """The warm ``reranker``'s cost model (see :mod:`ranker.api.rerank_budget`)."""
    return measure_cost_model(reranker.infer, max_length=reranker.tokenizer.max_length)


def attach_catalog_vectors(reranker: Reranker, pipeline: SearchPipeline) -> None:
    """Let the reranker's dense prior read indexed products' vectors by their text."""
    if reranker.prior is None:
        return
    start = time.perf_counter()
    catalog = pipeline.catalog_vectors()
    if catalog is None or not reranker.read_prior_vectors_from(catalog):
        logger.info("the dense prior embeds every product (the index's vectors do not fit it)")
        return
    logger.info(
        "the dense prior reads %d products' vectors from the index (digested in %.1f s)",
        len(catalog),
        time.perf_counter() - start,
    )


def _opensearch_probe(settings: Settings) -> Callable[[], str | None] | None:
    """Says why the configured cluster does not answer (None when it does)."""
    try:
        from indexer.stores.opensearch.client import make_client, unreachable_reason

        client = make_client(settings.opensearch)
    except StoreError as exc:
        reason = str(exc)
        return lambda: reason
    url = settings.opensearch.url

    def probe() -> str | None:
        return unreachable_reason(client, url=url, timeout_s=PROBE_TIMEOUT_S)

    return probe
