"""What a search returns between and after its stages: the retrieved candidates (what the
reranker reads of them), the ranked outcome, and the per-stage timer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from indexer.catalog import Product
from indexer.stores.base import FloatMatrix
from ranker.backends.base import FloatArray


@dataclass(frozen=True, slots=True)
class RankedProduct:
    """One result: the product, its final score and how each stage scored it."""

    product: Product
    score: float
    retrieval_score: float
    rerank_score: float | None = None


@dataclass(slots=True)
class Candidates:
    """Retrieved products, best first, before the rerank, and what the reranker reads of
    the head: its texts, their stored vectors and the query's (both for the dense prior,
    None when it cannot use them)."""

    query: str
    """The query as searched and reranked: its misspelled words corrected."""
    k: int
    results: list[RankedProduct]
    texts: list[str]
    """The head's product texts; empty when nothing is to be reranked."""
    document_vectors: FloatMatrix | None = None
    query_vector: FloatArray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    corrected_query: str | None = None
    """The corrected query when spelling correction changed it; else None."""

    def with_head(self, depth: int) -> Candidates:
        """These candidates with only the first ``depth`` of the head left to rerank (0:
        none); the results are unchanged."""
        vectors = self.document_vectors
        return dataclasses.replace(
            self,
            texts=self.texts[:depth],
            document_vectors=vectors[:depth] if vectors is not None else None,
        )


@dataclass(slots=True)
class SearchOutcome:
    """Results, best first, and milliseconds spent per stage."""

    results: list[RankedProduct]
    timings_ms: dict[str, float] = field(default_factory=dict)
    reranked: int = 0
    corrected_query: str | None = None
    """What was searched instead of the query, when spelling correction changed it."""


class StageTimer:
    """Collects per-stage wall times in milliseconds."""

    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = 1e3 * (time.perf_counter() - start)
            self.timings_ms[name] = self.timings_ms.get(name, 0.0) + elapsed
