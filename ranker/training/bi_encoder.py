"""Fine-tunes the bi-encoder on judgments: a contrastive loss, or the teacher's margins.

Pairs: positives are products with the query's top gain (ESCI: E), or every product with at
least ``positive_gain`` (a shop with graded judgments); hard negatives come from
retrieval: the base model ranks each query's judged products and the best-ranked ones
judged irrelevant (gain 0) are taken. With ``unjudged_negatives`` N, up to N products the
shop's retrieval top ``unjudged_depth`` returned for the query but nobody judged join that
pool (:mod:`ranker.training.retrieved_negatives`), so queries whose judgments hold no
irrelevant product (most of a pooled shop's) get hard negatives too, and validation ranks a
held-out query's judged products among its own drawn unjudged ones (gain 0). Two losses:

- ``contrastive``: multiple-negatives ranking (InfoNCE) with in-batch negatives plus the
  hard negative (Henderson et al. 2017; Karpukhin et al. 2020, DPR). A batch never holds
  one query twice, so no positive is used as another pair's negative.
- ``margin-mse``: distillation from the reranker (Hofstätter et al. 2020, "Improving
  Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation"): the
  bi-encoder's margin, ``margin_scale`` times the cosine of the positive minus that of the
  negative, is fitted to the teacher's score margin on the same two products by mean
  squared error.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from indexer.progress import progress_bar
from ranker.backends.torch_backend import mean_pool
from ranker.evaluation.judgments import Judgments
from ranker.model_files import resolve_model_dir
from ranker.tokenization import PairTokenizer, pad_batch
from ranker.training.artifacts import save_model_dir
from ranker.training.checkpoints import TrainingCheckpoints, run_fingerprint
from ranker.training.common import (
    BestCheckpoint,
    TrainingConfig,
    TrainingResult,
    linear_schedule,
    rerank_ndcg,
    set_seed,
    split_validation,
)
from ranker.training.device import forward_inputs, forward_precision, resolve_device

logger = logging.getLogger(__name__)


class BiEncoderConfig(TrainingConfig):
    """Hyperparameters of one bi-encoder training run."""

    max_length: int = Field(default=128, ge=8, le=512)
    batch_size: int = Field(default=32, ge=2)
    epochs: float = Field(default=2.0, gt=0)
    learning_rate: float = Field(default=2e-5, gt=0)
    scale: float = Field(default=20.0, gt=0, description="Inverse temperature of the softmax.")
    hard_negative_depth: int = Field(default=20, ge=1)
    patience: int = Field(default=2, ge=1)
    loss: Literal["contrastive", "margin-mse"] = Field(
        default="contrastive", description="See the module docstring."
    )
    unjudged_negatives: int = Field(
        default=0,
        ge=0,
        description="Retrieved, unjudged products per query added to the hard-negative pool.",
    )
    unjudged_depth: int = Field(
        default=50, ge=1, description="Retrieval depth the unjudged negatives are drawn from."
    )
    positive_gain: float | None = Field(
        default=None,
        gt=0,
        description="Judged products with at least this gain are positives; None: those with "
        "the query's top gain.",
    )
    margin_scale: float = Field(
        default=10.0,
        gt=0,
        description="margin-mse: cosine margins times this are in the teacher's logit units "
        "(the shipped teacher's dense prior weighs the cosine by about 10).",
    )


TeacherScores = Callable[[str, Sequence[str]], np.ndarray]
"""The teacher reranker: a query and product texts -> one score per text."""


@dataclass(frozen=True)
class _Triple:
    qid: str
    query: str
    positive: str
    negative: str
    teacher_margin: float = 0.0


def _mean_pool(
    model: torch.nn.Module, tokenizer: PairTokenizer, texts: Sequence[str]
) -> torch.Tensor:
    batch = pad_batch(tokenizer.encode_texts(texts), pad_id=tokenizer.pad_id)
    inputs = forward_inputs(model, batch)
    with forward_precision(model):
        hidden = model(**inputs).last_hidden_state.float()
    pooled = mean_pool(hidden, inputs["attention_mask"])
    return torch.nn.functional.normalize(pooled, dim=-1)


def _encode(model: torch.nn.Module, tokenizer: PairTokenizer, texts: Sequence[str]) -> np.ndarray:
    model.eval()
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            chunks.append(_mean_pool(model, tokenizer, texts[start : start + 64]).cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 1), dtype=np.float32)


def mine_triples(
    model: torch.nn.Module,
    tokenizer: PairTokenizer,
    judgments: Judgments,
    qids: Sequence[str],
    product_texts: Mapping[str, str],
    *,
    depth: int,
    seed: int,
    unjudged: Mapping[str, Sequence[str]] | None = None,
    positive_gain: float | None = None,
) -> list[_Triple]:
    """(query, positive, hard negative) triples, one per positive: a judged product with at
    least ``positive_gain`` (default: the query's top gain). Negatives are judged irrelevant,
    or retrieved and unjudged (``unjudged``: qid -> such products), the model's closest
    first."""
    generator = random.Random(seed)
    triples = []
    for qid in qids:
        gains = {pid: g for pid, g in judgments.qrels[qid].items() if pid in product_texts}
        if not gains:
            continue
        least = max(gains.values()) if positive_gain is None else positive_gain
        positives = [pid for pid, gain in gains.items() if gain >= least and gain > 0]
        negatives = [pid for pid, gain in gains.items() if gain == 0]
        negatives += [
            pid
            for pid in (unjudged or {}).get(qid, ())
            if pid in product_texts and pid not in judgments.qrels[qid]
        ]
        if not positives or not negatives:
            continue
        query = judgments.queries[qid]
        vectors = _encode(model, tokenizer, [query] + [product_texts[p] for p in negatives])
        similarity = vectors[1:] @ vectors[0]
        hardest = [negatives[i] for i in np.argsort(-similarity)[:depth]]
        for positive in positives:
            negative = generator.choice(hardest)
            triples.append(_Triple(qid, query, product_texts[positive], product_texts[negative]))
    return triples


def _triples_digest(triples: Sequence[_Triple]) -> str:
    """SHA-256 of the training triples (what a checkpoint must have been trained on)."""
    digest = hashlib.sha256()
    for t in triples:
        digest.update(f"{t.qid}\t{t.positive}\t{t.negative}\t{t.teacher_margin!r}\n".encode())
    return digest.hexdigest()


def with_teacher_margins(triples: Sequence[_Triple], teacher: TeacherScores) -> list[_Triple]:
    """Each triple with the teacher's score of its positive minus that of its negative (the
    teacher scores each query's products in one call)."""
    by_query: dict[str, list[int]] = {}
    for index, triple in enumerate(triples):
        by_query.setdefault(triple.qid, []).append(index)
    margined = list(triples)
    for indices in by_query.values():
        query = triples[indices[0]].query
        texts = list(
            dict.fromkeys(t for i in indices for t in (triples[i].positive, triples[i].negative))
        )
        scores = dict(zip(texts, (float(x) for x in teacher(query, texts)), strict=True))
        for i in indices:
            margin = scores[triples[i].positive] - scores[triples[i].negative]
            margined[i] = replace(triples[i], teacher_margin=margin)
    return margined


def _batch_loss(
    model: torch.nn.Module,
    tokenizer: PairTokenizer,
    batch: Sequence[_Triple],
    config: BiEncoderConfig,
) -> torch.Tensor:
    queries = _mean_pool(model, tokenizer, [t.query for t in batch])
    documents = _mean_pool(
        model, tokenizer, [t.positive for t in batch] + [t.negative for t in batch]
    )
    if config.loss == "margin-mse":
        positives, negatives = documents[: len(batch)], documents[len(batch) :]
        margins = config.margin_scale * (
            (queries * positives).sum(-1) - (queries * negatives).sum(-1)
        )
        target = torch.tensor(
            [t.teacher_margin for t in batch], dtype=margins.dtype, device=margins.device
        )
        return torch.nn.functional.mse_loss(margins, target)
    logits = config.scale * queries @ documents.T
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(batch), device=logits.device))


def _batches_without_repeated_queries(
    triples: Sequence[_Triple], batch_size: int, generator: random.Random
) -> list[list[_Triple]]:
    order = list(triples)
    generator.shuffle(order)
    batches: list[list[_Triple]] = []
    pending = order
    while pending:
        batch: list[_Triple] = []
        seen: set[str] = set()
        rest = []
        for triple in pending:
            if len(batch) < batch_size and triple.qid not in seen:
                batch.append(triple)
                seen.add(triple.qid)
            else:
                rest.append(triple)
        if len(batch) < 2:
            break
        batches.append(batch)
        pending = rest
    return batches


def train_bi_encoder(
    judgments: Judgments,
    product_texts: Mapping[str, str],
    config: BiEncoderConfig,
    *,
    train_qids: Sequence[str] | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    teacher: TeacherScores | None = None,
    unjudged: Mapping[str, Sequence[str]] | None = None,
    checkpoints: Path | None = None,
    resume: bool = False,
) -> TrainingResult:
    """Fine-tune the bi-encoder; returns the best model by validation NDCG@10 (rerank task).

    ``teacher`` scores (query, product) pairs for the ``margin-mse`` loss, which needs it.
    ``unjudged``: each query's retrieved, unjudged products (see the module docstring).
    ``checkpoints``: a directory where the run's state is saved every ``checkpoint_every``
    steps; with ``resume`` a run continues from the state found there.
    """
    from transformers import AutoModel

    if config.loss == "margin-mse" and teacher is None:
        raise ValueError("the margin-mse loss needs a teacher reranker to score the pairs")

    started = time.perf_counter()
    set_seed(config.seed)
    model_dir = resolve_model_dir(config.base_model)
    tokenizer = PairTokenizer.from_model_dir(model_dir, max_length=config.max_length)
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
    model.to(resolve_device(config.device))
    qids = list(train_qids) if train_qids is not None else list(judgments.queries)
    fit_qids, validation_qids = split_validation(qids, config.validation_fraction, config.seed)
    triples = mine_triples(
        model,
        tokenizer,
        judgments,
        fit_qids,
        product_texts,
        depth=config.hard_negative_depth,
        seed=config.seed,
        unjudged=unjudged if config.unjudged_negatives else None,
        positive_gain=config.positive_gain,
    )
    if not triples:
        raise ValueError("no training triples: no query has both a positive and a negative")
    if config.loss == "margin-mse" and teacher is not None:
        triples = with_teacher_margins(triples, teacher)
    generator = random.Random(config.seed)
    steps_per_epoch = len(_batches_without_repeated_queries(triples, config.batch_size, generator))
    if not steps_per_epoch:
        raise ValueError(
            "the training triples all come from one query: a batch needs two queries or more "
            "(each is the others' in-batch negative)"
        )
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    scheduler = linear_schedule(
        optimizer, total_steps=total_steps, warmup_ratio=config.warmup_ratio
    )

    def cosine_scores(qid: str, product_ids: Sequence[str]) -> np.ndarray:
        texts = [product_texts[pid] for pid in product_ids]
        vectors = _encode(model, tokenizer, [judgments.queries[qid], *texts])
        scores: np.ndarray = vectors[1:] @ vectors[0]
        return scores

    def validation_ndcg() -> float:
        extra = unjudged if config.unjudged_negatives else None
        return rerank_ndcg(cosine_scores, judgments, validation_qids, product_texts, extra=extra)

    result = TrainingResult(
        model=model, tokenizer=tokenizer, train_queries=fit_qids, validation_queries=validation_qids
    )
    checkpointer = None
    if checkpoints is not None:
        checkpointer = TrainingCheckpoints(
            checkpoints,
            every=config.checkpoint_every,
            fingerprint=run_fingerprint(
                config.model_dump(mode="json"), fit_qids, data=_triples_digest(triples)
            ),
        )
    saved = checkpointer.load() if checkpointer is not None and resume else None
    skip = 0
    if saved is None:
        best = BestCheckpoint(model, validation_ndcg())
        result.history.append({"step": 0, "validation_ndcg@10": best.ndcg})
        step = 0
        interval_losses: list[float] = []
    else:
        best = TrainingCheckpoints.restore_training(saved, model, optimizer, scheduler)
        result.history = list(saved["history"])
        step, interval_losses = int(saved["step"]), list(saved["interval_losses"])
        generator.setstate(saved["epoch_generator"])
        skip = int(saved["position"])
    bar = progress_bar(
        total=total_steps,
        initial=step,
        desc="training bi-encoder",
        unit="step",
        disable=not progress,
    )
    while step < total_steps and best.evals_without_gain < config.patience:
        epoch_generator = generator.getstate()
        batches = _batches_without_repeated_queries(triples, config.batch_size, generator)
        for position, batch in enumerate(batches):
            if position < skip:
                continue
            if step >= total_steps or best.evals_without_gain >= config.patience:
                break
            model.train()
            loss = _batch_loss(model, tokenizer, batch, config)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            interval_losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", best=f"{best.ndcg:.4f}", refresh=False)
            if step % eval_every == 0 or step == total_steps:
                ndcg = validation_ndcg()
                mean_loss = float(np.mean(interval_losses))
                interval_losses.clear()
                result.history.append(
                    {"step": step, "train_loss": mean_loss, "validation_ndcg@10": ndcg}
                )
                logger.info("step %d: loss %.4f, validation NDCG@10 %.4f", step, mean_loss, ndcg)
                best.offer(model, ndcg)
            if checkpointer is not None and checkpointer.due(step, total_steps):
                checkpointer.save_training(
                    step=step,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    best=best,
                    history=result.history,
                    interval_losses=interval_losses,
                    epoch_generator=epoch_generator,
                    position=position + 1,
                )
        skip = 0
    bar.close()
    if checkpointer is not None:
        checkpointer.clear()
    best.restore(model)
    model.to("cpu")
    result.best_validation_ndcg = best.ndcg
    result.seconds = time.perf_counter() - started
    return result


def save_bi_encoder(
    result: TrainingResult,
    output_dir: Path,
    *,
    config: BiEncoderConfig,
    data_sha256: str,
    cross_validation: dict[str, Any] | None = None,
) -> Path:
    """Write the bi-encoder directory with its ``shoprank.json`` manifest, atomically
    (with the recipe's ``cross_validation``, when it was cross-validated)."""
    model_dir = resolve_model_dir(config.base_model)
    save_model_dir(
        result.model,
        output_dir,
        tokenizer_source=model_dir,
        manifest={
            "kind": "bi-encoder",
            "base_model": config.base_model,
            "data_sha256": data_sha256,
            "train_query_ids": sorted(result.train_queries + result.validation_queries),
            "hyperparameters": config.model_dump(),
            "history": result.history,
            "metrics": {"validation_ndcg@10": result.best_validation_ndcg},
            "training_seconds": round(result.seconds, 1),
            **({"cross_validation": cross_validation} if cross_validation else {}),
        },
        dtype=config.save_dtype,
    )
    result.output_dir = output_dir
    return output_dir
