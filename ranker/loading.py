"""Builds the serving components from settings: embedder, reranker, index, pipeline."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from indexer.catalog import TextTemplate, load_products
from indexer.jobs import build_index, open_index
from ranker.embedder import Embedder
from ranker.model_files import (
    ONNX_MODEL_NAME,
    SHIPPED_RERANKER,
    SHIPPED_STUDENT,
    ModelNotFoundError,
    read_manifest,
    resolve_model_dir,
    shipped_model_dir,
    weights_sha256,
)
from ranker.pipeline import SearchPipeline
from ranker.reranker import Reranker
from ranker.settings import EmbedderSettings, RerankSettings, Settings

logger = logging.getLogger(__name__)

TRAINED_RERANKER_DIR = "reranker"
"""Where `shoprank train` puts the reranker inside the models directory."""
COMPRESSED_RERANKER_DIR = "reranker-compressed"
"""Where `shoprank compress` puts the student that passed its gate."""
COMPRESSED_EMBEDDER_DIR = "embedder-compressed"
"""Where `shoprank compress` puts the bi-encoder variant that passed its gate."""


def embedder_dir(settings: Settings) -> Path:
    """The bi-encoder to serve: the settings' model, or its variant that `shoprank compress`
    gated (an ONNX export) when ``embedder.compressed`` and the backend setting allow it."""
    configured = resolve_model_dir(settings.embedder.model)
    if not settings.embedder.compressed or settings.embedder.backend not in ("auto", "onnx"):
        return configured
    compressed = settings.models_path / COMPRESSED_EMBEDDER_DIR
    manifest = read_manifest(compressed) if (compressed / "config.json").is_file() else None
    if not manifest or not (manifest.get("gate") or {}).get("passed"):
        return configured
    if weights_sha256(configured) not in manifest.get("derived_from", []):
        logger.warning(
            "ignoring the compressed bi-encoder in %s: it was made from another model than "
            "%s; run `shoprank compress` again",
            compressed,
            configured,
        )
        return configured
    return compressed if _runnable(compressed, "compressed bi-encoder") else configured


def load_embedder(settings: Settings) -> Embedder:
    """The bi-encoder :func:`embedder_dir` picks (all-MiniLM-L6-v2 by default), at the input
    length its gate judged it with unless ``embedder.max_length`` is set."""
    path = embedder_dir(settings)
    return Embedder.load(
        path,
        backend=settings.embedder.backend,
        max_length=_max_length(settings.embedder, _serving_manifest(path)),
        batch_size=settings.embedder.batch_size,
        backend_config=settings.backends,
    )


def reranker_dir(settings: Settings) -> Path:
    """The reranker to serve.

    The setting if given; else the teacher (one trained here, else the shipped one), or the
    compressed student of that teacher when `shoprank compress` gated one and
    ``rerank.compressed`` allows it.
    """
    if settings.rerank.model is not None:
        return Path(settings.rerank.model)
    teacher = teacher_dir(settings)
    if settings.rerank.compressed:
        compressed_here = settings.models_path / COMPRESSED_RERANKER_DIR
        if _is_gated_student_of(compressed_here, teacher):
            return compressed_here
        shipped = shipped_model_dir(SHIPPED_STUDENT)
        if _is_gated_student_of(shipped, teacher, quiet=True):
            return shipped
    return teacher


def teacher_dir(settings: Settings) -> Path:
    """The uncompressed reranker: one trained here, else the shipped one."""
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


def _is_gated_student_of(student: Path, teacher: Path, *, quiet: bool = False) -> bool:
    """A compressed directory that passed the gate against this very teacher, and can run.

    ``quiet``: a mismatch is expected (the shipped student of the shipped teacher, while a
    teacher trained here serves), so it is not worth a warning.
    """
    manifest = read_manifest(student) if (student / "config.json").is_file() else None
    if not manifest or not (manifest.get("gate") or {}).get("passed"):
        return False
    distilled_from = (manifest.get("distilled_from") or {}).get("weights_sha256")
    if distilled_from != weights_sha256(teacher):
        if quiet:
            return False
        logger.warning(
            "ignoring the compressed reranker in %s: it was distilled from another teacher "
            "than %s; run `shoprank compress` again",
            student,
            teacher,
        )
        return False
    return _runnable(student, "compressed reranker")


def _runnable(model_dir: Path, what: str) -> bool:
    """False, with a warning, for an ONNX export when onnxruntime is not installed."""
    if (model_dir / ONNX_MODEL_NAME).is_file() and importlib.util.find_spec("onnxruntime") is None:
        logger.warning(
            "ignoring the %s in %s: it needs onnxruntime (pip install 'shoprank[onnx]')",
            what,
            model_dir,
        )
        return False
    return True


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


def load_reranker(settings: Settings, *, embedder: Embedder | None = None) -> Reranker:
    """The cross-encoder that :func:`reranker_dir` picks (``embedder`` feeds a dense prior)."""
    path = reranker_dir(settings)
    max_length, max_query_tokens = _serving_lengths(settings, path)
    reranker = Reranker.load(
        path,
        backend=settings.rerank.backend,
        max_length=max_length,
        batch_size=settings.rerank.batch_size,
        max_query_tokens=max_query_tokens,
        embedder=embedder,
        token_cache_size=settings.rerank.token_cache_size,
        prior_cache_size=settings.rerank.prior_cache_size,
        backend_config=settings.backends,
    )
    logger.info("reranker %s from %s", reranker.model_id, path)
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
    """The pipeline on the embedded FAISS + SQLite index in ``settings.index_path``."""
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


def open_opensearch_pipeline(
    settings: Settings, *, embedder: Embedder, reranker: Reranker | None
) -> SearchPipeline:
    """The pipeline on the OpenSearch index behind ``settings.opensearch.index_alias``."""
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
