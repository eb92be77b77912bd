"""The native TensorRT backend (optional): builds an engine from ``model.onnx`` and runs it.

Needs the ``tensorrt`` package and a CUDA GPU; without either it raises a
:class:`BackendError` that says which is missing. Engines are cached on disk, keyed by the
graph's hash, the precision flags and the TensorRT version, because building one takes
minutes. Device memory comes from torch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ranker.backends.base import BackendError, FloatArray, ModelTask, TokenBatch, dummy_batch
from ranker.hardware import cuda_available
from ranker.model_files import ONNX_MODEL_NAME
from ranker.settings import BackendSettings

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'shoprank[tensorrt]' (NVIDIA's wheel; needs a CUDA GPU and driver)"
TRT_MAX_SHAPE = (256, 512)
"""The largest (batch, seq_len) an engine is built for (native and ONNX Runtime's provider)."""
TRT_OPT_SHAPE = (32, 96)
"""The (batch, seq_len) TensorRT tunes for: a rerank micro-batch."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a BackendError naming what to install."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(
            f"the native TensorRT backend needs the `tensorrt` package: {INSTALL_HINT}"
        ) from exc
    return tensorrt


def require_gpu() -> None:
    """Raise a BackendError when no CUDA GPU is visible."""
    if not cuda_available():
        raise BackendError(
            "the native TensorRT backend needs a CUDA GPU and none is visible; "
            "use the 'onnx' or 'torch' backend on this machine"
        )


class TensorRTBackend:
    """Runs a TensorRT engine built from an exported ONNX graph."""

    name = "tensorrt"

    def __init__(
        self,
        model_dir: Path,
        *,
        task: ModelTask,
        config: BackendSettings | None = None,
    ) -> None:
        trt = import_tensorrt()
        require_gpu()
        import torch

        config = config or BackendSettings()
        onnx_path = model_dir / ONNX_MODEL_NAME
        if not onnx_path.is_file():
            raise BackendError(f"{model_dir}: no {ONNX_MODEL_NAME} to build a TensorRT engine")
        self.task = task
        self.device = "cuda:0"
        self._torch = torch
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        engine_path = self._engine_path(trt, onnx_path, config)
        if not engine_path.is_file():
            self._build_engine(trt, onnx_path, engine_path, config)
        runtime = trt.Runtime(self._trt_logger)
        self._engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BackendError(f"TensorRT cannot load the engine {engine_path}; delete it")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._inputs = [n for n in names if is_input[n]]
        self._output = next(n for n in names if not is_input[n])
        self._stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        # An execution context holds per-call shapes and addresses: one call at a time.
        self._lock = threading.Lock()
        logger.info("tensorrt %s engine %s", task, engine_path)

    @staticmethod
    def _engine_path(trt: Any, onnx_path: Path, config: BackendSettings) -> Path:
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:16]
        flags = ("fp16" if config.trt_fp16 else "") + ("int8" if config.trt_int8 else "")
        name = f"{digest}-{flags or 'fp32'}-trt{trt.__version__}.engine"
        return config.trt_engine_cache_dir / name

    def _build_engine(
        self, trt: Any, onnx_path: Path, engine_path: Path, config: BackendSettings
    ) -> None:
        builder = trt.Builder(self._trt_logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._trt_logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
        build_config = builder.create_builder_config()
        if config.trt_fp16:
            build_config.set_flag(trt.BuilderFlag.FP16)
        if config.trt_int8:
            build_config.set_flag(trt.BuilderFlag.INT8)
        profile = builder.create_optimization_profile()
        for index in range(network.num_inputs):
            name = network.get_input(index).name
            profile.set_shape(name, (1, 1), TRT_OPT_SHAPE, TRT_MAX_SHAPE)
        build_config.add_optimization_profile(profile)
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, build_config)
        if serialized is None:
            raise BackendError(f"TensorRT could not build an engine from {onnx_path}")
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        temp = engine_path.with_suffix(".tmp")
        temp.write_bytes(bytes(serialized))
        temp.replace(engine_path)
        logger.info("built TensorRT engine %s in %.0f s", engine_path, time.perf_counter() - start)

    def infer(self, batch: TokenBatch) -> FloatArray:
        """Run one micro-batch; returns float32 numpy."""
        torch = self._torch
        fields = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        with self._lock, torch.cuda.stream(self._stream):
            tensors = {}
            for name in self._inputs:
                tensor = torch.from_numpy(fields[name]).to(self.device, non_blocking=True)
                tensors[name] = tensor
                self._context.set_input_shape(name, tuple(tensor.shape))
                self._context.set_tensor_address(name, tensor.data_ptr())
            shape = tuple(self._context.get_tensor_shape(self._output))
            output = torch.empty(shape, dtype=torch.float32, device=self.device)
            self._context.set_tensor_address(self._output, output.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("TensorRT execution failed")
            self._stream.synchronize()
            result = output.cpu().numpy()
        if self.task is ModelTask.SCORE:
            result = result.reshape(-1)
        return np.ascontiguousarray(result, dtype=np.float32)

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        """One dummy batch, timed."""
        start = time.perf_counter()
        self.infer(dummy_batch(batch_size, seq_len))
        return time.perf_counter() - start

    def health(self) -> bool:
        """The engine and its context are loaded."""
        return self._context is not None
