"""CUDA graphs for the torch backend: one captured graph per padded batch shape, replayed.

A captured graph replays a whole forward pass as one launch, which removes the per-kernel
launch cost that dominates small batches of a small model on a fast GPU. A graph runs one
fixed shape, so each batch is padded up to a bucket: rows to the next of
:data:`ROW_BUCKETS` (beyond the largest, the batch runs eagerly), columns to a multiple of
:data:`COLUMN_STEP`. Padding columns are masked out as usual; padding rows attend to their
first position only, so they stay finite, and are dropped from the output. Graphs share one
memory pool and are captured on first use of a shape (at most
``len(ROW_BUCKETS) * max_length / COLUMN_STEP`` of them).

Needs a CUDA device; the torch backend refuses the option on the CPU, and backend selection
drops it with a logged reason where no GPU is present.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ranker.backends.base import TokenBatch

logger = logging.getLogger(__name__)

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
COLUMN_STEP = 16
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""The model's forward pass on named input tensors, returning the final output tensor."""


def bucket_shape(rows: int, columns: int) -> tuple[int, int] | None:
    """The padded ``(rows, columns)`` a batch runs at; None beyond the largest row bucket."""
    if rows < 1 or columns < 1:
        raise ValueError(f"an empty batch has no bucket: {rows} x {columns}")
    padded_rows = next((bucket for bucket in ROW_BUCKETS if bucket >= rows), None)
    if padded_rows is None:
        return None
    return padded_rows, -(-columns // COLUMN_STEP) * COLUMN_STEP


def pad_batch_to(batch: TokenBatch, rows: int, columns: int) -> TokenBatch:
    """``batch`` padded with [PAD] (id 0) to ``(rows, columns)``: padding columns masked
    out, padding rows attending to their first position only."""
    have_rows, have_columns = batch.shape
    if rows < have_rows or columns < have_columns:
        raise ValueError(f"cannot pad {batch.shape} down to {(rows, columns)}")

    def padded(array: np.ndarray) -> np.ndarray:
        out = np.zeros((rows, columns), dtype=np.int64)
        out[:have_rows, :have_columns] = array
        return out

    attention_mask = padded(batch.attention_mask)
    attention_mask[have_rows:, 0] = 1
    return TokenBatch(
        input_ids=padded(batch.input_ids),
        attention_mask=attention_mask,
        token_type_ids=padded(batch.token_type_ids),
    )


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


class CudaGraphRunner:
    """Runs ``forward`` through captured CUDA graphs, one per bucketed shape."""

    def __init__(self, forward: Forward, *, device: str) -> None:
        if not device.startswith("cuda") or not torch.cuda.is_available():
            raise ValueError(f"CUDA graphs need a CUDA device, not {device!r}")
        self._forward = forward
        self._device = torch.device(device)
        self._graphs: dict[tuple[int, int], _Captured] = {}
        self._pool = torch.cuda.graph_pool_handle()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._graphs)

    def run(self, batch: TokenBatch) -> torch.Tensor | None:
        """The output rows of ``batch`` (on the GPU), or None when it has no bucket."""
        shape = bucket_shape(*batch.shape)
        if shape is None:
            return None
        padded = pad_batch_to(batch, *shape)
        with self._lock:  # the static input and output tensors are shared by every caller
            captured = self._graphs.get(shape) or self._capture(shape)
            for name in INPUT_NAMES:
                captured.inputs[name].copy_(torch.from_numpy(getattr(padded, name)))
            captured.graph.replay()
            return captured.output[: batch.shape[0]].clone()

    def _capture(self, shape: tuple[int, int]) -> _Captured:
        inputs = {
            name: torch.zeros(shape, dtype=torch.long, device=self._device) for name in INPUT_NAMES
        }
        inputs["attention_mask"].fill_(1)
        # Warm up on a side stream first, as torch.cuda.graph's documentation asks.
        side = torch.cuda.Stream(device=self._device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):
                self._forward(inputs)
        torch.cuda.current_stream(self._device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self._pool):
            output = self._forward(inputs)
        captured = _Captured(graph=graph, inputs=inputs, output=output)
        self._graphs[shape] = captured
        logger.info("captured a CUDA graph for %s (%d so far)", shape, len(self._graphs))
        return captured
