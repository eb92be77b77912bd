"""What a compression run reads: the judgments and catalog (loaded once per process), and
the hash of every input its result depends on, which keys the run in the registry."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from indexer.catalog import CatalogInput, catalog_file, sample_catalog_path, sample_judgments_path
from ranker.compress.records import CompressConfig
from ranker.evaluation.judgment_files import JudgmentsInput, judgments_file
from ranker.hardware import int8_preset, simd_flags
from ranker.settings import Settings
from ranker.shop import mapping_inputs
from ranker.training.jobs import TrainingData, file_sha256, load_training_data

_loaded: dict[tuple[Any, ...], TrainingData] = {}


def job_data(
    settings: Settings,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
) -> TrainingData:
    """:func:`load_training_data`, reused within this process while both files (size and
    modification time) and the settings that render the texts are unchanged."""
    judgments_source = judgments_file(judgments or sample_judgments_path())
    catalog_source = catalog_file(catalog or sample_catalog_path())
    key = (
        _stamp(judgments_source.path),
        _stamp(catalog_source.path),
        json.dumps(mapping_inputs(catalog=catalog_source, judgments=judgments_source)),
        settings.index.text_template,
        tuple(sorted(settings.label_gains.items())),
    )
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_training_data(
            settings, judgments=judgments_source, catalog=catalog_source
        )
    return _loaded[key]


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def compression_inputs(
    settings: Settings,
    config: CompressConfig,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    teacher: str | None = None,
) -> dict[str, Any]:
    """Every input a compression run's result depends on: the teacher's and the source
    bi-encoder's weights, the judgments' and catalog's bytes (and mappings other than the
    default ones), the config, the serving
    settings students are judged with, ONNX Runtime's version and the CPU's int8 features.

    ``teacher``: a reranker version to distil (None: the production reranker's source).
    """
    from ranker.compress.teacher import teacher_model
    from ranker.loading import uncompressed
    from ranker.model_files import weights_sha256
    from ranker.serving_models import serving_source

    sources = uncompressed(settings)
    teacher_source = teacher_model(settings, teacher)
    embedder_source = serving_source(sources, "embedder")
    return {
        "teacher": teacher_source.label,
        "teacher_weights_sha256": weights_sha256(teacher_source.path),
        "embedder": embedder_source.label,
        "embedder_weights_sha256": weights_sha256(embedder_source.path),
        "judgments_sha256": file_sha256(judgments_file(judgments or sample_judgments_path()).path),
        "catalog_sha256": file_sha256(catalog_file(catalog or sample_catalog_path()).path),
        **mapping_inputs(catalog=catalog, judgments=judgments),
        "config": config.model_dump(mode="json"),
        "serving": {
            "text_template": settings.index.text_template,
            "embedder_max_length": settings.embedder.max_length,
            "rerank_max_length": settings.rerank.max_length,
            "max_query_tokens": settings.api.max_query_tokens,
            "label_gains": settings.label_gains,
            "seed": settings.seed,
        },
        "onnxruntime": _version("onnxruntime"),
        "cpu": int8_preset(),
        "cpu_isa": list(simd_flags()),
    }


def compression_key(
    settings: Settings,
    config: CompressConfig,
    *,
    judgments: JudgmentsInput | None = None,
    catalog: CatalogInput | None = None,
    teacher: str | None = None,
) -> str:
    """SHA-256 of :func:`compression_inputs`: equal keys, the same run."""
    inputs = compression_inputs(
        settings, config, judgments=judgments, catalog=catalog, teacher=teacher
    )
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
