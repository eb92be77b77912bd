"""Builds the serving components from settings: embedder, reranker, index, pipeline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from indexer.catalog import TextTemplate, load_products
from indexer.jobs import build_index, open_index
from ranker.embedder import Embedder
from ranker.model_files import SHIPPED_RERANKER, ModelNotFoundError, shipped_model_dir
from ranker.pipeline import SearchPipeline
from ranker.reranker import Reranker
from ranker.settings import Settings

logger = logging.getLogger(__name__)

TRAINED_RERANKER_DIR = "reranker"
"""Where `shoprank train` puts the reranker inside the models directory."""


def load_embedder(settings: Settings) -> Embedder:
    """The bi-encoder that settings name (all-MiniLM-L6-v2 by default)."""
    return Embedder.load(
        settings.embedder.model,
        backend=settings.embedder.backend,
        max_length=settings.embedder.max_length,
        batch_size=settings.embedder.batch_size,
    )


def reranker_dir(settings: Settings) -> Path:
    """The reranker to serve: the setting, else one trained here, else the shipped one."""
    if settings.rerank.model is not None:
        return Path(settings.rerank.model)
    trained = settings.models_path / TRAINED_RERANKER_DIR
    if (trained / "config.json").is_file():
        return trained
    shipped = shipped_model_dir(SHIPPED_RERANKER)
    if (shipped / "config.json").is_file():
        return shipped
    raise ModelNotFoundError(
        f"no reranker: none set (SHOPRANK_RERANK__MODEL), none trained in {trained}, "
        "and none shipped; run `shoprank train`"
    )


def load_reranker(settings: Settings, *, embedder: Embedder | None = None) -> Reranker:
    """The cross-encoder that :func:`reranker_dir` picks (``embedder`` feeds a dense prior)."""
    path = reranker_dir(settings)
    reranker = Reranker.load(
        path,
        backend=settings.rerank.backend,
        max_length=settings.rerank.max_length,
        batch_size=settings.rerank.batch_size,
        max_query_tokens=settings.api.max_query_tokens,
        embedder=embedder,
    )
    logger.info("reranker %s from %s", reranker.model_id, path)
    return reranker


def open_pipeline(
    settings: Settings, *, embedder: Embedder, reranker: Reranker | None
) -> SearchPipeline:
    """Open the index in settings and wire the pipeline around the given models."""
    index = open_index(settings.index_path, expected=embedder.identity)
    if index.template.template != settings.index.text_template:
        logger.warning(
            "the index was built with another text template than the settings give; "
            "using the index's (rebuild with `shoprank index` to change it)"
        )
    return SearchPipeline(
        embedder=embedder,
        vector_store=index.vector_store,
        lexical_index=index.lexical_index,
        product_store=index.product_store,
        template=index.template,
        retrieval=settings.retrieval,
        rerank=settings.rerank,
        reranker=reranker,
    )


def open_serving_pipeline(settings: Settings, *, with_reranker: bool = True) -> SearchPipeline:
    """Load the models settings name and open the index around them."""
    embedder = load_embedder(settings)
    reranker = load_reranker(settings, embedder=embedder) if with_reranker else None
    return open_pipeline(settings, embedder=embedder, reranker=reranker)


def build_default_index(settings: Settings, catalog: Path) -> dict[str, Any]:
    """Full build of ``catalog`` into the settings' index directory."""
    products = load_products(catalog)
    return build_index(
        products,
        settings.index_path,
        embedder=load_embedder(settings),
        template=TextTemplate(settings.index.text_template),
        source=str(catalog),
        hnsw_threshold=settings.index.hnsw_threshold,
        hnsw_m=settings.index.hnsw_m,
        ef_construction=settings.index.hnsw_ef_construction,
        ef_search=settings.index.hnsw_ef_search,
    )
