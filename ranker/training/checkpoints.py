"""Resumable training: the whole state of a run, saved every few steps, atomically.

A checkpoint holds the model, the optimizer and schedule, the best state so far, the history,
the random generators and where in the epoch the run stood, so a run stopped at any point
(a worker killed, a machine lost) continues from its last checkpoint to the same result as an
uninterrupted run with the same checkpoints. A checkpoint carries a fingerprint of the run's
recipe and data; one left by a different run is refused, not silently resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from indexer.stores.atomic import atomic_file
from ranker.errors import InputError
from ranker.training.common import BestCheckpoint

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def run_fingerprint(recipe: dict[str, Any], train_qids: Sequence[str], data: str = "") -> str:
    """A short hash that names one training run: its recipe, its queries and its data."""
    text = json.dumps({"recipe": recipe, "qids": sorted(train_qids), "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class TrainingCheckpoints:
    """A run's checkpoint file in ``directory``, written every ``every`` steps."""

    def __init__(self, directory: Path, *, every: int, fingerprint: str) -> None:
        if every < 1:
            raise ValueError(f"checkpoint interval must be >= 1 step, got {every}")
        self.path = Path(directory) / CHECKPOINT_FILE
        self.every = every
        self.fingerprint = fingerprint

    def due(self, step: int, total_steps: int) -> bool:
        """Whether to save after ``step`` (every ``every`` steps, not after the last one)."""
        return step % self.every == 0 and step < total_steps

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (plus the generators and the fingerprint), temp file then rename."""
        full = {
            **state,
            "fingerprint": self.fingerprint,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path) as temp:
            torch.save(full, temp)
        logger.info("checkpoint at step %s: %s", state.get("step"), self.path)

    def save_training(
        self,
        *,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        best: BestCheckpoint,
        history: list[dict[str, float]],
        **extra: Any,
    ) -> None:
        """Save what every trainer's run holds, plus the trainer's own ``extra`` state."""
        self.save(
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best": best.to_checkpoint(),
                "history": history,
                **extra,
            }
        )

    @staticmethod
    def restore_training(
        saved: dict[str, Any],
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> BestCheckpoint:
        """Load ``save_training``'s model, optimizer and schedule back; the best state so far."""
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best = BestCheckpoint(model, 0.0)
        best.load_checkpoint(saved["best"])
        return best

    def load(self) -> dict[str, Any] | None:
        """The saved state, the generators restored; None when there is no checkpoint.

        Raises:
            InputError: the checkpoint belongs to another run (recipe, queries or data).
        """
        if not self.path.is_file():
            return None
        state: dict[str, Any] = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            raise InputError(
                f"{self.path} is the checkpoint of another training run (recipe, queries or "
                "data differ); remove it or train without --resume"
            )
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        logger.info("resuming from step %d: %s", state["step"], self.path)
        return state

    def clear(self) -> None:
        """Remove the checkpoint once the run finished (its model is saved elsewhere)."""
        self.path.unlink(missing_ok=True)
