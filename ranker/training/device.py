"""Where a training run computes: a CUDA GPU when torch sees one, else the CPU.

On a GPU the forward passes run under bfloat16 autocast where the GPU has bfloat16
(Ampere and later), else in float32: bfloat16 keeps float32's range, so it needs no loss
scaling, and the weights, optimizer state and loss stay float32. The CPU runs float32.
Trained models come back to the CPU before they are saved or returned, so what a run
writes does not depend on where it ran.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from ranker.backends.base import TokenBatch
from ranker.errors import InputError
from ranker.hardware import cuda_available

TrainingDevice = Literal["auto", "cpu", "cuda"]


def resolve_device(preference: TrainingDevice) -> torch.device:
    """``auto``: the GPU when torch sees one, else the CPU; ``cuda`` without a GPU is an
    InputError rather than a silent run on the CPU."""
    if preference == "cpu":
        return torch.device("cpu")
    if cuda_available():
        return torch.device("cuda")
    if preference == "cuda":
        raise InputError(
            "training was asked to run on CUDA, but torch sees no CUDA GPU here; "
            "use device 'auto' or 'cpu'"
        )
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype forward passes run in on ``device`` (None: float32, no autocast)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are."""
    return next(model.parameters()).device


def forward_inputs(model: torch.nn.Module, batch: TokenBatch) -> dict[str, torch.Tensor]:
    """A padded batch as the model's keyword inputs, on the model's device."""
    device = model_device(model)
    return {
        "input_ids": torch.from_numpy(batch.input_ids).to(device),
        "attention_mask": torch.from_numpy(batch.attention_mask).to(device),
        "token_type_ids": torch.from_numpy(batch.token_type_ids).to(device),
    }


def forward_precision(model: torch.nn.Module) -> contextlib.AbstractContextManager[object]:
    """The autocast a forward pass of ``model`` runs under (see :func:`autocast_dtype`)."""
    device = model_device(model)
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
