"""`shoprank compress`: distil the served reranker, export, quantize, gate, serve the winner.

:func:`compress_models` first compresses the bi-encoder (see ``ranker.compress.embedder``),
then the reranker with the bi-encoder serving will use:

1. The teacher (the reranker serving would load, its dense prior included) scores judged
   queries and pseudo-queries against the products retrieval finds for them.
2. For each student shape, k-fold cross-validation by query: a student is distilled on the
   other folds' queries, exported to ONNX and quantized to int8, and every variant scores
   the held-out queries' judged products (the rerank task).
3. The final students learn from every query and are exported, quantized and timed on
   rerank-50.
4. A variant passes the gate when its cross-validated NDCG@10 is at least the teacher's
   minus ``max_ndcg_drop``. The fastest that passes is copied to
   ``<models>/reranker-compressed``, which serving prefers (see ``ranker.loading``).

The teacher's figure is its own cross-validated NDCG@10 on the rerank task when its
manifest records one (``shoprank train --folds``): like the students', an estimate for
queries it never saw. Otherwise it is the teacher's NDCG on the same queries, in-sample
for a teacher trained on them, which favours the teacher.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from indexer.catalog import load_products, sample_catalog_path
from indexer.stores.atomic import atomic_write_bytes
from ranker.backends import ModelTask
from ranker.backends.base import FloatArray
from ranker.caching import TextCache
from ranker.catalog_vectors import CatalogVectors
from ranker.compress.distill import (
    PSEUDO_QUERY_PREFIX,
    StudentConfig,
    TeacherPair,
    distill_reranker,
    pseudo_queries,
    save_student,
    teacher_pairs,
)
from ranker.compress.embedder import EmbedderReport, embedder_table
from ranker.compress.export import export_model, install_gated
from ranker.compress.parity import ParityError
from ranker.compress.quantize import Precision, quantize_model
from ranker.compress.timing import time_calls
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments, kfold_query_splits
from ranker.evaluation.metrics import ndcg_at_k, ranked_ids
from ranker.loading import COMPRESSED_RERANKER_DIR, reranker_dir
from ranker.model_files import read_manifest
from ranker.pipeline import SearchPipeline
from ranker.reranker import Reranker
from ranker.settings import Settings
from ranker.training.jobs import TrainingData, load_training_data

logger = logging.getLogger(__name__)

TEACHER = "teacher (torch fp32)"
PRECISIONS = {"torch": "torch fp32", "onnx-fp32": "onnx fp32", "onnx-int8": "onnx int8"}
"""Each student's variants: directory name -> how the report names it."""
RERANK_DEPTH = 50


class CompressConfig(BaseModel):
    """What `shoprank compress` tries and how it judges."""

    layers: tuple[int, ...] = Field(default=(1, 2), description="Teacher layers students keep.")
    max_lengths: tuple[int, ...] = Field(
        default=(40, 48), description="Students' maximum pair lengths (word pieces)."
    )
    embedder_max_lengths: tuple[int, ...] = Field(
        default=(64,),
        description="Shorter input lengths (word pieces) the bi-encoder is also tried at.",
    )
    folds: int = Field(default=3, ge=2)
    pseudo_queries: int = Field(default=1000, ge=0)
    judged_query_depth: int = Field(
        default=30, ge=0, description="Retrieved products scored per judged query."
    )
    pseudo_query_depth: int = Field(default=10, ge=1)
    max_ndcg_drop: float = Field(default=0.01, ge=0)
    latency_repeats: int = Field(default=30, ge=1)
    student: dict[str, Any] = Field(
        default_factory=dict, description="StudentConfig overrides (max_length, epochs, ...)."
    )


@dataclass
class Variant:
    """One model variant: its speed, size and cross-validated quality."""

    name: str
    path: str | None
    layers: int
    precision: str
    max_length: int | None = None
    size_mb: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    pairs_per_s: float = 0.0
    cv_ndcg: float | None = None
    passes: bool = False
    note: str = ""


@dataclass
class CompressionReport:
    """Every variant side by side, the teacher's NDCG and the one served."""

    teacher: str
    teacher_cv_ndcg: float
    folds: int
    gate_ndcg: float | None = None
    """The teacher's figure the gate holds students to (see the module doc)."""
    gate_basis: str = "the teacher on the same queries"
    variants: list[Variant] = field(default_factory=list)
    served: str | None = None
    served_path: str | None = None
    seconds: float = 0.0

    @property
    def gate_value(self) -> float:
        """The teacher's NDCG@10 the gate compares with."""
        return self.teacher_cv_ndcg if self.gate_ndcg is None else self.gate_ndcg

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)


def compress_models(
    settings: Settings, config: CompressConfig, *, work_dir: Path
) -> tuple[EmbedderReport, CompressionReport]:
    """The bi-encoder, then the reranker: each variant gated, the winners installed, one
    report (``report.md``, ``.png``, ``.json`` in ``work_dir``).

    The teacher scores with the models it was trained with (uncompressed); the students are
    judged and timed with the bi-encoder serving will use, the compressed one if it passed.
    """
    from ranker.compress.embedder import compress_embedder
    from ranker.loading import load_embedder, open_serving_pipeline, uncompressed

    sources = uncompressed(settings)
    data = load_training_data(settings)
    embedder_report = compress_embedder(
        sources,
        data,
        work_dir=work_dir / "embedder",
        shorter_lengths=config.embedder_max_lengths,
    )
    pipeline = open_serving_pipeline(sources)
    report = compress_reranker(
        sources,
        pipeline,
        config,
        work_dir=work_dir,
        data=data,
        student_embedder=load_embedder(settings),
        embedder_report=embedder_report,
    )
    return embedder_report, report


def compress_reranker(
    settings: Settings,
    pipeline: SearchPipeline,
    config: CompressConfig,
    *,
    work_dir: Path,
    data: TrainingData | None = None,
    student_embedder: Embedder | None = None,
    embedder_report: EmbedderReport | None = None,
) -> CompressionReport:
    """Run every step; writes variants and the report under ``work_dir``.

    ``data``: the judgments and product texts (loaded from settings when not given);
    ``student_embedder``: the bi-encoder the students' dense prior uses (the pipeline's by
    default); ``embedder_report`` is added to the written report.
    """
    started = time.perf_counter()
    if pipeline.reranker is None:
        raise ValueError("compress needs the teacher reranker loaded in the pipeline")
    student_embedder = student_embedder or pipeline.embedder
    teacher = pipeline.reranker
    teacher_dir = reranker_dir(settings)
    data = data or load_training_data(settings)
    judgments = data.judgments
    # As serving does, every prior reads the products' vectors from the index.
    catalog = pipeline.catalog_vectors()
    if teacher.prior is not None:
        teacher.prior = dataclasses.replace(teacher.prior, catalog=catalog)
    pairs = cached_teacher_pairs(
        pipeline,
        data,
        config,
        work_dir / "teacher-pairs.jsonl",
        fast_teacher=lambda: _onnx_teacher(teacher_dir, teacher, work_dir, settings),
    )
    teacher_score = {(p.qid, p.product_id): p.score for p in pairs}
    splits = kfold_query_splits(list(judgments.queries), folds=config.folds, seed=settings.seed)
    teacher_ndcg = _per_query_ndcg(
        lambda qid, ids: np.array([teacher_score[(qid, pid)] for pid in ids]),
        judgments,
        list(judgments.queries),
        data.product_texts,
    )
    report = CompressionReport(
        teacher=teacher.model_id, teacher_cv_ndcg=_mean(teacher_ndcg), folds=config.folds
    )
    report.gate_ndcg = stored_cv_ndcg(read_manifest(teacher_dir) or {})
    if report.gate_ndcg is not None:
        report.gate_basis = "the teacher's own cross-validated figure (its manifest)"
    cases = rerank_cases(judgments, data.product_texts)
    report.variants.append(
        _timed(
            Variant(TEACHER, str(teacher_dir), _layers(teacher_dir), "fp32"),
            teacher,
            cases,
            config,
            cv_ndcg=report.teacher_cv_ndcg,
        )
    )
    prior_cache: TextCache[FloatArray] = TextCache(settings.rerank.prior_cache_size)
    for layers, max_length in itertools.product(config.layers, config.max_lengths):
        student_config = StudentConfig(
            seed=settings.seed,
            **{**config.student, "layers": layers, "max_length": max_length},
        )
        shape = f"l{layers}-t{max_length}"
        cv = _cross_validate(
            pairs,
            data,
            teacher_dir,
            student_config,
            splits,
            work_dir / f"cv-{shape}",
            embedder=student_embedder,
            settings=settings,
            prior_cache=prior_cache,
            catalog=catalog,
        )
        final = _student_variants(
            pairs, data, teacher_dir, student_config, work_dir / f"student-{shape}", *cv
        )
        for variant in final:
            if variant.path is not None:
                reranker = _load_student(
                    Path(variant.path),
                    variant.precision,
                    student_config,
                    student_embedder,
                    settings,
                    TextCache(settings.rerank.prior_cache_size),
                    catalog,
                )
                _timed(variant, reranker, cases, config, cv_ndcg=variant.cv_ndcg)
            report.variants.append(variant)
    best = apply_gate(report.variants, report.gate_value, config.max_ndcg_drop)
    if best is not None:
        served = settings.models_path / COMPRESSED_RERANKER_DIR
        _install(Path(str(best.path)), served, best, report)
        report.served, report.served_path = best.name, str(served)
    else:
        logger.warning("no student passed the gate; serving stays on the teacher")
    report.seconds = time.perf_counter() - started
    write_report(report, work_dir, max_ndcg_drop=config.max_ndcg_drop, embedder=embedder_report)
    return report


def stored_cv_ndcg(manifest: Mapping[str, Any]) -> float | None:
    """The rerank task's cross-validated NDCG@10 a trained model's manifest records."""
    stored = (manifest.get("cross_validation") or {}).get("rerank")
    if isinstance(stored, Mapping) and isinstance(stored.get("ndcg@10"), int | float):
        return float(stored["ndcg@10"])
    return None


def apply_gate(
    variants: Sequence[Variant], teacher_ndcg: float, max_ndcg_drop: float
) -> Variant | None:
    """Mark each variant as passing or not; the fastest passing student, if any.

    A variant passes when its cross-validated NDCG@10 is at least ``teacher_ndcg`` minus
    ``max_ndcg_drop``; one without a figure fails. The teacher is never the winner.
    """
    floor = teacher_ndcg - max_ndcg_drop
    for variant in variants:
        variant.passes = variant.cv_ndcg is not None and variant.cv_ndcg >= floor
    passing = [v for v in variants if v.passes and v.name != TEACHER]
    return min(passing, key=lambda v: v.p50_ms) if passing else None


def cached_teacher_pairs(
    pipeline: SearchPipeline,
    data: TrainingData,
    config: CompressConfig,
    path: Path,
    *,
    fast_teacher: Callable[[], Reranker | None] | None = None,
) -> list[TeacherPair]:
    """Teacher scores for judged and pseudo-queries, reused when teacher and inputs match.

    ``fast_teacher`` makes, when scores must be computed, a faster copy of the same function
    (the teacher's fp32 ONNX export, which parity holds to 1e-3 of torch); None: torch.
    """
    teacher = pipeline.reranker
    assert teacher is not None
    key = {
        "format": 2,
        "teacher_weights_sha256": teacher.weights_sha256,
        "data_sha256": data.sha256,
        "pseudo_queries": config.pseudo_queries,
        "judged_query_depth": config.judged_query_depth,
        "pseudo_query_depth": config.pseudo_query_depth,
    }
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        if lines and json.loads(lines[0]) == key:
            logger.info("reusing %d teacher scores from %s", len(lines) - 1, path)
            return [TeacherPair(**json.loads(line)) for line in lines[1:]]
    queries, candidates = distillation_queries(pipeline, data.judgments, config)
    scorer = (fast_teacher() if fast_teacher is not None else None) or teacher
    pairs = teacher_pairs(scorer.score_parts, queries, candidates, data.product_texts)
    body = "\n".join(json.dumps(asdict(p)) for p in pairs)
    atomic_write_bytes(path, (json.dumps(key) + "\n" + body + "\n").encode())
    return pairs


def _onnx_teacher(
    teacher_dir: Path, teacher: Reranker, work_dir: Path, settings: Settings
) -> Reranker | None:
    """The teacher exported to fp32 ONNX, serving as ``teacher`` does; None without ONNX
    Runtime or when the export misses parity (torch scores then)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        exported = export_model(teacher_dir, work_dir / "teacher-onnx-fp32", task=ModelTask.SCORE)
    except ParityError as exc:
        logger.warning("the teacher scores on torch: %s", exc)
        return None
    onnx_teacher = Reranker.load(
        exported.path,
        backend="onnx",
        max_length=teacher.tokenizer.max_length,
        batch_size=teacher.batch_size,
        max_query_tokens=teacher.max_query_tokens,
        embedder=teacher.prior.embedder if teacher.prior is not None else None,
        backend_config=settings.backends,
    )
    onnx_teacher.prior = teacher.prior  # the same prior, with its cache and stored vectors
    return onnx_teacher


def distillation_queries(
    pipeline: SearchPipeline, judgments: Judgments, config: CompressConfig
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Judged queries with their judged and retrieved products; pseudo-queries with retrieved."""
    queries = dict(judgments.queries)
    candidates: dict[str, list[str]] = {}
    for qid, query in judgments.queries.items():
        retrieved = [h.product_id for h in pipeline.retrieve(query, k=config.judged_query_depth)]
        candidates[qid] = list(dict.fromkeys([*judgments.qrels[qid], *retrieved]))
    titles = [product.title for product in load_products(sample_catalog_path())]
    for number, query in enumerate(pseudo_queries(titles, config.pseudo_queries, seed=13)):
        qid = f"{PSEUDO_QUERY_PREFIX}{number}"
        queries[qid] = query
        candidates[qid] = [
            h.product_id for h in pipeline.retrieve(query, k=config.pseudo_query_depth)
        ]
    return queries, candidates


def rerank_cases(
    judgments: Judgments, texts: Mapping[str, str], depth: int = RERANK_DEPTH
) -> list[tuple[str, list[str]]]:
    """Each judged query with up to ``depth`` of its judged products' texts."""
    return [
        (query, [texts[pid] for pid in judgments.qrels[qid] if pid in texts][:depth])
        for qid, query in judgments.queries.items()
    ]


def _cross_validate(
    pairs: Sequence[TeacherPair],
    data: TrainingData,
    teacher_dir: Path,
    config: StudentConfig,
    splits: Sequence[tuple[list[str], list[str]]],
    work_dir: Path,
    *,
    embedder: Embedder,
    settings: Settings,
    prior_cache: TextCache[FloatArray],
    catalog: CatalogVectors | None,
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
        paths, fold_refused = _export_variants(
            result, fold_dir, teacher_dir, config, data.sha256, {}
        )
        refused.update({p: f"fold {number}: {why}" for p, why in fold_refused.items()})
        for precision, path in paths.items():
            if precision in refused:
                continue
            reranker = _load_student(
                path, precision, config, embedder, settings, prior_cache, catalog
            )
            scores[precision].update(
                _per_query_ndcg(
                    _judged_scorer(reranker, data), data.judgments, test_qids, data.product_texts
                )
            )
        shutil.rmtree(fold_dir, ignore_errors=True)
    return {p: v for p, v in scores.items() if p not in refused}, refused


def _load_student(
    path: Path,
    precision: str,
    config: StudentConfig,
    embedder: Embedder,
    settings: Settings,
    prior_cache: TextCache[FloatArray],
    catalog: CatalogVectors | None,
) -> Reranker:
    """A student variant as serving loads it, with the teacher's prior when it keeps one.

    The prior's product vectors come from the index (``catalog``) as in serving, else from
    ``prior_cache``, shared by every variant (they all use the same bi-encoder), so each
    product is embedded once per job.
    """
    reranker = Reranker.load(
        path,
        backend="torch" if precision == "torch" else "onnx",
        max_length=config.max_length,
        max_query_tokens=config.max_query_tokens,
        embedder=embedder,
        token_cache_size=settings.rerank.token_cache_size,
        backend_config=settings.backends,
    )
    if reranker.prior is not None:
        reranker.prior = dataclasses.replace(reranker.prior, cache=prior_cache, catalog=catalog)
    return reranker


def _judged_scorer(reranker: Reranker, data: TrainingData) -> Callable[[str, Sequence[str]], Any]:
    """``score(qid, product_ids)`` through the served Reranker."""

    def score(qid: str, product_ids: Sequence[str]) -> Any:
        texts = [data.product_texts[pid] for pid in product_ids]
        return reranker.score(data.judgments.queries[qid], texts)

    return score


def _student_variants(
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
    metrics = {"cv_ndcg@10": {precision: _mean(v) for precision, v in cv.items()}}
    paths, refused = _export_variants(result, out_dir, teacher_dir, config, data.sha256, metrics)
    refused = {**cv_refused, **refused}
    variants = []
    for precision in PRECISIONS:
        name = f"student {config.layers}L/{config.max_length}t {PRECISIONS[precision]}"
        variant = Variant(name, None, config.layers, precision, max_length=config.max_length)
        if precision in refused or precision not in paths:
            variant.note = f"refused: {refused.get(precision, 'not made')}"
        else:
            variant.path, variant.cv_ndcg = str(paths[precision]), _mean(cv[precision])
        variants.append(variant)
    return variants


def _export_variants(
    result: Any,
    out_dir: Path,
    teacher_dir: Path,
    config: StudentConfig,
    data_sha256: str,
    metrics: Mapping[str, Any],
) -> tuple[dict[str, Path], dict[str, str]]:
    """Save the torch student, export it and quantize it; parity refusals are returned."""
    torch_dir = out_dir / "torch"
    save_student(
        result,
        torch_dir,
        teacher_dir=teacher_dir,
        config=config.model_copy(update={"save_dtype": "float32"}),
        data_sha256=data_sha256,
        metrics=metrics,
    )
    paths = {"torch": torch_dir}
    try:
        paths["onnx-fp32"] = export_model(
            torch_dir, out_dir / "onnx-fp32", task=ModelTask.SCORE
        ).path
    except ParityError as exc:
        logger.warning("%s", exc)
        return paths, {"onnx-fp32": str(exc), "onnx-int8": "no fp32 export to quantize"}
    try:
        paths["onnx-int8"] = quantize_model(
            paths["onnx-fp32"], out_dir / "onnx-int8", precision=Precision.QINT8
        ).path
    except ParityError as exc:
        logger.warning("%s", exc)
        return paths, {"onnx-int8": str(exc)}
    return paths, {}


def _timed(
    variant: Variant,
    reranker: Reranker,
    cases: Sequence[tuple[str, list[str]]],
    config: CompressConfig,
    *,
    cv_ndcg: float | None,
) -> Variant:
    def call(i: int) -> object:
        query, documents = cases[i % len(cases)]
        return reranker.score(query, documents)

    timing = time_calls(call, repeats=config.latency_repeats)
    variant.p50_ms, variant.p99_ms = timing.p50_ms, timing.p99_ms
    mean_docs = float(np.mean([len(documents) for _, documents in cases]))
    variant.pairs_per_s = mean_docs / timing.mean_ms * 1e3
    variant.cv_ndcg = cv_ndcg
    if variant.path is not None:
        variant.size_mb = _size_mb(Path(variant.path))
    return variant


def _install(source: Path, target: Path, variant: Variant, report: CompressionReport) -> None:
    """Copy the winner into the served location with the gate's verdict in its manifest."""
    install_gated(
        source,
        target,
        {
            "variant": variant.name,
            "cv_ndcg@10": variant.cv_ndcg,
            "teacher": report.teacher,
            "teacher_ndcg@10": report.teacher_cv_ndcg,
            "gate_ndcg@10": report.gate_value,
            "p50_ms": variant.p50_ms,
        },
    )


def _per_query_ndcg(
    score: Callable[[str, Sequence[str]], Any],
    judgments: Judgments,
    qids: Sequence[str],
    texts: Mapping[str, str],
) -> dict[str, float]:
    values = {}
    for qid in qids:
        ids = [pid for pid in judgments.qrels[qid] if pid in texts]
        scores = np.asarray(score(qid, ids), dtype=np.float64)
        values[qid] = ndcg_at_k(
            ranked_ids(dict(zip(ids, scores.tolist(), strict=True))), judgments.qrels[qid], k=10
        )
    return values


def _mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else 0.0


def _layers(model_dir: Path) -> int:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return int(config.get("num_hidden_layers", 0))


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".onnx", ".safetensors", ".bin")]
    return sum(p.stat().st_size for p in weights) / 2**20


def write_report(
    report: CompressionReport,
    out_dir: Path,
    *,
    max_ndcg_drop: float,
    embedder: EmbedderReport | None = None,
) -> Path:
    """``report.md``, ``report.png`` and ``report.json`` in ``out_dir``; the bi-encoder's
    variants follow the reranker's when ``embedder`` is given."""
    base = report.variants[0]
    lines = [
        "# shoprank compression report",
        "",
        f"Teacher: {report.teacher}. Rerank-{RERANK_DEPTH} latency on this machine; NDCG@10 "
        f"on the rerank task, {report.folds}-fold cross-validated by query (each student "
        "scores only queries it never trained on; the teacher's row is on the same "
        "queries, in-sample if it was trained on them, and the gate below names the "
        "teacher's figure it holds students to). Timings: the served scoring, dense "
        "prior included (query embedded by the served bi-encoder, products' vectors read "
        "from the index), one query's judged products per call, caches cold.",
        f"Gate: NDCG@10 ≥ {report.gate_value:.4f} ({report.gate_basis}) − {max_ndcg_drop} = "
        f"{report.gate_value - max_ndcg_drop:.4f}.",
        "",
        "| variant | size (MB) | p50 (ms) | p99 (ms) | pairs/s | speed-up | NDCG@10 | gate "
        "| note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for v in report.variants:
        gate = "teacher" if v.name == TEACHER else ("pass" if v.passes else "fail")
        if v.name == report.served:
            gate += " (served)"
        ndcg = f"{v.cv_ndcg:.4f}" if v.cv_ndcg is not None else "–"
        if v.path is None:
            lines.append(f"| {v.name} | – | – | – | – | – | {ndcg} | {gate} | {v.note} |")
            continue
        lines.append(
            f"| {v.name} | {v.size_mb:.1f} | {v.p50_ms:.1f} | {v.p99_ms:.1f} | "
            f"{v.pairs_per_s:.0f} | {base.p50_ms / v.p50_ms:.1f}× | {ndcg} | {gate} | {v.note} |"
        )
    lines += ["", f"Served: {report.served or 'the teacher (no student passed)'}.", ""]
    lines.append("![latency against NDCG@10](report.png)")
    if embedder is not None:
        lines += ["", *embedder_table(embedder)]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "report.md", ("\n".join(lines) + "\n").encode())
    document = {**report.as_dict(), "embedder": embedder.as_dict() if embedder else None}
    atomic_write_bytes(out_dir / "report.json", json.dumps(document, indent=2).encode())
    atomic_write_bytes(out_dir / "report.png", _chart(report, max_ndcg_drop))
    return out_dir / "report.md"


def _chart(report: CompressionReport, max_ndcg_drop: float) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for v in report.variants:
        if v.cv_ndcg is None:
            continue
        axes.scatter(v.p50_ms, v.cv_ndcg, color="tab:green" if v.passes else "tab:red")
        axes.annotate(
            v.name, (v.p50_ms, v.cv_ndcg), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
    axes.axhline(report.gate_value - max_ndcg_drop, linestyle="--", color="gray", label="gate")
    axes.set_xscale("log")
    axes.set_xlabel(f"rerank-{RERANK_DEPTH} p50 (ms, log scale)")
    axes.set_ylabel("NDCG@10 (rerank task, cross-validated)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()
