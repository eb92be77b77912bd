"""The Backend seam: runs one model on token ids and returns float32 numpy.

Encoders (Embedder, Reranker) own tokenization and batching; a backend only runs the
model. A backend never mutates shared state per call, so one instance serves many threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ranker.errors import ShoprankError

IntMatrix = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class BackendError(ShoprankError, RuntimeError):
    """A backend that cannot be loaded or run; the message says which and why."""


class InferenceError(BackendError):
    """A loaded backend that failed to run a batch (out of memory, a runtime's error); the
    API answers 424."""


class ModelTask(StrEnum):
    """What a model computes."""

    EMBED = "embed"
    """Mean-pooled token embeddings, shape ``(batch, dim)``, not normalized."""
    SCORE = "score"
    """One relevance logit per (query, document) pair, shape ``(batch,)``."""


@dataclass(frozen=True, slots=True)
class TokenBatch:
    """Padded token ids for one micro-batch, each of shape ``(batch, seq_len)``."""

    input_ids: IntMatrix
    attention_mask: IntMatrix
    token_type_ids: IntMatrix

    @property
    def shape(self) -> tuple[int, int]:
        """``(batch, seq_len)``."""
        rows, columns = self.input_ids.shape
        return int(rows), int(columns)


def run_batch(backend: Backend, batch: TokenBatch) -> FloatArray:
    """``backend.infer(batch)``; any failure but a BackendError is raised as InferenceError."""
    try:
        return backend.infer(batch)
    except BackendError:
        raise
    except Exception as exc:  # a runtime's own error types (torch, onnxruntime, TensorRT)
        raise InferenceError(
            f"the {backend.name} backend on {backend.device} failed: {type(exc).__name__}: {exc}"
        ) from exc


def dummy_batch(batch_size: int, seq_len: int) -> TokenBatch:
    """A batch of ``[CLS]`` ids with a full mask, for warm-up runs."""
    shape = (batch_size, seq_len)
    return TokenBatch(
        input_ids=np.full(shape, 101, dtype=np.int64),
        attention_mask=np.ones(shape, dtype=np.int64),
        token_type_ids=np.zeros(shape, dtype=np.int64),
    )


@runtime_checkable
class Backend(Protocol):
    """Runs one exported model."""

    name: str
    """Registry name, e.g. ``torch``."""
    device: str
    """Where it runs, e.g. ``cpu`` or ``cuda:0``."""
    task: ModelTask

    def infer(self, batch: TokenBatch) -> FloatArray:
        """Run the model: ``(batch, dim)`` embeddings or ``(batch,)`` scores, float32."""

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        """Run a dummy batch once; returns its wall time in seconds."""

    def health(self) -> bool:
        """True when the backend can serve."""
