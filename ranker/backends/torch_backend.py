"""The torch backend: CPU, or CUDA in fp16/bf16 when a GPU is present, optionally through
CUDA graphs (``ranker.backends.cuda_graphs``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ranker.backends.base import BackendError, FloatArray, ModelTask, TokenBatch

if TYPE_CHECKING:
    from ranker.backends.cuda_graphs import CudaGraphRunner

logger = logging.getLogger(__name__)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors the attention mask keeps (sentence-transformers' pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class TorchBackend:
    """Runs a transformers BERT-style model with torch."""

    name = "torch"

    def __init__(
        self,
        model_dir: Path,
        *,
        task: ModelTask,
        device: str = "cpu",
        dtype: str = "float32",
        cuda_graphs: bool = False,
    ) -> None:
        from transformers import AutoModel, AutoModelForSequenceClassification

        self.task = task
        self.device = device
        torch_dtype = {
            "float32": torch.float32,
            "float16": torch.float16,
            "bfloat16": torch.bfloat16,
        }
        if dtype not in torch_dtype:
            raise BackendError(f"unknown dtype {dtype!r}; use one of {sorted(torch_dtype)}")
        if device == "cpu" and dtype != "float32":
            raise BackendError(f"dtype {dtype} is for CUDA; on the CPU use float32")
        if cuda_graphs and not device.startswith("cuda"):
            raise BackendError(f"CUDA graphs need a CUDA device; this backend runs on {device}")
        loader = AutoModel if task is ModelTask.EMBED else AutoModelForSequenceClassification
        try:
            model = loader.from_pretrained(str(model_dir), dtype=torch_dtype[dtype])
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load a {task} model from {model_dir}: {exc}") from exc
        self._model: torch.nn.Module = model.to(device).eval()
        self.dtype = dtype
        self._graphs: CudaGraphRunner | None = None
        if cuda_graphs:
            from ranker.backends.cuda_graphs import CudaGraphRunner

            self._graphs = CudaGraphRunner(self._forward, device=device)

    @classmethod
    def from_model(cls, model: torch.nn.Module, *, task: ModelTask) -> TorchBackend:
        """Wrap a model already in memory (cross-validation scores fold models this way)."""
        backend = cls.__new__(cls)
        backend.task = task
        backend.device = str(next(model.parameters()).device)
        backend.dtype = "float32"
        backend._model = model.eval()
        backend._graphs = None
        return backend

    @property
    def captured_graphs(self) -> int:
        """How many CUDA graphs (padded shapes) have been captured so far."""
        return 0 if self._graphs is None else len(self._graphs)

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's output for the task: pooled embeddings or one logit per pair."""
        output = self._model(**inputs)
        result: torch.Tensor
        if self.task is ModelTask.EMBED:
            result = mean_pool(output.last_hidden_state, inputs["attention_mask"])
        else:
            result = output.logits.reshape(-1)
        return result

    def infer(self, batch: TokenBatch) -> FloatArray:
        """Run one micro-batch (through a CUDA graph when they are on and the batch has a
        bucket); returns float32 numpy."""
        result = self._graphs.run(batch) if self._graphs is not None else None
        if result is None:
            inputs = {
                name: torch.from_numpy(getattr(batch, name)).to(self.device)
                for name in ("input_ids", "attention_mask", "token_type_ids")
            }
            with torch.inference_mode():
                result = self._forward(inputs)
        return np.ascontiguousarray(result.float().cpu().numpy(), dtype=np.float32)

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        """One dummy forward pass, timed."""
        shape = (batch_size, seq_len)
        batch = TokenBatch(
            input_ids=np.full(shape, 101, dtype=np.int64),
            attention_mask=np.ones(shape, dtype=np.int64),
            token_type_ids=np.zeros(shape, dtype=np.int64),
        )
        start = time.perf_counter()
        self.infer(batch)
        elapsed = time.perf_counter() - start
        logger.info(
            "torch %s warm-up %s on %s: %.1f ms", self.task, shape, self.device, 1e3 * elapsed
        )
        return elapsed

    def health(self) -> bool:
        """The model is loaded in memory; nothing else can fail between calls."""
        return self._model is not None
