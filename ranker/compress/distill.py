"""Distils the served cross-encoder (the teacher) into a shallower, shorter-input student.

The student is the teacher's own cross-encoder with its top layers dropped (the bottom ones
are kept, as Sajjad et al. 2023, "On the effect of dropping layers of pre-trained
transformer models", found best), trained with mean squared error against the teacher's
cross-encoder logits on shorter inputs. A teacher trained with a dense prior hands it on:
the student serves with the same prior, so it learns only the cross-encoder's part
(``keep_prior``). Without it, the student must learn the whole served score, the bi-encoder's
cosine over the full product text included, which two layers on 64 word pieces learn badly.

Training pairs need no labels, only the teacher: judged queries against their judged and
retrieved products, and pseudo-queries cut from product titles against the products that
retrieval finds for them. Labels are used only to stop early on validation NDCG@10.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from indexer.progress import progress_bar
from ranker.evaluation.judgments import Judgments
from ranker.model_files import model_id, read_manifest, weights_sha256
from ranker.tokenization import PairTokenizer
from ranker.training.artifacts import save_model_dir
from ranker.training.common import (
    BestCheckpoint,
    TrainingConfig,
    TrainingResult,
    linear_schedule,
    rerank_ndcg,
    set_seed,
    split_validation,
)
from ranker.training.pair_scoring import pair_logits, score_pairs

logger = logging.getLogger(__name__)

PSEUDO_QUERY_PREFIX = "pseudo-"
"""Query ids of pseudo-queries start with this; judged query ids must not."""


class StudentConfig(TrainingConfig):
    """Shape and training of one reranker student."""

    layers: int = Field(default=2, ge=1, le=24, description="Bottom teacher layers kept.")
    max_length: int = Field(default=64, ge=16, le=512)
    max_query_tokens: int = Field(default=24, ge=1)
    batch_size: int = Field(default=32, ge=2)
    epochs: float = Field(default=1.0, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    evals_per_epoch: int = Field(default=4, ge=1)
    patience: int = Field(default=2, ge=1)
    keep_prior: bool = Field(
        default=True, description="Serve with the teacher's dense prior and learn the rest."
    )


@dataclass(frozen=True, slots=True)
class TeacherPair:
    """One (query, product) pair: the teacher's served score and its dense prior's part."""

    qid: str
    query: str
    product_id: str
    score: float
    prior: float = 0.0

    def target(self, keep_prior: bool) -> float:
        """What a student learns: the whole score, or the part its prior does not give."""
        return self.score - self.prior if keep_prior else self.score

    def offset(self, keep_prior: bool) -> float:
        """What a student's own logit is added to when served."""
        return self.prior if keep_prior else 0.0


def pseudo_queries(
    titles: Sequence[str], count: int, *, seed: int, min_words: int = 2, max_words: int = 5
) -> list[str]:
    """Shopper-like queries cut from product titles: a run of 2 to 5 lower-cased words.

    Punctuation-only tokens are dropped; duplicates are skipped, so fewer than ``count`` can
    come back from a small catalog.
    """
    generator = random.Random(seed)
    tokenized = [words for title in titles if len(words := _words(title)) >= min_words]
    if not tokenized:
        return []
    seen: set[str] = set()
    queries: list[str] = []
    for _ in range(count * 4):
        if len(queries) >= count:
            break
        words = generator.choice(tokenized)
        length = generator.randint(min_words, min(max_words, len(words)))
        start = generator.randint(0, len(words) - length)
        query = " ".join(words[start : start + length])
        if query not in seen:
            seen.add(query)
            queries.append(query)
    return queries


def _words(title: str) -> list[str]:
    return re.findall(r"[\w][\w'.&-]*", title.lower())


ScoreParts = Callable[[str, Sequence[str]], tuple[np.ndarray, np.ndarray]]
"""``(query, texts) -> (cross-encoder logits, prior terms)``, e.g. ``Reranker.score_parts``."""


def teacher_pairs(
    score_parts: ScoreParts,
    queries: Mapping[str, str],
    candidates: Mapping[str, Sequence[str]],
    product_texts: Mapping[str, str],
    *,
    progress: bool = True,
) -> list[TeacherPair]:
    """The teacher's scores for every (query, candidate) pair whose product has a text."""
    pairs: list[TeacherPair] = []
    for qid in progress_bar(queries, desc="teacher scores", unit="query", disable=not progress):
        product_ids = [
            pid for pid in dict.fromkeys(candidates.get(qid, ())) if pid in product_texts
        ]
        if not product_ids:
            continue
        logits, priors = score_parts(queries[qid], [product_texts[pid] for pid in product_ids])
        pairs.extend(
            TeacherPair(qid, queries[qid], pid, float(logit + prior), float(prior))
            for pid, logit, prior in zip(product_ids, logits.tolist(), priors.tolist(), strict=True)
        )
    return pairs


def student_from_teacher(teacher_dir: Path, layers: int) -> Any:
    """The teacher's cross-encoder, fp32, keeping only its bottom ``layers`` layers."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(teacher_dir), num_labels=1, dtype=torch.float32
    )
    encoder_layers = model.base_model.encoder.layer
    if layers > len(encoder_layers):
        raise ValueError(f"the teacher has {len(encoder_layers)} layers; cannot keep {layers}")
    model.base_model.encoder.layer = torch.nn.ModuleList(list(encoder_layers)[:layers])
    model.config.num_hidden_layers = layers
    return model


def distill_reranker(
    pairs: Sequence[TeacherPair],
    product_texts: Mapping[str, str],
    judgments: Judgments,
    teacher_dir: Path,
    config: StudentConfig,
    *,
    train_qids: Iterable[str] | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> TrainingResult:
    """Train a student on the teacher's scores; returns the best one by validation NDCG@10.

    ``train_qids`` are the judged queries it may learn from (all by default); a
    ``validation_fraction`` of them is held out for early stopping, and pairs of judged
    queries outside the rest are never trained on. Pseudo-query pairs are always used.
    """
    started = time.perf_counter()
    set_seed(config.seed)
    judged = set(judgments.queries)
    allowed = set(train_qids) if train_qids is not None else judged
    fit_qids, validation_qids = split_validation(
        sorted(allowed), config.validation_fraction, config.seed
    )
    fit = set(fit_qids)
    training = [p for p in pairs if (p.qid in fit if p.qid in judged else True)]
    if not training:
        raise ValueError("no distillation pairs left to train on")
    tokenizer = PairTokenizer.from_model_dir(teacher_dir, max_length=config.max_length)
    model = student_from_teacher(teacher_dir, config.layers)
    offsets = {(p.qid, p.product_id): p.offset(config.keep_prior) for p in pairs}
    generator = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(training) / config.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = linear_schedule(
        optimizer, total_steps=total_steps, warmup_ratio=config.warmup_ratio
    )

    def student_score(qid: str, product_ids: Sequence[str]) -> np.ndarray:
        logits = score_pairs(
            model,
            tokenizer,
            judgments.queries[qid],
            [product_texts[pid] for pid in product_ids],
            max_query_tokens=config.max_query_tokens,
        )
        offset = np.array([offsets.get((qid, pid), 0.0) for pid in product_ids])
        scores: np.ndarray = logits + offset
        return scores

    def validation_ndcg() -> float:
        return rerank_ndcg(student_score, judgments, validation_qids, product_texts)

    result = TrainingResult(
        model=model, tokenizer=tokenizer, train_queries=fit_qids, validation_queries=validation_qids
    )
    best = BestCheckpoint(model, validation_ndcg())
    result.history.append({"step": 0, "validation_ndcg@10": best.ndcg})
    step = 0
    losses: list[float] = []
    bar = progress_bar(
        total=total_steps, desc="distilling reranker", unit="step", disable=not progress
    )
    while step < total_steps and best.evals_without_gain < config.patience:
        order = list(training)
        generator.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            if step >= total_steps or best.evals_without_gain >= config.patience:
                break
            chunk = order[start : start + config.batch_size]
            model.train()
            logits = pair_logits(
                model,
                tokenizer,
                [(p.query, product_texts[p.product_id]) for p in chunk],
                config.max_query_tokens,
            )
            targets = torch.tensor([p.target(config.keep_prior) for p in chunk])
            loss = torch.nn.functional.mse_loss(logits, targets)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", best=f"{best.ndcg:.4f}", refresh=False)
            if step % eval_every == 0 or step == total_steps:
                ndcg = validation_ndcg()
                result.history.append(
                    {"step": step, "train_mse": float(np.mean(losses)), "validation_ndcg@10": ndcg}
                )
                logger.info(
                    "step %d: mse %.4f, validation NDCG@10 %.4f", step, np.mean(losses), ndcg
                )
                losses.clear()
                best.offer(model, ndcg)
    bar.close()
    best.restore(model)
    result.best_validation_ndcg = best.ndcg
    result.seconds = time.perf_counter() - started
    return result


def save_student(
    result: TrainingResult,
    output_dir: Path,
    *,
    teacher_dir: Path,
    config: StudentConfig,
    data_sha256: str,
    metrics: Mapping[str, Any],
    cross_validation: Mapping[str, Any] | None = None,
) -> Path:
    """Write the student's model directory with its manifest (lineage: teacher, data, shape).

    With ``keep_prior`` the manifest carries the teacher's dense prior, so serving adds it.
    """
    teacher_prior = (read_manifest(teacher_dir) or {}).get("prior")
    manifest = {
        "kind": "cross-encoder",
        "base_model": str(teacher_dir),
        "distilled_from": {
            "model_id": model_id(teacher_dir),
            "weights_sha256": weights_sha256(teacher_dir),
        },
        "data_sha256": data_sha256,
        "hyperparameters": config.model_dump(),
        "serving": {"max_length": config.max_length, "max_query_tokens": config.max_query_tokens},
        "train_query_ids": sorted(result.train_queries + result.validation_queries),
        "history": result.history,
        "metrics": dict(metrics),
        "cross_validation": dict(cross_validation) if cross_validation else None,
        "prior": teacher_prior if config.keep_prior else None,
        "training_seconds": round(result.seconds, 1),
    }
    save_model_dir(
        result.model,
        output_dir,
        tokenizer_source=teacher_dir,
        manifest=manifest,
        dtype=config.save_dtype,
    )
    result.output_dir = output_dir
    return output_dir
