"""Backends, looked up by name and imported only when used.

Adding a backend is one module plus one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from ranker.backends.base import Backend, BackendError, ModelTask, TokenBatch

logger = logging.getLogger(__name__)

BACKENDS: dict[str, str] = {
    "torch": "ranker.backends.torch_backend:TorchBackend",
}
"""Registry name -> ``module:Class``."""

__all__ = ["BACKENDS", "Backend", "BackendError", "ModelTask", "TokenBatch", "load_backend"]


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _resolve(name: str) -> tuple[str, dict[str, Any], str]:
    """The backend name, its options and the reason it was chosen."""
    if name != "auto":
        if name not in BACKENDS:
            raise BackendError(f"unknown backend {name!r}; known: {sorted(BACKENDS)} or 'auto'")
        options: dict[str, Any] = {}
        if name == "torch" and _cuda_available():
            options = {"device": "cuda", "dtype": "float16"}
        return name, options, "set explicitly"
    if _cuda_available():
        return "torch", {"device": "cuda", "dtype": "float16"}, "auto: a CUDA GPU is present"
    return "torch", {"device": "cpu"}, "auto: no GPU, torch on the CPU"


def load_backend(name: str, model_dir: Path, *, task: ModelTask) -> Backend:
    """Load ``model_dir`` on the named backend (``auto`` picks from what the machine has)."""
    resolved, options, reason = _resolve(name)
    module_name, _, class_name = BACKENDS[resolved].partition(":")
    try:
        backend_class = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise BackendError(
            f"backend {resolved!r} needs a package that is not installed: {exc.name}"
        ) from exc
    backend: Backend = backend_class(model_dir, task=task, **options)
    logger.info(
        "backend %s on %s for %s (%s) from %s", resolved, backend.device, task, reason, model_dir
    )
    return backend
