"""Backends, looked up by name and imported only when used.

Adding a backend is one module plus one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

from ranker.backends.base import Backend, BackendError, ModelTask, TokenBatch
from ranker.hardware import cuda_available
from ranker.model_files import ONNX_MODEL_NAME
from ranker.settings import BackendSettings, get_settings

logger = logging.getLogger(__name__)

BACKENDS: dict[str, str] = {
    "torch": "ranker.backends.torch_backend:TorchBackend",
    "onnx": "ranker.backends.onnx_backend:OnnxBackend",
    "tensorrt": "ranker.backends.tensorrt_backend:TensorRTBackend",
}
"""Registry name -> ``module:Class``."""

INSTALL_HINTS: dict[str, str] = {
    "torch": "pip install shoprank",
    "onnx": "pip install 'shoprank[onnx]'",
    "tensorrt": "pip install 'shoprank[tensorrt]' (needs a CUDA GPU)",
}

WARMUP_SHAPE = (8, 64)
"""(batch, seq_len) of the dummy batch run when a model loads."""

__all__ = ["BACKENDS", "Backend", "BackendError", "ModelTask", "TokenBatch", "load_backend"]


def _torch_options(config: BackendSettings) -> tuple[dict[str, Any], str]:
    """The torch backend's options on this machine, and what was left out and why."""
    if cuda_available():
        options = {"device": "cuda", "dtype": config.torch_cuda_dtype}
        return {**options, "cuda_graphs": config.torch_cuda_graphs}, ""
    if config.torch_cuda_graphs:
        return {}, "CUDA graphs asked for, but no CUDA GPU: torch runs eagerly on the CPU"
    return {}, ""


def _with(reason: str, note: str) -> str:
    return f"{reason}; {note}" if note else reason


def _has_onnxruntime() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(
    name: str, model_dir: Path, config: BackendSettings
) -> tuple[str, dict[str, Any], str]:
    """The backend name, its options and the reason it was chosen.

    An explicit name wins. ``auto`` runs an exported directory (one with ``model.onnx``) on
    ONNX Runtime and a weights directory on torch (on CUDA in ``torch_cuda_dtype``, through
    CUDA graphs if ``torch_cuda_graphs``, when a GPU is present).
    """
    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}; known: {sorted(BACKENDS)} or 'auto'")
        if name == "torch":
            options, note = _torch_options(config)
            return name, options, _with("set explicitly", note)
        return name, {"config": config}, "set explicitly"
    if (model_dir / ONNX_MODEL_NAME).is_file():
        if _has_onnxruntime():
            return "onnx", {"config": config}, "auto: the directory holds an exported graph"
        if not (model_dir / "config.json").is_file() or not any(model_dir.glob("*.safetensors")):
            raise BackendError(
                f"{model_dir} holds only an ONNX graph and onnxruntime is not installed: "
                f"{INSTALL_HINTS['onnx']}"
            )
        options, note = _torch_options(config)
        reason = f"auto: onnxruntime is not installed ({INSTALL_HINTS['onnx']}), torch"
        return "torch", options, _with(reason, note)
    options, note = _torch_options(config)
    if cuda_available():
        return "torch", options, "auto: a CUDA GPU is present"
    return "torch", options, _with("auto: no GPU, torch on the CPU", note)


def load_backend(
    name: str, model_dir: Path, *, task: ModelTask, config: BackendSettings | None = None
) -> Backend:
    """Load ``model_dir`` on the named backend (``auto`` picks from what the machine has).

    ``config`` defaults to the process settings' ``backends`` section. The backend runs one
    dummy batch before it is returned unless ``config.warmup`` is off.
    """
    config = config or get_settings().backends
    resolved, options, reason = resolve_backend(name, model_dir, config)
    module_name, _, class_name = BACKENDS[resolved].partition(":")
    try:
        backend_class = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {resolved!r} needs a package that is not installed ({exc.name}): "
            f"{INSTALL_HINTS[resolved]}"
        ) from exc
    backend: Backend = backend_class(model_dir, task=task, **options)
    detail = getattr(backend, "reason", None)
    if detail:
        reason = f"{reason}; {detail}"
    logger.info(
        "backend %s on %s for %s (%s) from %s", resolved, backend.device, task, reason, model_dir
    )
    if config.warmup:
        backend.warmup(batch_size=WARMUP_SHAPE[0], seq_len=WARMUP_SHAPE[1])
    return backend
