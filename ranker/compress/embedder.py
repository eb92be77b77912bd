"""Compress the bi-encoder: ONNX export, int8, shorter inputs, and a retrieval gate.

Each variant is measured on the whole catalog: throughput, one-query latency, and dense
search with the judged queries (exact inner product, the variant embedding both sides).
Variants: the export (fp32, int8) at the served input length, and again at each shorter
length asked for (a product's first word pieces carry most of what a query matches). The
int8 graphs must keep the fp32 graph's vectors at their length (the quantization parity
check: mean cosine ≥ 0.99). A variant passes when its Recall@100 and NDCG@10 are within
``max_recall_drop`` of the source model's at the served length; the fastest that passes is
chosen, and ``ranker.compress.register`` registers it (with the verdict and its input length
in its manifest) as a candidate derived from the source. Its vectors can be searched in an
index the source model built, and the other way round (the identities share a lineage), so
no reindex is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from indexer.catalog import CatalogInput
from ranker.backends.base import FloatArray, ModelTask
from ranker.compress.export import export_model
from ranker.compress.parity import ParityError, judged_groups
from ranker.compress.quantize import Precision, quantize_model
from ranker.compress.records import outcome_line, read_json, write_json
from ranker.compress.timing import time_calls
from ranker.embedder import Embedder
from ranker.evaluation.judgment_files import JudgmentsInput
from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import ndcg_at_k, recall_at_k
from ranker.settings import Settings
from ranker.training.jobs import TrainingData

logger = logging.getLogger(__name__)

MAX_RECALL_DROP = 0.01
RECALL_K = 100


@dataclass
class EmbedderVariant:
    """One bi-encoder variant: speed, agreement with fp32 and retrieval quality.

    ``mean_cosine``: against the fp32 graph at the same input length (the source's torch
    model for the fp32 export).
    """

    name: str
    path: str | None
    max_length: int = 0
    docs_per_s: float = 0.0
    query_p50_ms: float = 0.0
    mean_cosine: float | None = None
    recall_at_100: float | None = None
    ndcg_at_10: float | None = None
    passes: bool = False
    note: str = ""


@dataclass
class EmbedderReport:
    """The source model and its variants side by side; the one the gate chose and what
    became of it in the registry."""

    source: str
    documents: int
    queries: int
    variants: list[EmbedderVariant] = field(default_factory=list)
    served: str | None = None
    """The variant the gate chose (the fastest that passed), None when none passed."""
    served_path: str | None = None
    """Its model directory in the registry once registered."""
    source_path: str | None = None
    source_version: str | None = None
    """The source's registry version (None: a directory the settings name)."""
    data_sha256: str = ""
    catalog_sha256: str | None = None
    max_recall_drop: float = MAX_RECALL_DROP
    registered: str | None = None
    """The registry version the chosen variant became (``embedder/v2``)."""
    promoted: bool = False
    promotion_note: str = ""
    reused: bool = False
    """True when a run with the same inputs (``key``) built it before and nothing ran."""

    @property
    def chosen(self) -> EmbedderVariant | None:
        """The variant row the gate chose, if any."""
        return next((v for v in self.variants if v.name == self.served), None)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbedderReport:
        """The report :meth:`as_dict` wrote (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        variant_fields = {f.name for f in fields(EmbedderVariant)}
        values = {k: v for k, v in data.items() if k in known and k != "variants"}
        variants = [
            EmbedderVariant(**{k: v for k, v in row.items() if k in variant_fields})
            for row in data.get("variants", [])
        ]
        return cls(**values, variants=variants)


EMBEDDER_REPORT = "embedder.json"


def measure_embedder(
    settings: Settings,
    *,
    work_dir: Path,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    shorter_lengths: Sequence[int] = (),
    max_recall_drop: float = MAX_RECALL_DROP,
) -> Path:
    """The bi-encoder step: :func:`compress_embedder` on the shop's judgments and catalog
    (None: the samples); returns its report, ``embedder.json`` in ``work_dir``."""
    from ranker.compress.inputs import job_data

    data = job_data(settings, judgments=judgments, catalog=catalog)
    report = compress_embedder(
        settings,
        data,
        work_dir=work_dir,
        shorter_lengths=shorter_lengths,
        max_recall_drop=max_recall_drop,
    )
    return write_json(work_dir / EMBEDDER_REPORT, report.as_dict())


def read_embedder_report(path: Path) -> EmbedderReport:
    """The report :func:`measure_embedder` wrote."""
    return EmbedderReport.from_dict(read_json(path))


def compress_embedder(
    settings: Settings,
    data: TrainingData,
    *,
    work_dir: Path,
    shorter_lengths: Sequence[int] = (),
    max_recall_drop: float = MAX_RECALL_DROP,
) -> EmbedderReport:
    """Export and quantize the source bi-encoder (the production embedder's source, or the
    model the settings name), measure it at the served input length and at
    ``shorter_lengths``, gate the variants and choose the fastest that passes."""
    from ranker.loading import uncompressed
    from ranker.serving_models import serving_source

    origin = serving_source(uncompressed(settings), "embedder")
    source = origin.path
    served_length = settings.embedder.max_length
    lengths = [
        served_length,
        *sorted({n for n in shorter_lengths if n < served_length}, reverse=True),
    ]
    report = EmbedderReport(
        source=str(settings.embedder.model),
        documents=len(data.product_texts),
        queries=len(data.judgments.queries),
        source_path=str(source),
        source_version=origin.version.version if origin.version is not None else None,
        data_sha256=data.sha256,
        catalog_sha256=data.catalog_sha256,
        max_recall_drop=max_recall_drop,
    )
    reference = _load(source, "torch", settings, served_length)
    reference_row, reference_vectors = _measure(
        "source torch fp32", str(source), reference, data, served_length
    )
    report.variants.append(reference_row)
    groups = judged_groups(data.judgments, data.product_texts)
    fp32 = export_model(source, work_dir / "onnx-fp32", task=ModelTask.EMBED, groups=groups).path
    int8_refusal = ""
    try:
        int8: Path | None = quantize_model(
            fp32, work_dir / "onnx-int8", precision=Precision.QINT8, groups=groups
        ).path
    except ParityError as exc:
        int8 = None
        int8_refusal = f"refused: {exc}"
    for length in lengths:
        suffix = "" if length == served_length else f", {length} word pieces"
        fp32_row, fp32_vectors = _measure(
            f"onnx fp32{suffix}", str(fp32), _load(fp32, "onnx", settings, length), data, length
        )
        if length == served_length:
            fp32_row.mean_cosine = _mean_cosine(reference_vectors, fp32_vectors)
        report.variants.append(fp32_row)
        if int8 is None:
            report.variants.append(
                EmbedderVariant(f"onnx int8{suffix}", None, length, note=int8_refusal)
            )
            continue
        int8_row, int8_vectors = _measure(
            f"onnx int8{suffix}", str(int8), _load(int8, "onnx", settings, length), data, length
        )
        int8_row.mean_cosine = _mean_cosine(fp32_vectors, int8_vectors)
        report.variants.append(int8_row)
    best = apply_embedder_gate(report.variants, max_recall_drop=max_recall_drop)
    if best is not None and best.path is not None:
        report.served = best.name
    return report


def apply_embedder_gate(
    variants: Sequence[EmbedderVariant], *, max_recall_drop: float
) -> EmbedderVariant | None:
    """Mark the variants that keep the source's Recall@100 and NDCG@10 within
    ``max_recall_drop`` (the first row is the source); the fastest of them, if any."""
    source, *others = variants
    if source.recall_at_100 is None or source.ndcg_at_10 is None:
        raise ValueError("the source row has no retrieval figures to gate against")
    for variant in others:
        variant.passes = (
            variant.path is not None
            and variant.recall_at_100 is not None
            and variant.ndcg_at_10 is not None
            and variant.recall_at_100 >= source.recall_at_100 - max_recall_drop
            and variant.ndcg_at_10 >= source.ndcg_at_10 - max_recall_drop
        )
    passing = [v for v in others if v.passes]
    return max(passing, key=lambda v: v.docs_per_s) if passing else None


def _load(model_dir: Path, backend: str, settings: Settings, max_length: int) -> Embedder:
    return Embedder.load(
        model_dir,
        backend=backend,
        max_length=max_length,
        batch_size=settings.embedder.batch_size,
        backend_config=settings.backends,
    )


def _measure(
    name: str, path: str, embedder: Embedder, data: TrainingData, max_length: int
) -> tuple[EmbedderVariant, FloatArray]:
    """Catalog throughput, one-query latency and exact dense retrieval quality."""
    ids = list(data.product_texts)
    texts = [data.product_texts[pid] for pid in ids]
    queries = list(data.judgments.queries.values())
    embedder.embed(texts[:32])
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    docs_per_s = len(texts) / (time.perf_counter() - start)
    timing = time_calls(lambda i: embedder.embed([queries[i % len(queries)]]), repeats=50)
    recall, ndcg = retrieval_quality(embedder, ids, vectors, data.judgments)
    row = EmbedderVariant(
        name,
        path,
        max_length,
        docs_per_s,
        timing.p50_ms,
        recall_at_100=recall,
        ndcg_at_10=ndcg,
    )
    logger.info("bi-encoder %s: %s", name, asdict(row))
    return row, vectors


def retrieval_quality(
    embedder: Embedder, ids: Sequence[str], vectors: FloatArray, judgments: Judgments
) -> tuple[float, float]:
    """Mean Recall@100 and NDCG@10 of exact inner-product search over ``vectors``."""
    query_vectors = embedder.embed(list(judgments.queries.values()))
    recalls, ndcgs = [], []
    for qid, query_vector in zip(judgments.queries, query_vectors, strict=True):
        scores = vectors @ query_vector
        top = np.argsort(-scores, kind="stable")[:RECALL_K]
        ranked = [ids[i] for i in top]
        recall = recall_at_k(ranked, judgments.qrels[qid], k=RECALL_K)
        if recall is not None:
            recalls.append(recall)
        ndcgs.append(ndcg_at_k(ranked, judgments.qrels[qid], k=10))
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def _mean_cosine(a: FloatArray, b: FloatArray) -> float:
    """Mean cosine of matching rows (both are unit vectors)."""
    return float(np.mean(np.sum(a * b, axis=1)))


def embedder_table(report: EmbedderReport) -> list[str]:
    """Markdown lines: the bi-encoder variants side by side."""
    base = report.variants[0]
    lines = [
        f"## Bi-encoder ({report.source})",
        "",
        f"Catalog embedding of {report.documents} product texts; dense retrieval over them "
        f"for {report.queries} judged queries (exact inner product). Mean cosine: against "
        "the fp32 graph at the same input length (the ONNX fp32 export against torch). "
        "Gate: Recall@100 and NDCG@10 within the drop allowed of the source's.",
        "",
        "| variant | word pieces | docs/s | speed-up | query p50 (ms) | mean cosine "
        "| Recall@100 | NDCG@10 | gate | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for v in report.variants:
        gate = "source" if v is base else ("pass" if v.passes else "fail")
        if v.name == report.served:
            gate += " (served)" if report.promoted else " (chosen)"
        if v.path is None:
            lines.append(
                f"| {v.name} | {v.max_length} | – | – | – | – | – | – | {gate} | {v.note} |"
            )
            continue
        cosine = f"{v.mean_cosine:.4f}" if v.mean_cosine is not None else "–"
        lines.append(
            f"| {v.name} | {v.max_length} | {v.docs_per_s:.0f} | "
            f"{v.docs_per_s / base.docs_per_s:.2f}× | {v.query_p50_ms:.1f} | {cosine} | "
            f"{v.recall_at_100:.4f} | {v.ndcg_at_10:.4f} | {gate} | {v.note} |"
        )
    outcome = outcome_line(
        report.served,
        registered=report.registered,
        promoted=report.promoted,
        note=report.promotion_note,
        nothing="no variant passed",
    )
    return [*lines, "", outcome]
