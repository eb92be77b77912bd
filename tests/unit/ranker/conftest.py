"""Fixtures for the ONNX tests: tiny random models exported once per session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ranker.backends import ModelTask
from ranker.compress.parity import ParityGroup, catalog_groups
from ranker.model_files import weights_sha256

ONNX_MISSING = "onnxruntime is not installed (pip install 'shoprank[onnx]')"


@pytest.fixture(scope="session")
def parity_groups() -> list[ParityGroup]:
    """Three judged queries of the sample catalog with their products."""
    return catalog_groups(queries=3)


@pytest.fixture(scope="session")
def onnx_embedder_dir(
    tiny_embedder_dir: Path,
    parity_groups: list[ParityGroup],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The tiny bi-encoder exported to ONNX (fp32, fused)."""
    pytest.importorskip("onnxruntime", reason=ONNX_MISSING)
    from ranker.compress.export import export_model

    out = tmp_path_factory.mktemp("onnx") / "embedder-fp32"
    return export_model(tiny_embedder_dir, out, task=ModelTask.EMBED, groups=parity_groups).path


@pytest.fixture(scope="session")
def onnx_reranker_dir(
    tiny_reranker_dir: Path,
    parity_groups: list[ParityGroup],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The tiny cross-encoder exported to ONNX (fp32, fused)."""
    pytest.importorskip("onnxruntime", reason=ONNX_MISSING)
    from ranker.compress.export import export_model

    out = tmp_path_factory.mktemp("onnx") / "reranker-fp32"
    return export_model(tiny_reranker_dir, out, task=ModelTask.SCORE, groups=parity_groups).path


def _with_prior(
    reranker_dir: Path, embedder_dir: Path, tmp_path: Path, *, sha256: str | None = None
) -> Path:
    copy = tmp_path / "reranker-with-prior"
    shutil.copytree(reranker_dir, copy)
    prior = {
        "kind": "dense-cosine",
        "weight": 3.0,
        "bias": -1.0,
        "embedder": {"model_id": "tiny", "weights_sha256": sha256 or weights_sha256(embedder_dir)},
    }
    (copy / "shoprank.json").write_text(json.dumps({"prior": prior}))
    return copy


@pytest.fixture
def with_prior() -> Callable[..., Path]:
    """``with_prior(reranker_dir, embedder_dir, tmp_path, *, sha256=None)``: a copy of the
    reranker whose manifest declares a dense prior on that bi-encoder (or on ``sha256``)."""
    return _with_prior
