"""Fine-tunes a cross-encoder reranker from the MiniLM backbone on graded judgments.

Pointwise binary cross-entropy on graded targets (ESCI: E 1, S 0.1, C 0.01, I 0 by default),
AdamW with linear warm-up and decay, validation NDCG@10 on the rerank task of held-out
queries after each evaluation interval, early stopping on it, and the best state kept.

**Dense prior.** With ``prior="dense"`` the model's logit is
``cross_encoder(q, d) + w * cos(E(q), E(d)) + b``, where ``E`` is the frozen serving
bi-encoder and ``w``, ``b`` are learned with it. The cross-encoder head starts at zero,
so training starts from the bi-encoder's ranking and the cross-encoder learns what to
correct, which is what a hundred judged queries can teach. Without it, a cross-encoder
whose pair head starts from scratch ranks below the zero-shot bi-encoder on this data.

**Lexical prior.** With ``lexical_prior`` (the default) the prior also weighs the
query's word coverage of the product's title and text and whether the title names a
word the query negates (:mod:`ranker.lexical_features`):
``w * cos + v . lexical(q, d) + b``. Before the cross-encoder trains, ``w``, ``v`` and
``b`` are fitted alone on the training pairs (logistic regression on the same targets),
so the starting model is the best such linear ranker, and they go on learning with it.

**Unjudged negatives.** With ``unjudged_negatives`` N, each training query also gets up to N
products its retrieval top ``unjudged_depth`` returned but nobody judged
(:mod:`ranker.training.retrieved_negatives`), with the weak target ``unjudged_target``.
Validation then ranks each held-out query's judged products together with its own sampled
unjudged ones (counted as gain 0), so early stopping sees a model that promotes unjudged
products.

**The prior alone.** With ``cross_encoder`` false no transformer trains or serves: the
prior is fitted as above on the training queries, scored on the validation ones, and saved
as a prior-only reranker (:mod:`ranker.prior_files`). That is the model to keep wherever
the cross-encoder adds nothing over its prior: it costs no transformer at serving time.

**Against its prior.** At the end, the kept model and its prior alone (the same learned
``w``, ``v``, ``b``, the cross-encoder's term dropped) are scored on the validation queries,
and ``TrainingResult.over_prior`` is their paired difference with a bootstrap interval: what
the transformer adds, measured where it was not trained.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from indexer.progress import progress_bar
from ranker.evaluation.bootstrap import PairedDifference, paired_values_difference
from ranker.evaluation.judgments import Judgments
from ranker.model_files import read_manifest, resolve_model_dir
from ranker.tokenization import PairTokenizer
from ranker.training.checkpoints import TrainingCheckpoints, run_fingerprint
from ranker.training.common import (
    BestCheckpoint,
    TrainingConfig,
    TrainingResult,
    linear_schedule,
    rerank_ndcg,
    rerank_ndcg_by_query,
    set_seed,
    split_validation,
)
from ranker.training.device import resolve_device
from ranker.training.pair_scoring import pair_logits, score_pairs
from ranker.training.reranker_pairs import (
    LabelledPair,
    PriorScores,
    Unjudged,
    labelled_pairs,
    pairs_digest,
)
from ranker.training.trainable_prior import (
    TrainablePrior,
    add_prior,
    fit_prior_alone,
    prior_alone_scorer,
)

logger = logging.getLogger(__name__)


class CrossEncoderConfig(TrainingConfig):
    """Hyperparameters of one cross-encoder training run."""

    max_length: int = Field(default=96, ge=16, le=512)
    max_query_tokens: int = Field(default=48, ge=1)
    weight_decay: float = Field(default=0.01, ge=0)
    targets: dict[str, float] = Field(
        default_factory=lambda: {"E": 1.0, "S": 0.1, "C": 0.01, "I": 0.0},
        description="Training target per label; numeric labels (gains) are divided by the "
        "largest of them when it is above 1.",
    )
    loss: Literal["pointwise", "listwise"] = Field(
        default="pointwise",
        description="pointwise: BCE on graded targets over mixed batches; listwise: softmax "
        "cross-entropy within one query's products, targets proportional to their gains.",
    )
    prior: Literal["none", "dense"] = "dense"
    cross_encoder: bool = Field(
        default=True,
        description="False: fit the prior alone and save a prior-only reranker (no "
        "transformer); needs prior='dense'.",
    )
    prior_weight: float = Field(
        default=10.0,
        gt=0,
        description="Initial weight of the cosine in a prior without lexical features.",
    )
    prior_learning_rate: float = Field(default=1e-3, gt=0)
    lexical_prior: bool = Field(
        default=True,
        description="The dense prior also weighs lexical features, fitted before training.",
    )
    prior_l2: float = Field(
        default=1e-3, ge=0, description="L2 penalty on the prior's weights when it is fitted."
    )
    title_cosine: bool = Field(
        default=False,
        description="The dense prior also weighs the bi-encoder's cosine of the query with "
        "the product's title (its text's first line); needs lexical_prior. For texts whose "
        "title is followed by a long description.",
    )
    unjudged_negatives: int = Field(
        default=0,
        ge=0,
        description="Retrieved, unjudged products per query added as weak negatives; 0: none.",
    )
    unjudged_target: float = Field(
        default=0.0, ge=0, le=1, description="The training target of an unjudged negative."
    )
    unjudged_depth: int = Field(
        default=50, ge=1, description="Retrieval depth the unjudged negatives are drawn from."
    )

    @model_validator(mode="after")
    def _title_needs_the_fitted_prior(self) -> CrossEncoderConfig:
        if self.title_cosine and not (self.prior == "dense" and self.lexical_prior):
            raise ValueError("title_cosine needs prior='dense' and lexical_prior")
        return self


def train_cross_encoder(
    judgments: Judgments,
    product_texts: Mapping[str, str],
    config: CrossEncoderConfig,
    *,
    priors: PriorScores | None = None,
    train_qids: Sequence[str] | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    unjudged: Unjudged | None = None,
    checkpoints: Path | None = None,
    resume: bool = False,
) -> TrainingResult:
    """Fine-tune a cross-encoder; returns the best model by validation NDCG@10.

    ``train_qids`` limits training to those queries (cross-validation passes its folds);
    a ``validation_fraction`` of them is held out for early stopping. ``priors`` (see
    :func:`dense_priors`) is required when ``config.prior`` is ``dense``; they must cover
    the ``unjudged`` negatives (see the module docstring), which ``config.unjudged_negatives``
    > 0 requires. ``checkpoints``: a directory where the run's state is saved every
    ``checkpoint_every`` steps; with ``resume`` a run continues from the state found there.
    """
    if config.unjudged_negatives and unjudged is None:
        raise ValueError("unjudged_negatives > 0 needs the retrieved unjudged products")
    if not config.unjudged_negatives:
        unjudged = None
    if config.prior == "dense" and priors is None:
        raise ValueError("prior='dense' needs the bi-encoder priors (see dense_priors)")
    if config.prior == "none":
        if not config.cross_encoder:
            raise ValueError("a reranker without its cross-encoder needs prior='dense'")
        priors = None
    from transformers import AutoModelForSequenceClassification

    started = time.perf_counter()
    set_seed(config.seed)
    model_dir = resolve_model_dir(config.base_model)
    tokenizer = PairTokenizer.from_model_dir(model_dir, max_length=config.max_length)
    qids = list(train_qids) if train_qids is not None else list(judgments.queries)
    fit_qids, validation_qids = split_validation(qids, config.validation_fraction, config.seed)
    if not config.cross_encoder and priors is not None:
        return _prior_alone(
            judgments,
            product_texts,
            config,
            priors=priors,
            tokenizer=tokenizer,
            fit_qids=fit_qids,
            validation_qids=validation_qids,
            unjudged=unjudged,
            started=started,
        )
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=1, dtype=torch.float32
    )
    if priors is not None and (read_manifest(model_dir) or {}).get("kind") != "cross-encoder":
        # A fresh head starts at exactly zero, so the starting model *is* the prior: random
        # head logits would otherwise perturb the bi-encoder's ranking before any training.
        torch.nn.init.zeros_(model.classifier.weight)
        torch.nn.init.zeros_(model.classifier.bias)
    lexical = priors is not None and config.lexical_prior
    pairs = labelled_pairs(
        judgments,
        fit_qids,
        product_texts,
        config.targets,
        priors,
        lexical=lexical,
        title=lexical and config.title_cosine,
        unjudged=unjudged,
        unjudged_target=config.unjudged_target,
    )
    if not pairs:
        raise ValueError("no training pairs: no judged product has a text")
    device = resolve_device(config.device)
    model.to(device)
    prior = None
    if priors is not None:
        prior = TrainablePrior.starting(
            pairs,
            lexical=lexical,
            cosine_weight=config.prior_weight,
            l2=config.prior_l2,
            device=device,
        )
    generator = random.Random(config.seed)
    steps_per_epoch = len(_batches(pairs, config, random.Random(config.seed)))
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if prior is not None:
        groups.append(
            {
                "params": prior.parameters(),
                "lr": config.prior_learning_rate,
                "weight_decay": 0.0,
            }
        )
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = linear_schedule(
        optimizer, total_steps=total_steps, warmup_ratio=config.warmup_ratio
    )

    def validation_score(
        qid: str, product_ids: Sequence[str], *, cross_encoder: bool = True
    ) -> np.ndarray:
        if cross_encoder:
            scores = score_pairs(
                model,
                tokenizer,
                judgments.queries[qid],
                [product_texts[pid] for pid in product_ids],
                max_query_tokens=config.max_query_tokens,
            )
        else:
            scores = np.zeros(len(product_ids), dtype=np.float32)
        if prior is not None and priors is not None:
            scores = add_prior(prior, scores, qid, product_ids, judgments, product_texts, priors)
        return scores

    def validation_ndcg() -> float:
        return rerank_ndcg(
            validation_score, judgments, validation_qids, product_texts, extra=unjudged
        )

    result = TrainingResult(
        model=model,
        tokenizer=tokenizer,
        train_queries=fit_qids,
        validation_queries=validation_qids,
    )
    checkpointer = None
    if checkpoints is not None:
        checkpointer = TrainingCheckpoints(
            checkpoints,
            every=config.checkpoint_every,
            fingerprint=run_fingerprint(
                config.model_dump(mode="json"), fit_qids, data=pairs_digest(pairs)
            ),
        )
    saved = checkpointer.load() if checkpointer is not None and resume else None
    skip = 0
    if saved is None:
        # The starting point counts as a candidate: if no step beats it, it comes back.
        best = BestCheckpoint(model, validation_ndcg())
        best_prior = prior.state() if prior is not None else None
        result.history.append({"step": 0, "validation_ndcg@10": best.ndcg})
        logger.info("validation NDCG@10 before training: %.4f", best.ndcg)
        step = 0
        running_loss = 0.0
    else:
        best = TrainingCheckpoints.restore_training(saved, model, optimizer, scheduler)
        if prior is not None:
            prior.restore(saved["prior"])
        best_prior = saved["best_prior"]
        result.history = list(saved["history"])
        step, running_loss = int(saved["step"]), float(saved["running_loss"])
        generator.setstate(saved["epoch_generator"])
        skip = int(saved["position"])
    bar = progress_bar(
        total=total_steps,
        initial=step,
        desc="training reranker",
        unit="step",
        disable=not progress,
    )
    while step < total_steps and best.evals_without_gain < config.patience:
        epoch_generator = generator.getstate()
        for position, chunk in enumerate(_batches(pairs, config, generator)):
            if position < skip:
                continue
            if step >= total_steps or best.evals_without_gain >= config.patience:
                break
            model.train()
            logits = pair_logits(
                model,
                tokenizer,
                [(pair.query, pair.text) for pair in chunk],
                config.max_query_tokens,
            )
            if prior is not None:
                logits = prior.add_to_logits(logits, chunk)
            targets = torch.tensor(
                [pair.target for pair in chunk], dtype=torch.float32, device=device
            )
            loss = _loss(logits, targets, config.loss)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            running_loss += loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", best=f"{best.ndcg:.4f}", refresh=False)
            if step % eval_every == 0 or step == total_steps:
                ndcg = validation_ndcg()
                mean_loss = running_loss / (
                    eval_every if step % eval_every == 0 else step % eval_every
                )
                running_loss = 0.0
                result.history.append(
                    {"step": step, "train_loss": mean_loss, "validation_ndcg@10": ndcg}
                )
                logger.info("step %d: loss %.4f, validation NDCG@10 %.4f", step, mean_loss, ndcg)
                if best.offer(model, ndcg) and prior is not None:
                    best_prior = prior.state()
            if checkpointer is not None and checkpointer.due(step, total_steps):
                checkpointer.save_training(
                    step=step,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    best=best,
                    history=result.history,
                    prior=prior.snapshot() if prior is not None else [],
                    best_prior=best_prior,
                    running_loss=running_loss,
                    epoch_generator=epoch_generator,
                    position=position + 1,
                )
        skip = 0
    bar.close()
    if checkpointer is not None:
        checkpointer.clear()
    best.restore(model)
    if prior is not None and best_prior is not None:
        result.prior = best_prior
        prior.load_state(best_prior)
        result.over_prior = _over_prior(
            validation_score, judgments, validation_qids, product_texts, unjudged
        )
    model.to("cpu")
    result.best_validation_ndcg = best.ndcg
    result.seconds = time.perf_counter() - started
    return result


def _prior_alone(
    judgments: Judgments,
    product_texts: Mapping[str, str],
    config: CrossEncoderConfig,
    *,
    priors: PriorScores,
    tokenizer: PairTokenizer,
    fit_qids: list[str],
    validation_qids: list[str],
    unjudged: Unjudged | None,
    started: float,
) -> TrainingResult:
    """The prior fitted alone on ``fit_qids`` and scored on ``validation_qids``; the
    result has no model (see the module docstring)."""
    prior = fit_prior_alone(judgments, fit_qids, product_texts, config, priors, unjudged=unjudged)
    score = prior_alone_scorer(prior, judgments, product_texts, priors)
    ndcg = rerank_ndcg(score, judgments, validation_qids, product_texts, extra=unjudged)
    logger.info("the prior alone: validation NDCG@10 %.4f", ndcg)
    return TrainingResult(
        model=None,
        tokenizer=tokenizer,
        history=[{"step": 0, "validation_ndcg@10": ndcg}],
        best_validation_ndcg=ndcg,
        train_queries=fit_qids,
        validation_queries=validation_qids,
        seconds=time.perf_counter() - started,
        prior=prior.state(),
    )


def _over_prior(
    score: Any,
    judgments: Judgments,
    qids: Sequence[str],
    product_texts: Mapping[str, str],
    unjudged: Unjudged | None,
) -> PairedDifference | None:
    """The model's validation NDCG@10 minus its prior alone's, paired by query; None
    without validation queries."""
    if not qids:
        return None

    def prior_alone(qid: str, product_ids: Sequence[str]) -> np.ndarray:
        scores: np.ndarray = score(qid, product_ids, cross_encoder=False)
        return scores

    served = rerank_ndcg_by_query(score, judgments, qids, product_texts, extra=unjudged)
    prior = rerank_ndcg_by_query(prior_alone, judgments, qids, product_texts, extra=unjudged)
    return paired_values_difference(served, prior)


def _batches(
    pairs: Sequence[LabelledPair], config: CrossEncoderConfig, generator: random.Random
) -> list[list[LabelledPair]]:
    """One epoch's batches: mixed pairs (pointwise), or one query's pairs each (listwise)."""
    if config.loss == "pointwise":
        order = list(pairs)
        generator.shuffle(order)
        return [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    by_query: dict[str, list[LabelledPair]] = {}
    for pair in pairs:
        by_query.setdefault(pair.qid, []).append(pair)
    batches = []
    for group in by_query.values():
        generator.shuffle(group)
        for start in range(0, len(group), config.batch_size):
            chunk = group[start : start + config.batch_size]
            if len(chunk) > 1 and any(pair.target > 0 for pair in chunk):
                batches.append(chunk)
    generator.shuffle(batches)
    return batches


def _loss(logits: torch.Tensor, targets: torch.Tensor, kind: str) -> torch.Tensor:
    """Pointwise BCE, or softmax cross-entropy against gain-proportional targets.

    The listwise form is the softmax cross-entropy of Bruch et al., "An Analysis of the
    Softmax Cross Entropy Loss for Learning-to-Rank with Binary Relevance" (ICTIR 2019),
    which bounds NDCG.
    """
    if kind == "pointwise":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    distribution = targets / targets.sum()
    return -(distribution * torch.log_softmax(logits, dim=0)).sum()
