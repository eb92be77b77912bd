"""Writes trained model directories: weights, tokenizer files and the shoprank manifest."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from indexer.stores.atomic import atomic_directory
from ranker.model_files import MANIFEST_NAME, weights_sha256

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
