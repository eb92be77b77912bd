"""Export and quantization on tiny random BERTs: parity with the reference, refusal, manifests.

Tolerances: an fp32 export computes the same function as torch, so outputs agree to 1e-4
(measured ~4e-7 here, ~3e-6 on the shipped MiniLM cross-encoder) and rankings are identical.
int8 is loose on random tiny weights (their outputs sit close together, so quantization noise
reorders them); on the real MiniLM models int8 keeps mean cosine 0.994 and score
correlation 0.999, which the default thresholds in ranker.compress.quantize check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the onnx extra)")

from ranker.backends import ModelTask
from ranker.compress.export import export_model
from ranker.compress.parity import (
    ParityError,
    ParityGroup,
    Thresholds,
    kendall_tau,
    ndcg10,
)
from ranker.compress.quantize import (
    Precision,
    QuantizationError,
    quantize_model,
)
from ranker.embedder import Embedder
from ranker.model_files import read_manifest, weights_sha256
from ranker.reranker import Reranker

TEXTS = ["red mug", "stainless steel chef knife, 8 inch", "tent", "USB-C cable 2 m " * 20]
QUERY = "kitchen knife"
INT8_LOOSE = Thresholds(min_pearson=0.9, min_mean_cosine=0.95)


def test_export_directory_has_graph_tokenizer_and_manifest(
    onnx_reranker_dir: Path, tiny_reranker_dir: Path
) -> None:
    names = {p.name for p in onnx_reranker_dir.iterdir()}
    manifest = read_manifest(onnx_reranker_dir)

    assert {"model.onnx", "config.json", "tokenizer.json", "shoprank.json"} <= names
    assert manifest is not None
    assert manifest["format"] == "onnx"
    assert manifest["task"] == "score"
    assert manifest["variant"] == "fp32"
    assert manifest["derived_from"] == [weights_sha256(tiny_reranker_dir)]
    assert manifest["weights_sha256"] == weights_sha256(onnx_reranker_dir)
    assert manifest["parity"]["reference"] == "torch fp32"
    assert not list(onnx_reranker_dir.parent.glob(".*tmp*"))


def test_export_for_the_cpu_fuses_layernorm_and_gelu_and_leaves_attention_to_the_session(
    onnx_embedder_dir: Path,
) -> None:
    manifest = read_manifest(onnx_embedder_dir)
    assert manifest is not None
    graph_ops = {
        node.op_type for node in onnx.load(str(onnx_embedder_dir / "model.onnx")).graph.node
    }

    fused = manifest["onnx"]["optimizer"]["fused_operators"]

    assert manifest["onnx"]["optimizer"]["target"] == "cpu"
    assert fused["LayerNormalization"] >= 2
    assert fused["Gelu"] == 2  # one per layer of the tiny BERT
    assert "Attention" not in graph_ops
    assert "SkipLayerNormalization" not in graph_ops


def test_exported_embedder_matches_torch(tiny_embedder_dir: Path, onnx_embedder_dir: Path) -> None:
    torch_vectors = Embedder.load(tiny_embedder_dir, backend="torch").embed(TEXTS)
    onnx_embedder = Embedder.load(onnx_embedder_dir)

    onnx_vectors = onnx_embedder.embed(TEXTS)

    assert onnx_embedder.backend.name == "onnx"  # auto picks ONNX Runtime for an export
    assert onnx_vectors.dtype == np.float32
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4)


def test_exported_reranker_matches_torch(tiny_reranker_dir: Path, onnx_reranker_dir: Path) -> None:
    torch_scores = Reranker.load(tiny_reranker_dir, backend="torch").score(QUERY, TEXTS)
    onnx_scores = Reranker.load(onnx_reranker_dir, backend="onnx").score(QUERY, TEXTS)

    assert onnx_scores.shape == (len(TEXTS),)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)
    assert list(np.argsort(onnx_scores)) == list(np.argsort(torch_scores))


def test_export_parity_is_recorded(onnx_reranker_dir: Path) -> None:
    parity = json.loads((onnx_reranker_dir / "shoprank.json").read_text())["parity"]

    assert parity["max_abs_diff"] < 1e-4
    assert parity["kendall"] >= 0.99  # random tiny logits nearly tie; rounding may swap two
    assert parity["groups"] == 3


def test_an_export_that_fails_parity_is_refused_and_not_written(
    tiny_reranker_dir: Path, parity_groups: list[ParityGroup], tmp_path: Path
) -> None:
    out = tmp_path / "refused"

    with pytest.raises(ParityError, match="refused: score pearson") as caught:
        export_model(
            tiny_reranker_dir,
            out,
            task=ModelTask.SCORE,
            groups=parity_groups,
            thresholds=Thresholds(min_pearson=1.5),
        )

    assert caught.value.agreement.groups == 3
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_int8_variant_keeps_close_to_fp32(
    onnx_embedder_dir: Path, parity_groups: list[ParityGroup], tmp_path: Path
) -> None:
    result = quantize_model(
        onnx_embedder_dir,
        tmp_path / "int8",
        precision=Precision.QINT8,
        groups=parity_groups,
        thresholds=INT8_LOOSE,
    )
    manifest = read_manifest(result.path)
    assert manifest is not None
    fp32 = Embedder.load(onnx_embedder_dir).embed(TEXTS)
    int8 = Embedder.load(result.path).embed(TEXTS)

    assert result.variant.startswith("qint8_")
    assert manifest["quantization"]["per_channel"] is True
    assert manifest["derived_from"][0] == weights_sha256(onnx_embedder_dir)
    assert (result.path / "model.onnx").stat().st_size < (
        onnx_embedder_dir / "model.onnx"
    ).stat().st_size
    assert result.agreement.mean_cosine is not None
    assert result.agreement.mean_cosine >= 0.95
    assert np.min(np.sum(fp32 * int8, axis=1)) >= 0.9


def test_fp16_variant_matches_fp32(
    onnx_reranker_dir: Path, parity_groups: list[ParityGroup], tmp_path: Path
) -> None:
    # Random tiny logits are almost constant, so correlation measures noise: bound the error.
    result = quantize_model(
        onnx_reranker_dir,
        tmp_path / "fp16",
        precision=Precision.FP16,
        groups=parity_groups,
        thresholds=Thresholds(max_abs_diff=1e-2),
    )

    assert result.variant == "fp16"
    assert result.agreement.max_abs_diff < 1e-2
    graph_ops = {node.op_type for node in onnx.load(str(result.path / "model.onnx")).graph.node}
    assert "Attention" in graph_ops  # fused again for the GPU
    manifest = read_manifest(result.path)
    assert manifest is not None
    assert manifest["quantization"]["gpu_fused_operators"]["Attention"] == 2
    scores = Reranker.load(result.path).score(QUERY, TEXTS)
    assert scores.dtype == np.float32


def test_quantize_refuses_a_directory_that_is_not_an_fp32_export(
    tiny_reranker_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(QuantizationError, match="not an fp32 ONNX export"):
        quantize_model(tiny_reranker_dir, tmp_path / "x", precision=Precision.QINT8)


def test_kendall_and_ndcg_helpers() -> None:
    a = np.array([3.0, 2.0, 1.0])

    assert kendall_tau(a, a) == pytest.approx(1.0)
    assert kendall_tau(a, -a) == pytest.approx(-1.0)
    assert ndcg10(a, [1.0, 0.1, 0.0]) == pytest.approx(1.0)
    assert ndcg10(-a, [1.0, 0.0, 0.0]) == pytest.approx(0.5)


def test_thresholds_name_every_failure() -> None:
    from ranker.compress.parity import Agreement

    agreement = Agreement(
        groups=1,
        max_abs_diff=0.5,
        pearson=0.9,
        spearman=0.9,
        kendall=0.8,
        top10_overlap=1.0,
        ndcg10_reference=0.7,
        ndcg10_candidate=0.6,
    )

    failed = Thresholds(max_abs_diff=0.1, min_pearson=0.95, max_ndcg10_drop=0.01).failures(
        agreement
    )

    assert len(failed) == 3
    assert Thresholds(min_cosine=0.9).failures(agreement) == ["min cosine not measured"]
