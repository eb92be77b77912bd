"""The torch backend: CPU, or CUDA in fp16/bf16 when a GPU is present."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from ranker.backends.base import BackendError, FloatArray, ModelTask, TokenBatch

logger = logging.getLogger(__name__)


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
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
        loader = AutoModel if task is ModelTask.EMBED else AutoModelForSequenceClassification
        try:
            model = loader.from_pretrained(str(model_dir), dtype=torch_dtype[dtype])
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load a {task} model from {model_dir}: {exc}") from exc
        self._model: torch.nn.Module = model.to(device).eval()
        self.dtype = dtype

    @classmethod
    def from_model(cls, model: torch.nn.Module, *, task: ModelTask) -> TorchBackend:
        """Wrap a model already in memory (cross-validation scores fold models this way)."""
        backend = cls.__new__(cls)
        backend.task = task
        backend.device = str(next(model.parameters()).device)
        backend.dtype = "float32"
        backend._model = model.eval()
        return backend

    def infer(self, batch: TokenBatch) -> FloatArray:
        """Run one micro-batch; returns float32 numpy."""
        inputs = {
            "input_ids": torch.from_numpy(batch.input_ids).to(self.device),
            "attention_mask": torch.from_numpy(batch.attention_mask).to(self.device),
            "token_type_ids": torch.from_numpy(batch.token_type_ids).to(self.device),
        }
        with torch.inference_mode():
            output = self._model(**inputs)
            if self.task is ModelTask.EMBED:
                result = _mean_pool(output.last_hidden_state, inputs["attention_mask"])
            else:
                result = output.logits.reshape(-1)
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
