"""What a compression run reads: the judgments and catalog (loaded once per process), and
the hash of every input its result depends on, which keys the run in the registry."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from indexer.catalog import sample_catalog_path, sample_judgments_path
from ranker.compress.records import CompressConfig
from ranker.hardware import int8_preset, simd_flags
from ranker.settings import Settings
from ranker.training.jobs import TrainingData, file_sha256, load_training_data

_loaded: dict[tuple[Any, ...], TrainingData] = {}


def job_data(
    settings: Settings, *, judgments: Path | None = None, catalog: Path | None = None
) -> TrainingData:
    """:func:`load_training_data`, reused within this process while both files (size and
    modification time) and the settings that render the texts are unchanged."""
    judgments_path = Path(judgments) if judgments is not None else sample_judgments_path()
    catalog_path = Path(catalog) if catalog is not None else sample_catalog_path()
    key = (
        _stamp(judgments_path),
        _stamp(catalog_path),
        settings.index.text_template,
        tuple(sorted(settings.label_gains.items())),
    )
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_training_data(settings, judgments=judgments_path, catalog=catalog_path)
    return _loaded[key]


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def compression_inputs(
    settings: Settings,
    config: CompressConfig,
    *,
    judgments: Path | None = None,
    catalog: Path | None = None,
    teacher: str | None = None,
) -> dict[str, Any]:
    """Every input a compression run's result depends on: the teacher's and the source
    bi-encoder's weights, the judgments' and catalog's bytes, the config, the serving
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
        "judgments_sha256": file_sha256(judgments or sample_judgments_path()),
        "catalog_sha256": file_sha256(catalog or sample_catalog_path()),
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
    judgments: Path | None = None,
    catalog: Path | None = None,
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
