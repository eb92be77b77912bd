"""The ONNX Runtime backend: CPU, CUDA or TensorRT execution providers.

It loads ``model.onnx`` from a directory that :mod:`ranker.compress.export` wrote: an
embedding graph whose output is already mean-pooled, or a scoring graph whose output is one
logit per pair. Missing GPU providers fall back to the CPU, and the log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ranker.backends.base import BackendError, FloatArray, ModelTask, TokenBatch, dummy_batch
from ranker.backends.tensorrt_backend import TRT_MAX_SHAPE, TRT_OPT_SHAPE
from ranker.hardware import cuda_available, physical_cores
from ranker.model_files import ONNX_MODEL_NAME, read_manifest
from ranker.settings import BackendSettings

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
"""GPU providers, fastest first."""
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def choose_providers(
    requested: Sequence[str], available: Sequence[str], *, gpu: bool
) -> tuple[list[str], str]:
    """The providers to ask ONNX Runtime for, best first and ending with the CPU, and why.

    ``requested`` empty means: the best the machine has (TensorRT, then CUDA, then CPU). A
    GPU provider counts only when the installed onnxruntime has it and a GPU is present.
    """
    usable = [p for p in available if p not in GPU_PROVIDERS or gpu]
    if requested:
        chosen = [p for p in requested if p in usable and p != CPU]
        missing = [p for p in requested if p not in usable]
        reason = f"set explicitly: {(chosen or [CPU])[0]}"
        if missing:
            why = "no GPU" if not gpu else f"onnxruntime offers {sorted(available)}"
            reason += f"; {', '.join(missing)} not usable ({why}), falling back"
        return [*chosen, CPU], reason
    chosen = [p for p in GPU_PROVIDERS if p in usable]
    if chosen:
        return [*chosen, CPU], f"auto: a GPU and {chosen[0]} are present"
    why = "no GPU" if not gpu else "onnxruntime has no GPU provider (install onnxruntime-gpu)"
    return [CPU], f"auto: {why}, CPU"


def session_options(config: BackendSettings) -> ort.SessionOptions:
    """Threads matched to the physical cores, all graph optimizations on; worker threads
    spin between operators only when ``config.onnx_thread_spinning`` says so."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads or physical_cores()
    options.inter_op_num_threads = config.inter_op_threads
    spinning = "1" if config.onnx_thread_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def provider_options(provider: str, config: BackendSettings) -> dict[str, Any]:
    """Options for one provider: TensorRT's precision flags, engine cache and shape profile."""
    if provider != TENSORRT:
        return {}
    config.trt_engine_cache_dir.mkdir(parents=True, exist_ok=True)

    def shapes(batch: int, seq_len: int) -> str:
        return ",".join(f"{name}:{batch}x{seq_len}" for name in INPUT_NAMES)

    return {
        "trt_fp16_enable": config.trt_fp16,
        "trt_int8_enable": config.trt_int8,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(config.trt_engine_cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(config.trt_engine_cache_dir),
        "trt_profile_min_shapes": shapes(1, 1),
        "trt_profile_opt_shapes": shapes(*TRT_OPT_SHAPE),
        "trt_profile_max_shapes": shapes(*TRT_MAX_SHAPE),
    }


class OnnxBackend:
    """Runs an exported model with ONNX Runtime; one session serves many threads."""

    name = "onnx"

    def __init__(
        self,
        model_dir: Path,
        *,
        task: ModelTask,
        config: BackendSettings | None = None,
    ) -> None:
        config = config or BackendSettings()
        path = model_dir / ONNX_MODEL_NAME
        if not path.is_file():
            raise BackendError(
                f"{model_dir}: no {ONNX_MODEL_NAME}; export the model first "
                "(ranker.compress.export.export_model)"
            )
        declared = (read_manifest(model_dir) or {}).get("task")
        if declared is not None and declared != task.value:
            raise BackendError(f"{path} computes {declared!r}, not {task.value!r}")
        providers, reason = choose_providers(
            config.onnx_providers, ort.get_available_providers(), gpu=cuda_available()
        )
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=session_options(config),
                providers=[(p, provider_options(p, config)) for p in providers],
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"onnxruntime cannot load {path}: {exc}") from exc
        active = self._session.get_providers()
        if active[0] != providers[0]:
            reason += f"; {providers[0]} failed to start, running on {active[0]}"
            logger.warning("%s: %s", path, reason)
        self.task = task
        self.provider = active[0]
        self.reason = reason
        self.device = "cpu" if self.provider == CPU else "cuda:0"
        self._inputs = [i.name for i in self._session.get_inputs()]
        unknown = sorted(set(self._inputs) - set(INPUT_NAMES))
        if unknown:
            raise BackendError(f"{path} takes inputs {unknown} that token batches do not have")
        self._output = self._session.get_outputs()[0].name
        logger.info("onnx %s on %s (%s) from %s", task, self.provider, reason, path)

    def infer(self, batch: TokenBatch) -> FloatArray:
        """Run one micro-batch; returns float32 numpy."""
        fields = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        feed = {name: fields[name] for name in self._inputs}
        (output,) = self._session.run([self._output], feed)
        result = np.asarray(output, dtype=np.float32)
        if self.task is ModelTask.SCORE:
            result = result.reshape(-1)
        return np.ascontiguousarray(result)

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        """One dummy batch, timed."""
        start = time.perf_counter()
        self.infer(dummy_batch(batch_size, seq_len))
        elapsed = time.perf_counter() - start
        logger.info(
            "onnx %s warm-up (%d, %d) on %s: %.1f ms",
            self.task,
            batch_size,
            seq_len,
            self.provider,
            1e3 * elapsed,
        )
        return elapsed

    def health(self) -> bool:
        """The session is loaded; ONNX Runtime holds no other state between calls."""
        return self._session is not None
