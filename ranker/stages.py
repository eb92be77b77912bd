"""The encoders' stages: ``prepare`` (tokenize, on the caller's CPU thread), ``infer`` (the
backend, on prepared inputs of one or many requests at once) and ``finish`` (per request).

:class:`PreparedTokens` is what ``prepare`` hands on: one request's token ids, unpadded,
with the counts a scheduler batches by (:attr:`~PreparedTokens.padded_tokens` counts
padding). :func:`run_prepared` is the ``infer`` stage of both encoders: the rows of every
input, longest first, in dynamically padded micro-batches, the outputs split back per input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tokenizers import Encoding

from ranker.backends.base import Backend, FloatArray, TokenBatch, run_batch
from ranker.tokenization import length_sorted_batches

IntVector = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class PreparedTokens:
    """One request's rows of token ids (special tokens included), not padded yet."""

    ids: tuple[IntVector, ...]
    type_ids: tuple[IntVector, ...]
    pad_id: int

    @classmethod
    def from_encodings(cls, encodings: Sequence[Encoding], *, pad_id: int) -> PreparedTokens:
        """The rows of ``encodings``, as int64 arrays."""
        return cls(
            ids=tuple(np.asarray(e.ids, dtype=np.int64) for e in encodings),
            type_ids=tuple(np.asarray(e.type_ids, dtype=np.int64) for e in encodings),
            pad_id=pad_id,
        )

    @property
    def rows(self) -> int:
        """How many sequences (texts or pairs)."""
        return len(self.ids)

    @property
    def longest(self) -> int:
        """The longest row, in tokens (0 without rows)."""
        return max((len(row) for row in self.ids), default=0)

    @property
    def tokens(self) -> int:
        """Real tokens, padding not counted."""
        return sum(len(row) for row in self.ids)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(rows, longest)``: the shape the rows take padded together."""
        return self.rows, self.longest

    @property
    def padded_tokens(self) -> int:
        """``rows * longest``: the tokens the rows cost padded together."""
        return self.rows * self.longest


def pad_rows(rows: Sequence[tuple[IntVector, IntVector]], *, pad_id: int) -> TokenBatch:
    """Pad ``(ids, type_ids)`` rows to their own longest (dynamic padding)."""
    width = max(len(ids) for ids, _ in rows)
    shape = (len(rows), width)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    attention_mask = np.zeros(shape, dtype=np.int64)
    token_type_ids = np.zeros(shape, dtype=np.int64)
    for row, (ids, type_ids) in enumerate(rows):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        token_type_ids[row, : len(ids)] = type_ids
    return TokenBatch(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
    )


def run_prepared(
    backend: Backend,
    inputs: Sequence[PreparedTokens],
    *,
    batch_size: int,
    on_rows: Callable[[int], object] | None = None,
) -> list[FloatArray]:
    """The ``infer`` stage: every input's rows through ``backend``, one output per input.

    The rows of all inputs are sorted by length and run in micro-batches of at most
    ``batch_size`` rows, each padded to its own longest, so inputs that share a batch only
    share its padding. Output ``i`` has one row (score or vector) per row of ``inputs[i]``.
    ``on_rows`` is told how many rows each micro-batch ran (a progress bar). A backend that
    fails raises :class:`~ranker.backends.base.InferenceError` (see
    :func:`~ranker.backends.base.run_batch`).
    """
    rows = [
        (ids, types)
        for prepared in inputs
        for ids, types in zip(prepared.ids, prepared.type_ids, strict=True)
    ]
    counts = [prepared.rows for prepared in inputs]
    if not rows:
        return [np.zeros(0, dtype=np.float32) for _ in inputs]
    pad_id = inputs[0].pad_id
    output: FloatArray | None = None
    for indices in length_sorted_batches([len(ids) for ids, _ in rows], batch_size):
        result = run_batch(backend, pad_rows([rows[i] for i in indices], pad_id=pad_id))
        if output is None:
            output = np.zeros((len(rows), *result.shape[1:]), dtype=np.float32)
        output[indices] = result
        if on_rows is not None:
            on_rows(len(indices))
    if output is None:  # pragma: no cover - rows is not empty, so a batch ran
        raise RuntimeError("no micro-batch ran")
    return list(np.split(output, np.cumsum(counts)[:-1]))
