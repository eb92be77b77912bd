"""Builds the serving components: embedder, reranker, index, pipeline. Which model directory
serves is ``ranker.serving_models``'s to say; this module only builds from it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from indexer.catalog import CatalogInput, TextTemplate, catalog_file, load_products
from indexer.jobs import ProductEmbedder, build_index, open_index
from indexer.stores.base import StoreError
from ranker.catalog_vectors import CatalogVectors
from ranker.embedder import Embedder
from ranker.fusion_settings import with_tuned_fusion
from ranker.model_files import read_manifest
from ranker.pipeline import SearchPipeline
from ranker.reranker import Reranker
from ranker.serving_models import (
    LEGACY_COMPRESSED_EMBEDDER,
    LEGACY_COMPRESSED_RERANKER,
    LEGACY_TRAINED_RERANKER,
    ModelSource,
    serving_source,
    teacher_source,
)
from ranker.settings import EmbedderSettings, RerankSettings, Settings
from ranker.spelling import QuerySpeller

logger = logging.getLogger(__name__)

TRAINED_RERANKER_DIR = LEGACY_TRAINED_RERANKER
"""Where `shoprank train` writes its work copy inside the models directory (it registers it)."""
COMPRESSED_RERANKER_DIR = LEGACY_COMPRESSED_RERANKER
"""Where `shoprank compress` installed its student before the registry (read by seeding)."""
COMPRESSED_EMBEDDER_DIR = LEGACY_COMPRESSED_EMBEDDER
"""Where `shoprank compress` installed its bi-encoder variant before the registry."""


def embedder_dir(settings: Settings) -> Path:
    """The bi-encoder directory that serves (see ``ranker.serving_models``)."""
    return serving_source(settings, "embedder").path


def load_embedder(settings: Settings, source: ModelSource | None = None) -> Embedder:
    """The bi-encoder ``source`` names (default: what serves), at the input length its gate
    judged it with unless ``embedder.max_length`` is set."""
    source = source or serving_source(settings, "embedder")
    embedder = Embedder.load(
        source.path,
        backend=settings.embedder.backend,
        max_length=_max_length(settings.embedder, _serving_manifest(source.path)),
        batch_size=settings.embedder.batch_size,
        backend_config=settings.backends,
        query_cache_size=settings.embedder.query_cache_size,
    )
    logger.info("bi-encoder %s from %s", embedder.identity.model_id, source.label)
    return embedder


def reranker_dir(settings: Settings) -> Path:
    """The reranker directory that serves (see ``ranker.serving_models``)."""
    return serving_source(settings, "reranker").path


def teacher_dir(settings: Settings) -> Path:
    """The uncompressed reranker: the explicit one, else the production reranker's source."""
    return teacher_source(settings).path


def uncompressed(settings: Settings) -> Settings:
    """``settings`` with the configured models themselves serving, not their compressed
    variants (what a teacher or a source model is judged with)."""
    return settings.model_copy(
        update={
            "embedder": settings.embedder.model_copy(update={"compressed": False}),
            "rerank": settings.rerank.model_copy(update={"compressed": False}),
        }
    )


def _serving_manifest(model: Path) -> dict[str, Any]:
    """The ``serving`` settings a model's manifest records (those its gate judged it with)."""
    own: dict[str, Any] = (read_manifest(model) or {}).get("serving") or {}
    return own


def _max_length(section: EmbedderSettings | RerankSettings, own: dict[str, Any]) -> int:
    """The section's max_length when set explicitly, else the model's own, else the default."""
    if "max_length" in section.model_fields_set or "max_length" not in own:
        return section.max_length
    return int(own["max_length"])


def _serving_lengths(settings: Settings, model: Path) -> tuple[int, int]:
    """(max_length, max_query_tokens): the settings' when set, else the model's own."""
    own = _serving_manifest(model)
    max_query_tokens = min(settings.api.max_query_tokens, int(own.get("max_query_tokens", 10**6)))
    return _max_length(settings.rerank, own), max_query_tokens


def load_reranker(
    settings: Settings, *, embedder: Embedder | None = None, source: ModelSource | None = None
) -> Reranker:
    """The cross-encoder ``source`` names (default: what serves); ``embedder`` feeds its
    dense prior."""
    source = source or serving_source(settings, "reranker")
    max_length, max_query_tokens = _serving_lengths(settings, source.path)
    reranker = Reranker.load(
        source.path,
        backend=settings.rerank.backend,
        max_length=max_length,
        batch_size=settings.rerank.batch_size,
        max_query_tokens=max_query_tokens,
        embedder=embedder,
        token_cache_size=settings.rerank.token_cache_size,
        prior_cache_size=settings.rerank.prior_cache_size,
        backend_config=settings.backends,
    )
    logger.info("reranker %s from %s", reranker.model_id, source.label)
    return reranker


def open_pipeline(
    settings: Settings, *, embedder: Embedder, reranker: Reranker | None
) -> SearchPipeline:
    """Open the index in settings and wire the pipeline around the given models."""
    if settings.index.backend == "opensearch":
        return open_opensearch_pipeline(settings, embedder=embedder, reranker=reranker)
    return open_embedded_pipeline(settings, embedder=embedder, reranker=reranker)


def open_embedded_pipeline(
    settings: Settings, *, embedder: Embedder, reranker: Reranker | None
) -> SearchPipeline:
    """The pipeline on the embedded FAISS + SQLite index in ``settings.index_path``, with
    the shop's tuned fusion settings (see ``ranker.fusion_settings``)."""
    settings = with_tuned_fusion(settings)
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
        speller=(
            QuerySpeller(
                index.lexical_index.vocabulary(),
                exceptions=settings.retrieval.spelling_exceptions,
            )
            if settings.retrieval.correct_spelling
            else None
        ),
    )


def open_opensearch_pipeline(
    settings: Settings, *, embedder: Embedder, reranker: Reranker | None
) -> SearchPipeline:
    """The pipeline on the OpenSearch index behind ``settings.opensearch.index_alias``, with
    the shop's tuned fusion settings."""
    settings = with_tuned_fusion(settings)
    from indexer.stores.opensearch.store import (
        OpenSearchLexicalIndex,
        OpenSearchProductStore,
        OpenSearchVectorStore,
        open_opensearch_index,
    )

    index = open_opensearch_index(settings.opensearch, expected=embedder.identity)
    return SearchPipeline(
        embedder=embedder,
        vector_store=OpenSearchVectorStore(index),
        lexical_index=OpenSearchLexicalIndex(index),
        product_store=OpenSearchProductStore(index),
        template=index.template,
        retrieval=settings.retrieval,
        rerank=settings.rerank,
        reranker=reranker,
    )


def indexed_vectors(settings: Settings, embedder: Embedder) -> CatalogVectors | None:
    """The embedded index's product vectors, found by text, when it was built with
    ``embedder`` (or what it was exported from); None when there is no such index (or the
    index is OpenSearch's, which cannot list its products): the caller embeds."""
    if settings.index.backend != "embedded":
        return None
    try:
        pipeline = open_embedded_pipeline(settings, embedder=embedder, reranker=None)
    except StoreError as exc:
        logger.info("no index vectors to read (%s); embedding the products", exc)
        return None
    return pipeline.catalog_vectors(embedder)


def open_serving_pipeline(settings: Settings, *, with_reranker: bool = True) -> SearchPipeline:
    """Load the models settings name and open the index around them."""
    embedder = load_embedder(settings)
    reranker = load_reranker(settings, embedder=embedder) if with_reranker else None
    return open_pipeline(settings, embedder=embedder, reranker=reranker)


def build_default_index(
    settings: Settings,
    catalog: CatalogInput,
    *,
    embedder: ProductEmbedder | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Full build of ``catalog`` into the settings' index directory, embedded by ``embedder``
    (default: the bi-encoder that serves). The manifest records the catalog's path as
    ``source`` and a mapping other than the default as ``catalog_mapping``."""
    source = catalog_file(catalog)
    products = load_products(source)
    mapping = source.mapping
    return build_index(
        products,
        settings.index_path,
        embedder=embedder or load_embedder(settings),
        template=TextTemplate(settings.index.text_template),
        source=str(source.path),
        progress=progress,
        extra=None if mapping.is_default else {"catalog_mapping": mapping.model_dump(mode="json")},
        **dense_index_options(settings),
    )


def dense_index_options(settings: Settings) -> dict[str, int]:
    """The FAISS build options the settings choose (``build_index``/``write_index``)."""
    return {
        "hnsw_threshold": settings.index.hnsw_threshold,
        "hnsw_m": settings.index.hnsw_m,
        "ef_construction": settings.index.hnsw_ef_construction,
        "ef_search": settings.index.hnsw_ef_search,
    }
