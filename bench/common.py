"""Shared benchmark plumbing: timing, inputs from the sample data, the exported variants."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ranker.backends import ModelTask
from ranker.compress.timing import Timing, time_calls

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODELS_DIR",
    "PARITY_QUERIES",
    "Timing",
    "ensure_variants",
    "product_texts",
    "quiet_libraries",
    "ratio_table",
    "time_calls",
    "timing_dict",
]

DEFAULT_MODELS_DIR = Path("var/bench-models")
PARITY_QUERIES = 10
"""Judged queries the bench's exports are checked on (the export default is 20)."""


def timing_dict(timing: Timing) -> dict[str, Any]:
    """A timing as plain values."""
    return asdict(timing)


def product_texts() -> dict[str, str]:
    """Product id -> the text every model sees (the served template)."""
    from indexer.catalog import TextTemplate, load_products, sample_catalog_path
    from ranker.settings import IndexSettings

    template = TextTemplate(IndexSettings().text_template)
    return {p.id: template.render(p) for p in load_products(sample_catalog_path())}


def ensure_variants(
    base: str | Path, name: str, task: ModelTask, models_dir: Path
) -> dict[str, Path]:
    """The fp32 and int8 ONNX exports of ``base`` under ``models_dir``, made once (again
    when the export recipe changed since)."""
    from ranker.compress.export import EXPORT_RECIPE, export_model
    from ranker.compress.parity import catalog_groups
    from ranker.compress.quantize import Precision, quantize_model
    from ranker.model_files import read_manifest, resolve_model_dir

    fp32 = models_dir / f"{name}-onnx-fp32"
    int8 = models_dir / f"{name}-onnx-qint8"
    recipe = ((read_manifest(fp32) or {}).get("onnx") or {}).get("recipe")
    if recipe != EXPORT_RECIPE:
        for stale in (fp32, int8):
            shutil.rmtree(stale, ignore_errors=True)
    groups = None
    if not (fp32 / "model.onnx").is_file():
        groups = catalog_groups(queries=PARITY_QUERIES)
        logger.warning("exporting %s to %s (once)", base, fp32)
        export_model(resolve_model_dir(base), fp32, task=task, groups=groups)
    if not (int8 / "model.onnx").is_file():
        groups = groups or catalog_groups(queries=PARITY_QUERIES)
        logger.warning("quantizing %s to %s (once)", fp32, int8)
        quantize_model(fp32, int8, precision=Precision.QINT8, groups=groups)
    return {"onnx-fp32": fp32, "onnx-int8": int8}


def ratio_table(
    rows: list[dict[str, Any]], *, columns: list[tuple[str, str]], baseline: str
) -> str:
    """A text table; ``×`` columns are the baseline's p50 over each row's (higher: faster)."""
    base = next(r for r in rows if r["variant"] == baseline)
    header = ["variant", *[label for label, _ in columns], "speed-up vs baseline"]
    lines = [header]
    for row in rows:
        cells = [row["variant"]]
        for _, key in columns:
            value = row[key]
            cells.append(f"{value:,.1f}" if isinstance(value, float) else str(value))
        cells.append(f"{row['speedup']:.2f}x" if row is not base else "1.00x (baseline)")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    )


def quiet_libraries() -> None:
    """Offline, no tokenizer threads fighting the benchmark, no progress bars."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("transformers", "sentence_transformers", "onnxruntime", "onnx_model"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
