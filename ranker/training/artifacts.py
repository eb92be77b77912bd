"""Writes trained model directories: weights, tokenizer files and the shoprank manifest;
a reranker without its cross-encoder as a prior-only directory."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from indexer.stores.atomic import atomic_directory
from ranker.model_files import MANIFEST_NAME, resolve_model_dir, weights_sha256
from ranker.prior_files import prior_manifest, write_prior_only
from ranker.training.common import TrainingResult

if TYPE_CHECKING:
    from ranker.training.cross_encoder import CrossEncoderConfig

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def data_sha256(judgments_rows: list[tuple[str, str, str, str]], texts: Mapping[str, str]) -> str:
    """A hash of the training data: (qid, query, product id, label) rows and product texts."""
    digest = hashlib.sha256()
    for row in sorted(judgments_rows):
        digest.update("\t".join(row).encode())
        digest.update(b"\n")
        digest.update(texts.get(row[2], "").encode())
        digest.update(b"\0")
    return digest.hexdigest()


def save_model_dir(
    model: Any,
    output_dir: Path,
    *,
    tokenizer_source: Path,
    manifest: Mapping[str, Any],
    dtype: str = "float32",
) -> Path:
    """Save a transformers model with its tokenizer and manifest into ``output_dir``.

    The directory appears whole or not at all (a temp dir, then a rename). The manifest
    gains ``model_id`` (kind plus the weights hash), ``weights_sha256``, ``dtype`` and
    library versions.
    """
    import transformers

    with atomic_directory(output_dir) as staging:
        to_save = model
        if dtype == "float16":
            to_save = _half_copy(model)
        to_save.save_pretrained(str(staging), safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (tokenizer_source / name).is_file():
                shutil.copy2(tokenizer_source / name, staging / name)
        digest = weights_sha256.__wrapped__(staging)
        full_manifest = {
            "model_id": f"shoprank-{manifest.get('kind', 'model')}-{digest[:12]}",
            **manifest,
            "weights_sha256": digest,
            "dtype": dtype,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        (staging / MANIFEST_NAME).write_text(
            json.dumps(full_manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
    return output_dir


def _half_copy(model: Any) -> Any:
    import copy

    return copy.deepcopy(model).half()


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
        "base_model": config.base_model,
        "data_sha256": data_sha256,
        "hyperparameters": config.model_dump(),
        "train_queries": len(result.train_queries),
        "validation_queries": len(result.validation_queries),
        "train_query_ids": sorted(result.train_queries + result.validation_queries),
        "history": result.history,
        "metrics": dict(metrics),
        "cross_validation": dict(cross_validation) if cross_validation else None,
        "training_seconds": round(result.seconds, 1),
    }
    prior = (
        prior_manifest(result.prior, prior_embedder)
        if result.prior is not None and prior_embedder is not None
        else None
    )
    if result.model is None:
        if prior is None:
            raise ValueError("a reranker without a cross-encoder needs its prior to be saved")
        write_prior_only(output_dir, prior, files_from=model_dir, manifest=manifest)
    else:
        save_model_dir(
            result.model,
            output_dir,
            tokenizer_source=model_dir,
            manifest={"kind": "cross-encoder", **manifest, "prior": prior},
            dtype=config.save_dtype,
        )
    result.output_dir = output_dir
    return output_dir
