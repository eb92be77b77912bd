"""A cross-encoder's scores while it trains: with gradients for a training batch, without
for validation and distillation (the served path is a Backend, not this)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ranker.tokenization import PairTokenizer, pad_batch
from ranker.training.device import forward_inputs, forward_precision


def score_pairs(
    model: Any,
    tokenizer: PairTokenizer,
    query: str,
    texts: Sequence[str],
    *,
    max_query_tokens: int,
    batch_size: int = 64,
) -> np.ndarray:
    """Scores of one query against texts with the model in training (not a Backend)."""
    query = tokenizer.truncate_text(query, max_query_tokens)
    encodings = tokenizer.encode_pairs(query, texts)
    scores = np.zeros(len(texts), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(encodings), batch_size):
            batch = pad_batch(encodings[start : start + batch_size], pad_id=tokenizer.pad_id)
            with forward_precision(model):
                logits = model(**forward_inputs(model, batch)).logits.reshape(-1)
            scores[start : start + len(logits)] = logits.float().cpu().numpy()
    return scores


def pair_logits(
    model: Any,
    tokenizer: PairTokenizer,
    pairs: Sequence[tuple[str, str]],
    max_query_tokens: int,
) -> torch.Tensor:
    """The model's logit for each (query, text) pair, with gradients (one padded batch)."""
    encodings = [
        tokenizer.encode_pairs(tokenizer.truncate_text(query, max_query_tokens), [text])[0]
        for query, text in pairs
    ]
    batch = pad_batch(encodings, pad_id=tokenizer.pad_id)
    with forward_precision(model):
        logits: torch.Tensor = model(**forward_inputs(model, batch)).logits.reshape(-1)
    return logits.float()
