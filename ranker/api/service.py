"""What the API serves from: the components loaded once at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ranker.embedder import Embedder
from ranker.pipeline import SearchPipeline
from ranker.reranker import Reranker
from ranker.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Service:
    """The loaded components; a missing one makes only its routes answer 503."""

    embedder: Embedder | None
    reranker: Reranker | None
    pipeline: SearchPipeline | None
    problems: list[str]

    @property
    def status(self) -> str:
        """``ok`` when everything loaded, ``degraded`` when some did, else ``unavailable``."""
        loaded = [self.embedder, self.reranker, self.pipeline]
        if all(component is not None for component in loaded):
            return "ok"
        if any(component is not None for component in loaded):
            return "degraded"
        return "unavailable"


def load_service(settings: Settings) -> Service:
    """Load the embedder, the reranker and the index that settings name, once."""
    from ranker.loading import load_embedder, load_reranker, open_pipeline

    problems: list[str] = []
    embedder = reranker = pipeline = None
    try:
        embedder = load_embedder(settings)
    except (OSError, ValueError, RuntimeError) as exc:
        problems.append(f"embedder: {exc}")
    try:
        reranker = load_reranker(settings, embedder=embedder)
    except (OSError, ValueError, RuntimeError) as exc:
        problems.append(f"reranker: {exc}")
    if embedder is not None:
        try:
            pipeline = open_pipeline(settings, embedder=embedder, reranker=reranker)
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"index: {exc}")
    for problem in problems:
        logger.error("not loaded: %s", problem)
    for component in (embedder, reranker):
        if component is not None:
            component.backend.warmup(batch_size=8, seq_len=component.tokenizer.max_length)
    return Service(embedder=embedder, reranker=reranker, pipeline=pipeline, problems=problems)
