"""The backend of a prior-only reranker: there is no cross-encoder to run.

It stands where a scoring backend stands, so warm-up, health checks and ``/info`` treat a
prior-only reranker like any other, but it is never asked to score: the reranker skips its
tokenize and infer stages (see :class:`ranker.reranker.Reranker`).
"""

from __future__ import annotations

import numpy as np

from ranker.backends.base import FloatArray, ModelTask, TokenBatch


class NoCrossEncoder:
    """A scoring backend whose cross-encoder term is 0 for every pair."""

    name = "none"
    device = "cpu"
    dtype = "none"
    task = ModelTask.SCORE

    def infer(self, batch: TokenBatch) -> FloatArray:
        """Zeros, one per row: a prior-only reranker adds nothing to its prior."""
        return np.zeros(batch.input_ids.shape[0], dtype=np.float32)

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        """Nothing to warm up."""
        return 0.0

    def health(self) -> bool:
        """Always able to serve."""
        return True
