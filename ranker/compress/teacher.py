"""The teacher step: the reranker being compressed scores the distillation pairs.

The teacher is the uncompressed reranker (the production reranker's source, its dense prior
included). It scores judged queries and pseudo-queries cut from the catalog's product titles
against the products retrieval finds for them. The scores are cached in
``teacher-pairs.jsonl`` and reused while the teacher, the data, the catalog and the depths
are unchanged. The step also times the teacher on rerank-50 and writes its summary
(``teacher.json``): identity, registry version, NDCG@10 and the figure the gate holds
students to (see ``ranker.compress.gate``): the teacher's own cross-validated figure, else
production's read from the registry, else the teacher's on the same queries.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from indexer.catalog import CatalogInput, catalog_file, load_products, sample_catalog_path
from indexer.stores.atomic import atomic_write_bytes
from ranker.backends import ModelTask
from ranker.compress.distill import PSEUDO_QUERY_PREFIX, TeacherPair, pseudo_queries, teacher_pairs
from ranker.compress.export import export_model
from ranker.compress.gate import gate_reference
from ranker.compress.inputs import job_data
from ranker.compress.measure import mean, model_layers, per_query_ndcg, rerank_cases, time_variant
from ranker.compress.parity import ParityError, ParityGroup, judged_groups
from ranker.compress.records import TEACHER, CompressConfig, Variant, write_json
from ranker.errors import InputError
from ranker.evaluation.judgment_files import JudgmentsInput, judgments_file
from ranker.evaluation.judgments import Judgments
from ranker.model_files import read_manifest
from ranker.pipeline import SearchPipeline
from ranker.prior import has_cross_encoder
from ranker.reranker import Reranker
from ranker.serving_models import ModelSource
from ranker.settings import Settings
from ranker.shop import mapping_inputs
from ranker.training.jobs import TrainingData

logger = logging.getLogger(__name__)

TEACHER_PAIRS = "teacher-pairs.jsonl"
TEACHER_SUMMARY = "teacher.json"
PAIRS_FORMAT = 3
"""Of the cache's key line; 3 added the catalog's hash."""


def score_with_teacher(
    settings: Settings,
    config: CompressConfig,
    *,
    work_dir: Path,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    teacher: str | None = None,
) -> Path:
    """The teacher's scores (``teacher-pairs.jsonl``) and summary (``teacher.json``, returned)
    in ``work_dir``.

    ``judgments`` and ``catalog``: the shop's files (None: the samples); ``teacher``: the
    reranker version to distil (None: see :func:`teacher_model`).
    """
    from ranker.loading import load_embedder, load_reranker, open_pipeline, uncompressed
    from ranker.serving_models import open_registry

    sources = uncompressed(settings)
    data = job_data(sources, judgments=judgments, catalog=catalog)
    source = teacher_model(sources, teacher)
    embedder = load_embedder(sources)
    model = load_reranker(sources, embedder=embedder, source=source)
    pipeline = open_pipeline(sources, embedder=embedder, reranker=model)
    model.read_prior_vectors_from(pipeline.catalog_vectors())  # as serving does
    pairs_path = work_dir / TEACHER_PAIRS
    pairs = cached_teacher_pairs(
        pipeline,
        data,
        config,
        pairs_path,
        fast_teacher=lambda: _onnx_teacher(
            source.path,
            model,
            work_dir,
            sources,
            groups=judged_groups(data.judgments, data.product_texts),
        ),
    )
    score = {(p.qid, p.product_id): p.score for p in pairs}
    teacher_ndcg = mean(
        per_query_ndcg(
            lambda qid, ids: np.array([score[(qid, pid)] for pid in ids]),
            data.judgments,
            list(data.judgments.queries),
            data.product_texts,
        )
    )
    reference = gate_reference(
        read_manifest(source.path) or {},
        data_sha256=data.sha256,
        production=open_registry(sources).production("reranker"),
    )
    row = time_variant(
        Variant(TEACHER, str(source.path), model_layers(source.path), "fp32"),
        model,
        rerank_cases(data.judgments, data.product_texts),
        repeats=config.latency_repeats,
        cv_ndcg=teacher_ndcg,
    )
    return write_json(
        work_dir / TEACHER_SUMMARY,
        {
            "teacher": model.model_id,
            "path": str(source.path),
            "ref": source.label,
            "version": source.version.version if source.version is not None else None,
            "weights_sha256": model.weights_sha256,
            "pairs": str(pairs_path),
            "judgments": judgments_file(judgments).describe() if judgments is not None else None,
            "catalog": data.catalog.describe() if data.catalog is not None else None,
            "data_sha256": data.sha256,
            "catalog_sha256": data.catalog_sha256,
            "folds": config.folds,
            "teacher_ndcg": teacher_ndcg,
            "gate_ndcg": reference.ndcg,
            "gate_basis": reference.basis,
            "row": asdict(row),
        },
    )


def teacher_model(settings: Settings, version: str | None = None) -> ModelSource:
    """The reranker to distil: registry version ``version`` (verified), else the production
    reranker's source (or the reranker the settings name outright). A prior-only reranker
    is refused (InputError): it has no transformer to distil, export or quantize."""
    source = teacher_candidate(settings, version)
    if not has_cross_encoder(source.path):
        raise InputError(
            f"{source.label} is the reranker's prior alone: it has no transformer to distil "
            "or quantize, and serves as it is (`shoprank models promote`)"
        )
    return source


def teacher_candidate(settings: Settings, version: str | None = None) -> ModelSource:
    """:func:`teacher_model`'s reranker, prior-only ones included."""
    from ranker.loading import uncompressed
    from ranker.serving_models import open_registry, teacher_source

    if version is None:
        return teacher_source(uncompressed(settings))
    found = open_registry(settings).verify("reranker", version)
    return ModelSource(found.path, found)


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
    if teacher is None:
        raise ValueError("compress needs the teacher reranker loaded in the pipeline")
    key = {
        "format": PAIRS_FORMAT,
        "teacher_weights_sha256": teacher.weights_sha256,
        "data_sha256": data.sha256,
        "catalog_sha256": data.catalog_sha256,
        **mapping_inputs(catalog=data.catalog),
        "pseudo_queries": config.pseudo_queries,
        "judged_query_depth": config.judged_query_depth,
        "pseudo_query_depth": config.pseudo_query_depth,
    }
    cached = read_teacher_pairs(path, key=key)
    if cached is not None:
        logger.info("reusing %d teacher scores from %s", len(cached), path)
        return cached
    queries, candidates = distillation_queries(
        pipeline, data.judgments, config, catalog=data.catalog
    )
    scorer = (fast_teacher() if fast_teacher is not None else None) or teacher
    pairs = teacher_pairs(scorer.score_parts, queries, candidates, data.product_texts)
    body = "\n".join(json.dumps(asdict(p)) for p in pairs)
    atomic_write_bytes(path, (json.dumps(key) + "\n" + body + "\n").encode())
    return pairs


def read_teacher_pairs(
    path: Path, *, key: dict[str, object] | None = None
) -> list[TeacherPair] | None:
    """The pairs a teacher step wrote to ``path``; None when there are none, or when ``key``
    is given and the file was written for other inputs."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or (key is not None and json.loads(lines[0]) != key):
        return None
    return [TeacherPair(**json.loads(line)) for line in lines[1:]]


def distillation_queries(
    pipeline: SearchPipeline,
    judgments: Judgments,
    config: CompressConfig,
    *,
    catalog: CatalogInput | None = None,
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Judged queries with their judged and retrieved products; pseudo-queries, cut from the
    titles of ``catalog`` (None: the sample catalog), with retrieved ones."""
    queries = dict(judgments.queries)
    candidates: dict[str, list[str]] = {}
    for qid, query in judgments.queries.items():
        retrieved = [h.product_id for h in pipeline.retrieve(query, k=config.judged_query_depth)]
        candidates[qid] = list(dict.fromkeys([*judgments.qrels[qid], *retrieved]))
    source = catalog_file(catalog if catalog is not None else sample_catalog_path())
    products = load_products(source)
    titles = [product.title for product in products]
    for number, query in enumerate(pseudo_queries(titles, config.pseudo_queries, seed=13)):
        qid = f"{PSEUDO_QUERY_PREFIX}{number}"
        queries[qid] = query
        candidates[qid] = [
            h.product_id for h in pipeline.retrieve(query, k=config.pseudo_query_depth)
        ]
    known = {product.id for product in products}
    retrieved_ids = {pid for ids in candidates.values() for pid in ids}
    if retrieved_ids and len(retrieved_ids - known) > len(retrieved_ids) // 2:
        logger.warning(
            "most retrieved products are not in the catalog %s: the index was built from "
            "another one (run `shoprank index --catalog` with it first)",
            source.describe(),
        )
    return queries, candidates


def _onnx_teacher(
    teacher_dir: Path,
    teacher: Reranker,
    work_dir: Path,
    settings: Settings,
    *,
    groups: Sequence[ParityGroup],
) -> Reranker | None:
    """The teacher exported to fp32 ONNX, serving as ``teacher`` does; None without ONNX
    Runtime or when the export misses parity (torch scores then)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        exported = export_model(
            teacher_dir, work_dir / "teacher-onnx-fp32", task=ModelTask.SCORE, groups=groups
        )
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
