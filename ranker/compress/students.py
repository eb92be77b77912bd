"""The student step: distil one student shape, export and quantize it, measure every variant.

For one shape (layers kept, maximum pair length), k-fold cross-validation by query: a
student is distilled on the other folds' queries, exported to ONNX and quantized to int8,
and every variant scores the held-out queries' judged products (the rerank task). Then the
final student learns from every query and is exported, quantized and timed on rerank-50.
The variants' directories and a JSON of their figures (``student-<shape>.json``) are the
step's output.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from indexer.caching import TextCache
from indexer.catalog import CatalogInput
from ranker.backends import ModelTask
from ranker.backends.base import FloatArray
from ranker.catalog_vectors import CatalogVectors
from ranker.compress.distill import StudentConfig, TeacherPair, distill_reranker, save_student
from ranker.compress.inputs import job_data
from ranker.compress.measure import mean, per_query_ndcg, rerank_cases, time_variant
from ranker.compress.parity import ParityGroup, judged_groups
from ranker.compress.quantize import export_and_quantize
from ranker.compress.records import PRECISIONS, CompressConfig, Variant, read_json, write_json
from ranker.compress.teacher import read_teacher_pairs
from ranker.embedder import Embedder
from ranker.evaluation.judgment_files import JudgmentsInput
from ranker.evaluation.judgments import kfold_query_splits
from ranker.reranker import Reranker
from ranker.settings import Settings
from ranker.training.jobs import TrainingData

logger = logging.getLogger(__name__)


def shape_name(layers: int, max_length: int) -> str:
    """How a student shape names its directories: ``l1-t40``."""
    return f"l{layers}-t{max_length}"


def train_students(
    settings: Settings,
    config: CompressConfig,
    *,
    teacher: Path,
    layers: int,
    max_length: int,
    work_dir: Path,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
) -> Path:
    """One student shape, cross-validated, then trained on every query, exported, quantized
    and timed; returns ``student-<shape>.json`` in ``work_dir``.

    ``teacher``: the teacher step's summary. The students are judged and timed as serving
    would run them: their dense prior through the bi-encoder that serves, the products'
    vectors read from the index.
    """
    inputs = student_inputs(settings, teacher, judgments=judgments, catalog=catalog)
    pairs, data, teacher_dir = inputs.pairs, inputs.data, inputs.teacher_dir
    embedder, catalog_vectors = inputs.embedder, inputs.catalog_vectors
    student_config = StudentConfig(
        seed=settings.seed, **{**config.student, "layers": layers, "max_length": max_length}
    )
    shape = shape_name(layers, max_length)
    splits = kfold_query_splits(
        list(data.judgments.queries), folds=config.folds, seed=settings.seed
    )
    loader = _StudentLoader(settings, embedder, catalog_vectors)
    cv, refused = _cross_validate(
        pairs, data, teacher_dir, student_config, splits, work_dir / f"cv-{shape}", loader=loader
    )
    variants = _final_variants(
        pairs, data, teacher_dir, student_config, work_dir / f"student-{shape}", cv, refused
    )
    cases = rerank_cases(data.judgments, data.product_texts)
    for variant in variants:
        if variant.path is not None:
            reranker = loader.load(
                Path(variant.path),
                variant.precision,
                student_config,
                TextCache(settings.rerank.prior_cache_size),
            )
            time_variant(
                variant, reranker, cases, repeats=config.latency_repeats, cv_ndcg=variant.cv_ndcg
            )
    return write_json(
        work_dir / f"student-{shape}.json",
        {
            "shape": shape,
            "student": student_config.model_dump(mode="json"),
            "variants": [asdict(v) for v in variants],
        },
    )


@dataclasses.dataclass(frozen=True)
class StudentInputs:
    """What every student step reads: the teacher step's summary, its scored pairs, the
    shop's data (checked to be what the teacher scored), the serving bi-encoder and the
    index's product vectors."""

    summary: dict[str, Any]
    teacher_dir: Path
    pairs: list[TeacherPair]
    data: TrainingData
    embedder: Embedder
    catalog_vectors: CatalogVectors | None


def student_inputs(
    settings: Settings,
    teacher: Path,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
) -> StudentInputs:
    """Read ``teacher`` (the teacher step's summary) and everything a student learns from."""
    from ranker.loading import load_embedder, open_pipeline

    summary = read_json(teacher)
    pairs = read_teacher_pairs(Path(summary["pairs"]))
    if pairs is None:
        raise FileNotFoundError(f"no teacher scores in {summary['pairs']}; run the teacher step")
    data = job_data(settings, judgments=judgments, catalog=catalog)
    if data.sha256 != summary["data_sha256"]:
        raise ValueError(f"{teacher} was scored on other judgments than those given")
    embedder = load_embedder(settings)
    pipeline = open_pipeline(settings, embedder=embedder, reranker=None)
    catalog_vectors = pipeline.catalog_vectors(embedder)
    return StudentInputs(summary, Path(summary["path"]), pairs, data, embedder, catalog_vectors)


@dataclasses.dataclass
class _StudentLoader:
    """Loads student variants as serving does, with the teacher's prior when they keep one.

    The prior's product vectors come from the index (``catalog``) as in serving, else from
    ``prior_cache``, shared by the cross-validation's variants (they all use the same
    bi-encoder), so each product is embedded once per step.
    """

    settings: Settings
    embedder: Embedder
    catalog: CatalogVectors | None
    prior_cache: TextCache[FloatArray] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.prior_cache = TextCache(self.settings.rerank.prior_cache_size)

    def load(
        self,
        path: Path,
        precision: str,
        config: StudentConfig,
        prior_cache: TextCache[FloatArray] | None = None,
    ) -> Reranker:
        reranker = Reranker.load(
            path,
            backend="torch" if precision == "torch" else "onnx",
            max_length=config.max_length,
            max_query_tokens=config.max_query_tokens,
            embedder=self.embedder,
            token_cache_size=self.settings.rerank.token_cache_size,
            backend_config=self.settings.backends,
        )
        if reranker.prior is not None:
            reranker.prior = dataclasses.replace(
                reranker.prior, cache=prior_cache or self.prior_cache, catalog=self.catalog
            )
        return reranker


def _cross_validate(
    pairs: Sequence[TeacherPair],
    data: TrainingData,
    teacher_dir: Path,
    config: StudentConfig,
    splits: Sequence[tuple[list[str], list[str]]],
    work_dir: Path,
    *,
    loader: _StudentLoader,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Precision -> qid -> NDCG@10 of the student variants, each query scored by the fold
    model that never trained on it; and the variants refused in some fold, with why."""
    scores: dict[str, dict[str, float]] = {precision: {} for precision in PRECISIONS}
    refused: dict[str, str] = {}
    for number, (train_qids, test_qids) in enumerate(splits, start=1):
        logger.info(
            "student %d layers, %d tokens, fold %d/%d",
            config.layers,
            config.max_length,
            number,
            len(splits),
        )
        result = distill_reranker(
            pairs, data.product_texts, data.judgments, teacher_dir, config, train_qids=train_qids
        )
        fold_dir = work_dir / f"fold{number}"
        paths, fold_refused = export_variants(
            result,
            fold_dir,
            teacher_dir=teacher_dir,
            config=config,
            data_sha256=data.sha256,
            groups=judged_groups(data.judgments, data.product_texts),
        )
        refused.update({p: f"fold {number}: {why}" for p, why in fold_refused.items()})
        for precision, path in paths.items():
            if precision in refused:
                continue
            reranker = loader.load(path, precision, config)
            scores[precision].update(
                per_query_ndcg(
                    _judged_scorer(reranker, data), data.judgments, test_qids, data.product_texts
                )
            )
        shutil.rmtree(fold_dir, ignore_errors=True)
    return {p: v for p, v in scores.items() if p not in refused}, refused


def _judged_scorer(reranker: Reranker, data: TrainingData) -> Callable[[str, Sequence[str]], Any]:
    """``score(qid, product_ids)`` through the served Reranker."""

    def score(qid: str, product_ids: Sequence[str]) -> Any:
        texts = [data.product_texts[pid] for pid in product_ids]
        return reranker.score(data.judgments.queries[qid], texts)

    return score


def _final_variants(
    pairs: Sequence[TeacherPair],
    data: TrainingData,
    teacher_dir: Path,
    config: StudentConfig,
    out_dir: Path,
    cv: Mapping[str, Mapping[str, float]],
    cv_refused: Mapping[str, str],
) -> list[Variant]:
    """The final student (every query) and its ONNX fp32 and int8 variants.

    A variant refused by a parity check, here or in a fold, is listed with the reason and
    without a path or a cross-validated figure, so it cannot pass the gate.
    """
    result = distill_reranker(pairs, data.product_texts, data.judgments, teacher_dir, config)
    metrics = {"cv_ndcg@10": {precision: mean(v) for precision, v in cv.items()}}
    paths, refused = export_variants(
        result,
        out_dir,
        teacher_dir=teacher_dir,
        config=config,
        data_sha256=data.sha256,
        metrics=metrics,
        groups=judged_groups(data.judgments, data.product_texts),
    )
    refused = {**cv_refused, **refused}
    variants = []
    for precision in PRECISIONS:
        name = f"student {config.layers}L/{config.max_length}t {PRECISIONS[precision]}"
        variant = Variant(name, None, config.layers, precision, max_length=config.max_length)
        if precision in refused or precision not in paths:
            variant.note = f"refused: {refused.get(precision, 'not made')}"
        else:
            variant.path, variant.cv_ndcg = str(paths[precision]), mean(cv[precision])
        variants.append(variant)
    return variants


def export_variants(
    result: Any,
    out_dir: Path,
    *,
    teacher_dir: Path,
    config: StudentConfig,
    data_sha256: str,
    metrics: Mapping[str, Any] | None = None,
    groups: Sequence[ParityGroup] | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Save the torch student, export it and quantize it: precision -> directory, and the
    precisions a parity check refused, with why. ``groups``: the queries parity is checked
    on (the job's judged queries; None: the sample's)."""
    torch_dir = out_dir / "torch"
    save_student(
        result,
        torch_dir,
        teacher_dir=teacher_dir,
        config=config.model_copy(update={"save_dtype": "float32"}),
        data_sha256=data_sha256,
        metrics=metrics or {},
    )
    return export_and_quantize(torch_dir, out_dir, task=ModelTask.SCORE, groups=groups)
