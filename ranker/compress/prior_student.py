"""The 0-layer student: the teacher's served score distilled into its linear prior alone.

The served reranker scores ``w * cos(q, d) + v . lexical(q, d) + b`` plus a cross-encoder's
residual. The distilled students' residual barely varies, so the prior carries the ranking;
this student keeps the prior and drops the transformer. Its ``(w, v, b)`` are fitted
(``ranker.training.reranker_pairs.fit_prior``: binary cross-entropy, L2) to the teacher's
served scores as probabilities, on the teacher step's pairs (judged queries against their
judged and retrieved products, and pseudo-queries), with the cosines of the serving
bi-encoder as the index stores them.

It is judged like the other students (k-fold cross-validation by query, NDCG@10 on the
rerank task), and on the *any-text* path: the products' vectors come from the miss embedder
(``ranker.compress.miss_embedder``), as for texts the index does not hold. The miss embedder
learns from catalog texts that are not judged for any query, so the figure is for texts it
never saw (when the catalog has too few such texts it learns from all of them, and the
report says so). Variants: the miss embedder's int8 and fp32 exports (int8 only when the
served scores keep fp32's rankings: ``SERVED_SCORE_PARITY``), and no miss embedder (the
bi-encoder embeds every text the index lacks). Each variant is a prior-only reranker
directory (no transformer; the miss embedder inside it), timed on rerank-50 with none of
the texts in the index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from indexer.caching import TextCache
from indexer.catalog import CatalogInput
from ranker.backends.no_cross_encoder import NoCrossEncoder
from ranker.catalog_vectors import CatalogVectors, ProductVectors
from ranker.compress.measure import mean, per_query_ndcg, rerank_cases, time_variant
from ranker.compress.miss_embedder import MissEmbedderConfig, distill_miss_embedder
from ranker.compress.parity import (
    SERVED_SCORE_PARITY,
    ParityGroup,
    judged_groups,
    score_agreement,
)
from ranker.compress.records import CompressConfig, Variant, write_json
from ranker.compress.students import student_inputs
from ranker.embedder import Embedder
from ranker.evaluation.judgments import kfold_query_splits
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.prior import MISS_EMBEDDER_DIR, DensePrior
from ranker.prior_files import prior_manifest, write_prior_only
from ranker.reranker import Reranker
from ranker.settings import Settings
from ranker.tokenization import PairTokenizer
from ranker.training.jobs import TrainingData
from ranker.training.reranker_pairs import FittedPrior, LabelledPair, fit_prior

logger = logging.getLogger(__name__)

SHAPE = "l0"
"""How the 0-layer student names its directories and summary (``student-l0.json``)."""
MIN_UNSEEN_TEXTS = 64
"""Fewer unjudged catalog texts than this: the miss embedder learns from every text."""


def train_prior_student(
    settings: Settings,
    config: CompressConfig,
    *,
    teacher: Path,
    work_dir: Path,
    judgments: Any = None,
    catalog: CatalogInput | None = None,
) -> Path:
    """The 0-layer student, cross-validated, fitted on every query, written as prior-only
    reranker directories and timed; returns ``student-l0.json`` in ``work_dir``."""
    inputs = student_inputs(settings, teacher, judgments=judgments, catalog=catalog)
    summary, pairs, data = inputs.summary, inputs.pairs, inputs.data
    teacher_dir, embedder, stored = inputs.teacher_dir, inputs.embedder, inputs.catalog_vectors
    vectors = ProductVectors(embedder, stored)
    labelled = _labelled_pairs(pairs, data.product_texts, embedder, vectors)
    groups = judged_groups(data.judgments, data.product_texts)
    miss_config = MissEmbedderConfig(seed=settings.seed, **config.miss_embedder)
    miss_dirs, miss_notes = _miss_embedders(
        settings, data, vectors, miss_config, work_dir / f"miss-embedder-{SHAPE}", groups=groups
    )
    tokenizer = PairTokenizer.from_model_dir(teacher_dir, max_length=settings.rerank.max_length)
    misses = {
        name: None if path is None else _load_miss(path, miss_config, settings)
        for name, path in miss_dirs.items()
    }
    caches = {name: TextCache[Any](len(data.product_texts) + 1) for name in misses}
    splits = kfold_query_splits(
        list(data.judgments.queries), folds=config.folds, seed=settings.seed
    )
    cv: dict[str, dict[str, float]] = {name: {} for name in misses}
    indexed: dict[str, float] = {}
    for number, (_, test_qids) in enumerate(splits, start=1):
        logger.info("student 0 layers (the prior alone), fold %d/%d", number, len(splits))
        test = set(test_qids)
        fitted = fit_prior([p for p in labelled if p.qid not in test], config.prior_l2)
        for name, miss in misses.items():
            reranker = _prior_reranker(
                fitted, embedder, tokenizer, miss=miss, cache=caches[name], catalog=None
            )
            cv[name].update(_ndcg(reranker, data, test_qids))
        if stored is not None:
            reranker = _prior_reranker(fitted, embedder, tokenizer, miss=None, catalog=stored)
            indexed.update(_ndcg(reranker, data, test_qids))
    final = fit_prior(labelled, config.prior_l2)
    refused = _served_parity(misses, caches, groups, final, embedder=embedder, tokenizer=tokenizer)
    out_dir = work_dir / f"student-{SHAPE}"
    cases = rerank_cases(data.judgments, data.product_texts)
    variants = []
    for name, miss_dir in miss_dirs.items():
        precision = next((p for p in ("onnx-int8", "onnx-fp32") if p.split("-")[1] in name), "")
        variant = Variant(
            f"student 0L (prior only), {name}",
            None,
            0,
            precision or "none",
            max_length=miss_config.max_length if precision else None,
        )
        note = [f"any-text path; indexed texts: CV NDCG@10 {mean(indexed):.4f}"] if indexed else []
        note += miss_notes.get(name, [])
        if name in refused:
            variant.note = "; ".join([f"refused: {refused[name]}", *note])
            variants.append(variant)
            continue
        path = write_prior_reranker(
            out_dir / name,
            final,
            embedder=embedder,
            teacher_dir=teacher_dir,
            miss_dir=miss_dir,
            miss_config=miss_config,
            extra={
                "data_sha256": data.sha256,
                "teacher": summary["teacher"],
                "metrics": {
                    "cv_ndcg@10_any_text": mean(cv[name]),
                    "cv_ndcg@10_indexed": mean(indexed) if indexed else None,
                },
            },
        )
        variant.path = str(path)
        reranker = Reranker.load(
            path,
            max_length=settings.rerank.max_length,
            embedder=embedder,
            backend_config=settings.backends,
        )
        time_variant(
            variant, reranker, cases, repeats=config.latency_repeats, cv_ndcg=mean(cv[name])
        )
        variant.note = "; ".join(note)
        variants.append(variant)
    return write_json(
        work_dir / f"student-{SHAPE}.json",
        {
            "shape": SHAPE,
            "student": {"layers": 0, "miss_embedder": miss_config.model_dump(mode="json")},
            "variants": [asdict(v) for v in variants],
        },
    )


def _labelled_pairs(
    pairs: Sequence[Any],
    texts: Mapping[str, str],
    embedder: Embedder,
    vectors: ProductVectors,
) -> list[LabelledPair]:
    """The teacher's pairs as ``fit_prior`` reads them: the teacher's served score as a
    probability (the target), the bi-encoder's cosine and the lexical features."""
    by_query: dict[tuple[str, str], list[Any]] = {}
    for pair in pairs:
        if pair.product_id in texts:
            by_query.setdefault((pair.qid, pair.query), []).append(pair)
    queries = [query for _, query in by_query]
    query_vectors = embedder.embed(queries) if queries else np.zeros((0, embedder.dimension))
    labelled = []
    for ((qid, query), group), query_vector in zip(by_query.items(), query_vectors, strict=True):
        documents = [texts[p.product_id] for p in group]
        cosines = vectors.of(documents) @ query_vector
        features = lexical_features(query, documents)
        for pair, document, cosine, row in zip(group, documents, cosines, features, strict=True):
            target = 1.0 / (1.0 + math.exp(-pair.score))
            labelled.append(
                LabelledPair(qid, query, document, target, float(cosine), tuple(row.tolist()))
            )
    return labelled


def _miss_embedders(
    settings: Settings,
    data: TrainingData,
    vectors: ProductVectors,
    config: MissEmbedderConfig,
    out_dir: Path,
    *,
    groups: Sequence[ParityGroup],
) -> tuple[dict[str, Path | None], dict[str, list[str]]]:
    """Variant name -> the miss embedder's directory (None: the bi-encoder embeds misses),
    and notes per variant (its alignment, what a parity check refused)."""
    from ranker.loading import uncompressed
    from ranker.serving_models import serving_source

    judged = {pid for products in data.judgments.qrels.values() for pid in products}
    unseen = [text for pid, text in data.product_texts.items() if pid not in judged]
    note = f"miss embedder learnt from {len(unseen)} unjudged catalog texts"
    if len(unseen) < MIN_UNSEEN_TEXTS:
        unseen = list(data.product_texts.values())
        note = f"miss embedder learnt from all {len(unseen)} catalog texts, the judged included"
    result = distill_miss_embedder(
        serving_source(uncompressed(settings), "embedder").path,
        unseen,
        vectors.of(unseen),
        config,
        out_dir,
        groups=groups,
    )
    shape = f"miss embedder {config.layers}L/{config.max_length}t"
    alignment = f"{note}; mean cosine {result.validation_cosine:.4f} to the bi-encoder"
    dirs: dict[str, Path | None] = {}
    notes: dict[str, list[str]] = {}
    for precision in ("onnx-int8", "onnx-fp32"):
        name = f"{shape} {precision.replace('-', ' ')}"
        if precision in result.variants:
            dirs[name] = result.variants[precision]
            notes[name] = [alignment]
        else:
            logger.warning("%s refused: %s", name, result.refused.get(precision))
    dirs["bi-encoder for misses"] = None
    return dirs, notes


def _load_miss(path: Path, config: MissEmbedderConfig, settings: Settings) -> Embedder:
    return Embedder.load(
        path,
        backend="onnx",
        max_length=config.max_length,
        batch_size=settings.embedder.batch_size,
        backend_config=settings.backends,
    )


def _prior_reranker(
    fitted: FittedPrior,
    embedder: Embedder,
    tokenizer: PairTokenizer,
    *,
    miss: Embedder | None,
    catalog: CatalogVectors | None,
    cache: TextCache[Any] | None = None,
) -> Reranker:
    """A prior-only reranker on ``fitted``, as serving builds it from a directory."""
    weight, lexical, bias = fitted.weight, fitted.lexical_weights, fitted.bias
    prior = DensePrior(
        weight=weight,
        bias=bias,
        embedder=embedder,
        lexical_weights=tuple(lexical),
        cache=cache if cache is not None else TextCache(0),
        catalog=catalog,
        miss_embedder=miss,
    )
    return Reranker(
        tokenizer=tokenizer,
        backend=NoCrossEncoder(),
        model_id="prior-only",
        weights_sha256="-",
        prior=prior,
    )


def _ndcg(reranker: Reranker, data: TrainingData, qids: Sequence[str]) -> dict[str, float]:
    def score(qid: str, product_ids: Sequence[str]) -> Any:
        texts = [data.product_texts[pid] for pid in product_ids]
        return reranker.score(data.judgments.queries[qid], texts)

    return per_query_ndcg(score, data.judgments, qids, data.product_texts)


def _served_parity(
    misses: Mapping[str, Embedder | None],
    caches: Mapping[str, TextCache[Any]],
    groups: Sequence[ParityGroup],
    fitted: FittedPrior,
    *,
    embedder: Embedder,
    tokenizer: PairTokenizer,
) -> dict[str, str]:
    """Refusals of int8 miss embedders whose served scores (the prior, every text embedded
    by the miss embedder) rank unlike fp32's, per query: see ``SERVED_SCORE_PARITY``."""
    refused: dict[str, str] = {}
    for name, miss in misses.items():
        reference = misses.get(name.replace("int8", "fp32"))
        if miss is None or "int8" not in name or reference is None:
            continue
        reference_scores, candidate_scores = (
            _prior_reranker(
                fitted, embedder, tokenizer, miss=m, catalog=None, cache=caches[n]
            ).score
            for n, m in ((name.replace("int8", "fp32"), reference), (name, miss))
        )
        agreement = score_agreement(groups, reference=reference_scores, candidate=candidate_scores)
        failed = SERVED_SCORE_PARITY.failures(agreement)
        if failed:
            refused[name] = f"served scores against fp32: {'; '.join(failed)}"
        logger.info("%s: served-score parity %s", name, agreement.as_dict())
    return refused


def write_prior_reranker(
    out_dir: Path,
    fitted: FittedPrior,
    *,
    embedder: Embedder,
    teacher_dir: Path,
    miss_dir: Path | None,
    miss_config: MissEmbedderConfig,
    extra: Mapping[str, Any],
) -> Path:
    """A prior-only reranker directory (:func:`~ranker.prior_files.write_prior_only`) with
    the teacher's config and tokenizer and the miss embedder inside."""
    weight, lexical, bias = fitted.weight, fitted.lexical_weights, fitted.bias
    state = {
        "weight": weight,
        "bias": bias,
        "lexical_weights": dict(zip(LEXICAL_FEATURES, lexical, strict=True)),
    }
    identity = {
        "model_id": embedder.identity.model_id,
        "weights_sha256": embedder.identity.weights_sha256,
        "dimension": embedder.dimension,
    }
    prior = prior_manifest(state, identity)
    if miss_dir is not None:
        prior["miss_embedder"] = {"path": MISS_EMBEDDER_DIR, "max_length": miss_config.max_length}
    return write_prior_only(
        out_dir, prior, files_from=teacher_dir, manifest=extra, miss_dir=miss_dir
    )
