"""The miss embedder: a shallow student of the bi-encoder for texts the index does not hold.

A prior-only reranker needs each product's bi-encoder vector. The index holds the vectors of
its own products; any other text (what every Cohere or TEI client sends) must be embedded at
request time, and the 6-layer bi-encoder makes that the slow part of reranking. The miss
embedder keeps the bi-encoder's bottom ``layers`` (0 by default: its token vectors alone,
trained, then mean-pooled) and reads only the first ``max_length`` word pieces; it is
trained so its mean-pooled unit vector of a text matches the bi-encoder's vector of the
whole text (loss: 1 - cosine; no labels, only the bi-encoder's own vectors,
which the index already stores). Queries stay with the serving bi-encoder, so only product
vectors move, and the cosines the prior reads stay in the bi-encoder's space.

It is exported to ONNX and quantized to int8 with the project's export and quantization
steps (their parity checks included); ``ranker.compress.prior_student`` judges the variants
by the served prior's scores and rankings, and ships the chosen one inside the prior-only
reranker's directory.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, Field

from indexer.stores.base import FloatMatrix
from ranker.backends.base import ModelTask
from ranker.compress.parity import ParityGroup
from ranker.compress.quantize import export_and_quantize
from ranker.model_files import read_manifest
from ranker.stages import PreparedTokens, pad_rows
from ranker.tokenization import PairTokenizer
from ranker.training.artifacts import save_model_dir
from ranker.training.common import linear_schedule, set_seed

logger = logging.getLogger(__name__)


class MissEmbedderConfig(BaseModel):
    """Shape and training of the miss embedder."""

    layers: int = Field(
        default=0, ge=0, le=24, description="Bottom bi-encoder layers kept (0: token vectors)."
    )
    max_length: int = Field(default=48, ge=8, le=512, description="Word pieces read per text.")
    epochs: float = Field(default=20.0, gt=0)
    batch_size: int = Field(default=64, ge=2)
    learning_rate: float = Field(default=2e-3, gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    validation_share: float = Field(default=0.1, ge=0, lt=1)
    seed: int = 0


@dataclass(frozen=True)
class MissEmbedderResult:
    """The trained student's directories and how well its vectors follow the bi-encoder's."""

    variants: dict[str, Path]
    """Precision (``torch``, ``onnx-fp32``, ``onnx-int8``) -> model directory."""
    refused: dict[str, str]
    """Precisions an export or quantization parity check refused, with why."""
    validation_cosine: float
    """Mean cosine to the bi-encoder's vectors on texts it did not train on."""
    train_texts: int


def distill_miss_embedder(
    source_dir: Path,
    texts: Sequence[str],
    targets: FloatMatrix,
    config: MissEmbedderConfig,
    out_dir: Path,
    *,
    groups: Sequence[ParityGroup] | None = None,
) -> MissEmbedderResult:
    """Train the student on ``texts`` toward ``targets`` (the bi-encoder's unit vectors of
    the same texts, row for row), then save, export and quantize it under ``out_dir``
    (``torch``, ``onnx-fp32``, ``onnx-int8``). ``groups``: the export's parity inputs."""
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts for {len(targets)} target vectors")
    if len(texts) < 2:
        raise ValueError("the miss embedder needs at least 2 texts to learn from")
    set_seed(config.seed)
    order = list(range(len(texts)))
    random.Random(config.seed).shuffle(order)
    held = min(len(order) - 1, max(1, int(len(order) * config.validation_share)))
    validation, train = order[:held], order[held:]
    model = shallow_bi_encoder(source_dir, config.layers)
    tokenizer = PairTokenizer.from_model_dir(source_dir, max_length=config.max_length)
    target = torch.from_numpy(np.asarray(targets, dtype=np.float32))
    steps = max(1, math.ceil(len(train) / config.batch_size * config.epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    schedule = linear_schedule(optimizer, total_steps=steps, warmup_ratio=config.warmup_ratio)
    generator = random.Random(config.seed + 1)
    model.train()
    for step in range(steps):
        batch = generator.sample(train, min(config.batch_size, len(train)))
        vectors = _pooled(model, tokenizer, [texts[i] for i in batch])
        loss = (1 - torch.nn.functional.cosine_similarity(vectors, target[batch])).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            logger.info("miss embedder step %d/%d: 1 - cosine %.4f", step + 1, steps, loss.item())
    model.eval()
    cosine = _mean_cosine(model, tokenizer, [texts[i] for i in validation], target[validation])
    logger.info("miss embedder: mean cosine %.4f to the bi-encoder on held-out texts", cosine)
    variants, refused = _save_variants(
        model, source_dir, config, out_dir, cosine=cosine, train_texts=len(train), groups=groups
    )
    return MissEmbedderResult(variants, refused, cosine, len(train))


def shallow_bi_encoder(source_dir: Path, layers: int) -> torch.nn.Module:
    """The source bi-encoder with only its bottom ``layers`` transformer layers."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(
        str(source_dir), dtype=torch.float32, attn_implementation="eager"
    )
    kept = min(layers, int(model.config.num_hidden_layers))
    model.encoder.layer = model.encoder.layer[:kept]
    model.config.num_hidden_layers = kept
    module: torch.nn.Module = model
    return module


def _pooled(model: torch.nn.Module, tokenizer: PairTokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Mean-pooled token vectors of ``texts`` (as ``Embedder`` pools them), not normalized."""
    prepared = PreparedTokens.from_encodings(tokenizer.encode_texts(texts), pad_id=tokenizer.pad_id)
    batch = pad_rows(
        list(zip(prepared.ids, prepared.type_ids, strict=True)), pad_id=tokenizer.pad_id
    )
    mask = torch.from_numpy(batch.attention_mask)
    hidden = model(
        input_ids=torch.from_numpy(batch.input_ids),
        attention_mask=mask,
        token_type_ids=torch.from_numpy(batch.token_type_ids),
    ).last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled: torch.Tensor = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return pooled


@torch.no_grad()
def _mean_cosine(
    model: torch.nn.Module, tokenizer: PairTokenizer, texts: Sequence[str], target: torch.Tensor
) -> float:
    cosines = [
        torch.nn.functional.cosine_similarity(
            _pooled(model, tokenizer, texts[start : start + 128]), target[start : start + 128]
        )
        for start in range(0, len(texts), 128)
    ]
    return float(torch.cat(cosines).mean()) if cosines else float("nan")


def _save_variants(
    model: torch.nn.Module,
    source_dir: Path,
    config: MissEmbedderConfig,
    out_dir: Path,
    *,
    cosine: float,
    train_texts: int,
    groups: Sequence[ParityGroup] | None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Save the torch student, export it and quantize it; what parity refused, with why."""
    source = read_manifest(source_dir) or {}
    torch_dir = save_model_dir(
        model,
        out_dir / "torch",
        tokenizer_source=source_dir,
        manifest={
            "kind": "miss-embedder",
            "task": ModelTask.EMBED.value,
            "source": {
                "path": str(source_dir),
                "model_id": source.get("model_id", source_dir.name),
            },
            "hyperparameters": config.model_dump(mode="json"),
            "metrics": {"validation_mean_cosine": cosine, "train_texts": train_texts},
            "serving": {"max_length": config.max_length},
        },
    )
    return export_and_quantize(torch_dir, out_dir, task=ModelTask.EMBED, groups=groups)
