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
from pydantic import Field

from indexer.progress import progress_bar
from ranker.evaluation.bootstrap import PairedDifference, paired_values_difference
from ranker.evaluation.judgments import Judgments
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.model_files import read_manifest, resolve_model_dir
from ranker.tokenization import PairTokenizer, pad_batch
from ranker.training.artifacts import save_model_dir
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
from ranker.training.device import forward_inputs, forward_precision, resolve_device
from ranker.training.reranker_pairs import (
    LabelledPair,
    PriorScores,
    Unjudged,
    fit_prior,
    labelled_pairs,
    pairs_digest,
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
        priors = None
    from transformers import AutoModelForSequenceClassification

    started = time.perf_counter()
    set_seed(config.seed)
    model_dir = resolve_model_dir(config.base_model)
    tokenizer = PairTokenizer.from_model_dir(model_dir, max_length=config.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=1, dtype=torch.float32
    )
    if priors is not None and (read_manifest(model_dir) or {}).get("kind") != "cross-encoder":
        # A fresh head starts at exactly zero, so the starting model *is* the prior: random
        # head logits would otherwise perturb the bi-encoder's ranking before any training.
        torch.nn.init.zeros_(model.classifier.weight)
        torch.nn.init.zeros_(model.classifier.bias)
    qids = list(train_qids) if train_qids is not None else list(judgments.queries)
    fit_qids, validation_qids = split_validation(qids, config.validation_fraction, config.seed)
    lexical = priors is not None and config.lexical_prior
    pairs = labelled_pairs(
        judgments,
        fit_qids,
        product_texts,
        config.targets,
        priors,
        lexical=lexical,
        unjudged=unjudged,
        unjudged_target=config.unjudged_target,
    )
    if not pairs:
        raise ValueError("no training pairs: no judged product has a text")
    if lexical:
        cosine_weight, feature_weights, bias = fit_prior(pairs, config.prior_l2)
        logger.info(
            "fitted prior: cosine %.3f, %s, bias %.3f",
            cosine_weight,
            ", ".join(
                f"{name} {value:.3f}"
                for name, value in zip(LEXICAL_FEATURES, feature_weights, strict=True)
            ),
            bias,
        )
    else:
        cosine_weight = config.prior_weight if priors else 0.0
        feature_weights = []
        bias = -cosine_weight * float(np.mean([pair.prior for pair in pairs]))
    device = resolve_device(config.device)
    model.to(device)

    def floats(values: Any) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    prior_weight = torch.nn.Parameter(floats(cosine_weight))
    lexical_weights = torch.nn.Parameter(floats(feature_weights))
    prior_bias = torch.nn.Parameter(floats(bias))
    generator = random.Random(config.seed)
    steps_per_epoch = len(_batches(pairs, config, random.Random(config.seed)))
    total_steps = max(1, math.ceil(steps_per_epoch * config.epochs))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    groups: list[dict[str, Any]] = [{"params": list(model.parameters())}]
    if priors is not None:
        groups.append(
            {
                "params": [prior_weight, lexical_weights, prior_bias],
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
        if priors is not None:
            prior = np.array([priors[(qid, pid)] for pid in product_ids], dtype=np.float32)
            scores = scores + prior_weight.item() * prior + prior_bias.item()
        if lexical:
            features = lexical_features(
                judgments.queries[qid], [product_texts[pid] for pid in product_ids]
            )
            scores = scores + features @ lexical_weights.detach().cpu().numpy()
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
    prior_parameters = (prior_weight, lexical_weights, prior_bias)
    skip = 0
    if saved is None:
        # The starting point counts as a candidate: if no step beats it, it comes back.
        best = BestCheckpoint(model, validation_ndcg())
        best_prior = _prior_state(*prior_parameters)
        result.history.append({"step": 0, "validation_ndcg@10": best.ndcg})
        logger.info("validation NDCG@10 before training: %.4f", best.ndcg)
        step = 0
        running_loss = 0.0
    else:
        best = TrainingCheckpoints.restore_training(saved, model, optimizer, scheduler)
        with torch.no_grad():
            for parameter, value in zip(prior_parameters, saved["prior"], strict=True):
                parameter.copy_(value)
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
            if priors is not None:
                prior = floats([pair.prior for pair in chunk])
                logits = logits + prior_weight * prior + prior_bias
            if lexical:
                features = floats([pair.lexical for pair in chunk])
                logits = logits + features @ lexical_weights
            targets = floats([pair.target for pair in chunk])
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
                if best.offer(model, ndcg):
                    best_prior = _prior_state(prior_weight, lexical_weights, prior_bias)
            if checkpointer is not None and checkpointer.due(step, total_steps):
                checkpointer.save_training(
                    step=step,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    best=best,
                    history=result.history,
                    prior=[parameter.detach().clone() for parameter in prior_parameters],
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
    if priors is not None:
        result.prior = best_prior
        _load_prior_state(best_prior, *prior_parameters)
        result.over_prior = _over_prior(
            validation_score, judgments, validation_qids, product_texts, unjudged
        )
    model.to("cpu")
    result.best_validation_ndcg = best.ndcg
    result.seconds = time.perf_counter() - started
    return result


def _prior_state(
    weight: torch.Tensor, lexical_weights: torch.Tensor, bias: torch.Tensor
) -> dict[str, Any]:
    """The prior's parameters now, as the manifest records them (lexical weights only when
    it has them)."""
    state: dict[str, Any] = {"weight": weight.item(), "bias": bias.item()}
    if lexical_weights.numel():
        state["lexical_weights"] = dict(
            zip(LEXICAL_FEATURES, lexical_weights.tolist(), strict=True)
        )
    return state


def _load_prior_state(
    state: Mapping[str, Any],
    weight: torch.Tensor,
    lexical_weights: torch.Tensor,
    bias: torch.Tensor,
) -> None:
    """Set the prior's parameters to a state :func:`_prior_state` recorded."""
    with torch.no_grad():
        weight.fill_(float(state["weight"]))
        bias.fill_(float(state["bias"]))
        if lexical_weights.numel():
            named = state["lexical_weights"]
            lexical_weights.copy_(torch.tensor([named[name] for name in LEXICAL_FEATURES]))


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


def save_cross_encoder(
    result: TrainingResult,
    output_dir: Path,
    *,
    config: CrossEncoderConfig,
    data_sha256: str,
    metrics: Mapping[str, Any],
    prior_embedder: Mapping[str, Any] | None = None,
    cross_validation: Mapping[str, Any] | None = None,
) -> Path:
    """Write the model directory with its ``shoprank.json`` manifest, atomically.

    ``prior_embedder`` identifies the bi-encoder whose cosine the model adds (model id,
    weights hash, dimension); serving refuses another one.
    """
    if result.prior is not None and prior_embedder is None:
        raise ValueError("a model trained with a dense prior needs prior_embedder to be saved")
    model_dir = resolve_model_dir(config.base_model)
    manifest = {
        "kind": "cross-encoder",
        "base_model": config.base_model,
        "data_sha256": data_sha256,
        "hyperparameters": config.model_dump(),
        "train_queries": len(result.train_queries),
        "validation_queries": len(result.validation_queries),
        "train_query_ids": sorted(result.train_queries + result.validation_queries),
        "history": result.history,
        "metrics": dict(metrics),
        "cross_validation": dict(cross_validation) if cross_validation else None,
        "prior": (
            {"kind": "dense-cosine", **result.prior, "embedder": dict(prior_embedder)}
            if result.prior is not None and prior_embedder is not None
            else None
        ),
        "training_seconds": round(result.seconds, 1),
    }
    save_model_dir(
        result.model,
        output_dir,
        tokenizer_source=model_dir,
        manifest=manifest,
        dtype=config.save_dtype,
    )
    result.output_dir = output_dir
    return output_dir
