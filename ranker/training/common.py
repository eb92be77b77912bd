"""What both trainers share: base hyperparameters, the result, the split and the schedule."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ranker.evaluation.bootstrap import PairedDifference
from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import ndcg_at_k, ranked_ids
from ranker.tokenization import PairTokenizer
from ranker.training.device import TrainingDevice


class TrainingConfig(BaseModel):
    """Hyperparameters every fine-tuning run has."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(default="minilm", description="'minilm' or a model directory.")
    batch_size: int = Field(default=16, ge=2)
    epochs: float = Field(default=4.0, gt=0)
    learning_rate: float = Field(default=4e-5, gt=0)
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    evals_per_epoch: int = Field(default=2, ge=1)
    patience: int = Field(default=3, ge=1, description="Evaluations without gain before stopping.")
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 13
    save_dtype: str = Field(default="float16", pattern="^(float16|float32)$")
    device: TrainingDevice = Field(
        default="auto",
        description="'auto': a CUDA GPU when torch sees one (bfloat16 autocast), else the CPU.",
    )
    checkpoint_every: int = Field(
        default=200,
        ge=1,
        description="Steps between checkpoints, when the run is given a checkpoint directory.",
    )


@dataclass
class TrainingResult:
    """What a run produced: the model, its history and where it went."""

    model: Any
    """The trained transformer; None for a reranker that is its prior alone."""
    tokenizer: PairTokenizer
    history: list[dict[str, float]] = field(default_factory=list)
    best_validation_ndcg: float | None = None
    train_queries: list[str] = field(default_factory=list)
    validation_queries: list[str] = field(default_factory=list)
    seconds: float = 0.0
    output_dir: Path | None = None
    prior: dict[str, Any] | None = None
    """The learned prior, if one was used: ``{"weight": w, "bias": b}``, plus
    ``"lexical_weights": {feature: v}`` when it weighs lexical features and
    ``"title_weight": t`` when it weighs the title cosine."""
    over_prior: PairedDifference | None = None
    """Validation NDCG@10 of the kept model minus its prior alone's, paired by query (a
    cross-encoder with a prior only)."""

    @property
    def kept_step(self) -> int | None:
        """The training step whose model early stopping kept (0: the untrained starting
        model, which for a cross-encoder with a prior is the prior alone); None without a
        history."""
        for entry in self.history:
            if entry.get("validation_ndcg@10") == self.best_validation_ndcg:
                return int(entry["step"])
        return None


class BestCheckpoint:
    """The best model state so far by validation NDCG@10, for early stopping.

    It starts from the model as given (the untrained state counts as a candidate) and
    counts the evaluations since the score last improved.
    """

    def __init__(self, model: torch.nn.Module, ndcg: float) -> None:
        self.ndcg = ndcg
        self.state = copy.deepcopy(model.state_dict())
        self.evals_without_gain = 0

    def offer(self, model: torch.nn.Module, ndcg: float) -> bool:
        """Keep the model's state if ``ndcg`` beats the best; True when it did."""
        if ndcg > self.ndcg:
            self.ndcg, self.state, self.evals_without_gain = (
                ndcg,
                copy.deepcopy(model.state_dict()),
                0,
            )
            return True
        self.evals_without_gain += 1
        return False

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best state into ``model`` and put it in evaluation mode."""
        model.load_state_dict(self.state)
        model.eval()

    def to_checkpoint(self) -> dict[str, Any]:
        """What a training checkpoint keeps of it."""
        return {
            "ndcg": self.ndcg,
            "state": self.state,
            "evals_without_gain": self.evals_without_gain,
        }

    def load_checkpoint(self, saved: Mapping[str, Any]) -> None:
        """Take back what :meth:`to_checkpoint` kept."""
        self.ndcg = float(saved["ndcg"])
        self.state = saved["state"]
        self.evals_without_gain = int(saved["evals_without_gain"])


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def split_validation(
    qids: Sequence[str], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split query ids into (train, validation), by query, deterministically."""
    shuffled = sorted(qids)
    random.Random(seed).shuffle(shuffled)
    count = max(1, round(len(shuffled) * fraction))
    if count >= len(shuffled):
        raise ValueError(f"{len(shuffled)} queries are too few to hold {count} out for validation")
    return sorted(shuffled[count:]), sorted(shuffled[:count])


def rerank_ndcg(
    score: Callable[[str, Sequence[str]], np.ndarray],
    judgments: Judgments,
    qids: Sequence[str],
    product_texts: Mapping[str, str],
    *,
    extra: Mapping[str, Sequence[str]] | None = None,
) -> float:
    """Mean NDCG@10 of the rerank task over ``qids`` (see :func:`rerank_ndcg_by_query`)."""
    values = rerank_ndcg_by_query(score, judgments, qids, product_texts, extra=extra)
    return float(np.mean(list(values.values()))) if values else 0.0


def rerank_ndcg_by_query(
    score: Callable[[str, Sequence[str]], np.ndarray],
    judgments: Judgments,
    qids: Sequence[str],
    product_texts: Mapping[str, str],
    *,
    extra: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, float]:
    """NDCG@10 of the rerank task (order each query's judged products), per query id.

    ``score(qid, product_ids)`` returns one score per product. ``extra``: unjudged products
    ranked with a query's judged ones (gain 0).
    """
    values = {}
    for qid in qids:
        candidates = dict.fromkeys([*judgments.qrels[qid], *(extra or {}).get(qid, ())])
        products = [pid for pid in candidates if pid in product_texts]
        scores = score(qid, products)
        ranking = ranked_ids(dict(zip(products, scores.tolist(), strict=True)))
        values[qid] = ndcg_at_k(ranking, judgments.qrels[qid], k=10)
    return values


def linear_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then linear decay to zero (transformers' schedule)."""
    from transformers import get_linear_schedule_with_warmup

    schedule: torch.optim.lr_scheduler.LambdaLR = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
        optimizer, int(total_steps * warmup_ratio), total_steps
    )
    return schedule
