"""Writes prior-only reranker directories: no transformer, the prior's parameters in the
manifest (``cross_encoder: false``), and the config and tokenizer files the API checks
inputs with. Training writes one when the recipe drops the cross-encoder
(``cross_encoder: false``); compression writes its 0-layer students this way, with their
miss embedder inside (:data:`~ranker.prior.MISS_EMBEDDER_DIR`)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from indexer.stores.atomic import atomic_directory
from ranker.model_files import copy_model_files, write_manifest
from ranker.prior import MISS_EMBEDDER_DIR, prior_only_sha256


def prior_manifest(state: Mapping[str, Any], embedder: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's ``prior``: the learned parameters (``weight``, ``bias``, optional
    ``lexical_weights`` by feature name and ``title_weight``) and the identity of the
    bi-encoder they weigh."""
    return {"kind": "dense-cosine", **state, "embedder": dict(embedder)}


def write_prior_only(
    out_dir: Path,
    prior: Mapping[str, Any],
    *,
    files_from: Path,
    manifest: Mapping[str, Any],
    miss_dir: Path | None = None,
) -> Path:
    """A prior-only reranker directory at ``out_dir``, whole or not at all.

    ``prior``: see :func:`prior_manifest` (with ``miss_embedder`` when ``miss_dir`` is
    given); ``files_from``: the model whose config and tokenizer it keeps; ``manifest``:
    what else the manifest records (lineage, metrics). Its ``weights_sha256`` hashes the
    prior and the miss embedder (:func:`~ranker.prior.prior_only_sha256`).
    """
    with atomic_directory(out_dir) as staging:
        copy_model_files(files_from, staging)
        if miss_dir is not None:
            shutil.copytree(miss_dir, staging / MISS_EMBEDDER_DIR)
        written = {
            "kind": "reranker-prior-only",
            "cross_encoder": False,
            "task": "score",
            "layers": 0,
            **manifest,
            "prior": dict(prior),
        }
        write_manifest(staging, written)
        digest = prior_only_sha256(staging)
        write_manifest(
            staging,
            {"model_id": f"shoprank-prior-only-{digest[:12]}", **written, "weights_sha256": digest},
        )
    return out_dir
