"""Quantize an exported fp32 ONNX model: int8 (dynamic, per channel) for CPUs, fp16 for GPUs
(from the graph fused again for the GPU).

Each variant is written as its own model directory (temp dir, then rename) and only when it
agrees with the fp32 graph on catalog inputs: cosine and ranking for embeddings; score
correlation and NDCG@10 for a reranker. The manifest records the quantization settings,
the CPU preset the int8 kernels were chosen for, and the parity figures.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import onnx

from indexer.stores.atomic import atomic_directory
from ranker.backends.base import ModelTask
from ranker.compress.export import (
    compare_to_reference,
    export_model,
    optimize_graph,
    variant_manifest,
)
from ranker.compress.parity import (
    SERVED_SCORE_PARITY,
    Agreement,
    ParityError,
    ParityGroup,
    Thresholds,
    catalog_groups,
    check,
)
from ranker.hardware import has_int8_dot_product, int8_preset
from ranker.model_files import ONNX_MODEL_NAME, copy_model_files, read_manifest, write_manifest

logger = logging.getLogger(__name__)


class Precision(StrEnum):
    """The variants :func:`quantize_model` makes."""

    QINT8 = "qint8"
    """int8 weights per output channel, activations quantized per batch at run time (CPU)."""
    FP16 = "fp16"
    """Half-precision weights and arithmetic, float32 inputs and outputs (GPU)."""


THRESHOLDS: dict[tuple[Precision, ModelTask], Thresholds] = {
    (Precision.QINT8, ModelTask.EMBED): Thresholds(min_mean_cosine=0.99, min_cosine=0.95),
    (Precision.QINT8, ModelTask.SCORE): Thresholds(min_pearson=0.98, max_ndcg10_drop=0.01),
    (Precision.FP16, ModelTask.EMBED): Thresholds(min_mean_cosine=0.9999, min_cosine=0.999),
    (Precision.FP16, ModelTask.SCORE): Thresholds(min_pearson=0.999, max_ndcg10_drop=0.005),
}
"""What each variant must keep of fp32, by task (a reranker with a dense prior: see
:func:`parity_thresholds`)."""


def parity_thresholds(precision: Precision, task: ModelTask, *, has_prior: bool) -> Thresholds:
    """The bounds a ``precision`` variant is held to: int8 rerankers with a dense prior are
    judged on their served scores' rankings (``SERVED_SCORE_PARITY``), the rest by
    :data:`THRESHOLDS`."""
    if precision is Precision.QINT8 and task is ModelTask.SCORE and has_prior:
        return SERVED_SCORE_PARITY
    return THRESHOLDS[(precision, task)]


class QuantizationError(ValueError):
    """A directory that cannot be quantized (not an fp32 ONNX export)."""


@dataclass(frozen=True, slots=True)
class QuantizeResult:
    """Where the variant went, what it is, and how it compares with fp32."""

    path: Path
    variant: str
    agreement: Agreement
    seconds: float


def variant_name(precision: Precision) -> str:
    """``qint8_<cpu preset>`` (e.g. ``qint8_avx512_vnni``) or ``fp16``."""
    return f"qint8_{int8_preset()}" if precision is Precision.QINT8 else "fp16"


INT8_OP_TYPES = ("MatMul", "Attention")
"""What int8 quantization converts. Not the embedding lookups (``Gather``,
``EmbedLayerNormalization``): they do no arithmetic to speed up, and int8 rows of the
word-embedding table cost shallow students their ranking (a 1-layer reranker's scores kept a
Pearson of 0.30 with fp32 with them quantized, 0.9999 without)."""


def quantize_int8(source: Path, target: Path, *, per_channel: bool, reduce_range: bool) -> None:
    """Dynamic int8 quantization of the graph's matrix multiplies and attention."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(INT8_OP_TYPES),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        # The fused BERT operators are from another domain; shape inference cannot type
        # their outputs, and they are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def convert_fp16(source: Path, target: Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """The graph fused for the GPU, then half-precision weights and compute, float32 inputs
    and outputs kept; returns the fusion counts."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    with tempfile.TemporaryDirectory() as scratch:
        fused_graph = Path(scratch) / ONNX_MODEL_NAME
        fused = optimize_graph(
            source, fused_graph, num_heads=num_heads, hidden_size=hidden_size, gpu=True
        )
        model = OnnxModel(onnx.load(str(fused_graph)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(target))
    return fused


def quantize_model(
    fp32_dir: Path,
    out_dir: Path,
    *,
    precision: Precision,
    thresholds: Thresholds | None = None,
    groups: Sequence[ParityGroup] | None = None,
    per_channel: bool = True,
    reduce_range: bool | None = None,
) -> QuantizeResult:
    """Make the ``precision`` variant of an fp32 export and check it against fp32.

    ``reduce_range`` (7-bit weights) defaults to on only for CPUs without VNNI, where 8-bit
    products can saturate; with VNNI it only costs precision.

    Raises:
        QuantizationError: ``fp32_dir`` is not an fp32 ONNX export.
        ParityError: the variant loses more than ``thresholds`` allow; nothing is written.
    """
    start = time.perf_counter()
    manifest = read_manifest(fp32_dir) or {}
    if manifest.get("format") != "onnx" or manifest.get("variant") != "fp32":
        raise QuantizationError(
            f"{fp32_dir} is not an fp32 ONNX export (manifest format "
            f"{manifest.get('format')!r}, variant {manifest.get('variant')!r}); export it first"
        )
    task = ModelTask(manifest["task"])
    thresholds = thresholds or parity_thresholds(
        precision, task, has_prior=bool(manifest.get("prior"))
    )
    groups = list(groups) if groups is not None else catalog_groups()
    reduce_range = (not has_int8_dot_product()) if reduce_range is None else reduce_range
    variant = variant_name(precision)
    with atomic_directory(out_dir) as staging:
        if precision is Precision.QINT8:
            quantize_int8(
                fp32_dir / ONNX_MODEL_NAME,
                staging / ONNX_MODEL_NAME,
                per_channel=per_channel,
                reduce_range=reduce_range,
            )
            settings: dict[str, object] = {
                "method": "dynamic",
                "op_types": list(INT8_OP_TYPES),
                "weight_type": "int8",
                "per_channel": per_channel,
                "reduce_range": reduce_range,
                "cpu_preset": int8_preset(),
            }
        else:
            config = json.loads((fp32_dir / "config.json").read_text())
            fused = convert_fp16(
                fp32_dir / ONNX_MODEL_NAME,
                staging / ONNX_MODEL_NAME,
                num_heads=int(config["num_attention_heads"]),
                hidden_size=int(config["hidden_size"]),
            )
            settings = {"method": "cast", "keep_io_types": True, "gpu_fused_operators": fused}
        copy_model_files(fp32_dir, staging)
        agreement = compare_to_reference(
            fp32_dir, staging, task=task, groups=groups, reference_backend="onnx"
        )
        check(agreement, thresholds, what=f"{variant} variant of {fp32_dir}")
        write_manifest(
            staging,
            variant_manifest(
                manifest,
                staging,
                task=task,
                variant=variant,
                source_dir=fp32_dir,
                details={
                    "quantization": {"precision": precision.value, **settings},
                    "parity": {
                        "reference": "onnx fp32",
                        **agreement.as_dict(),
                        "thresholds": thresholds.as_dict(),
                    },
                },
            ),
        )
    seconds = time.perf_counter() - start
    logger.info("%s variant of %s written to %s in %.1f s", variant, fp32_dir, out_dir, seconds)
    return QuantizeResult(path=out_dir, variant=variant, agreement=agreement, seconds=seconds)


def export_and_quantize(
    torch_dir: Path,
    out_dir: Path,
    *,
    task: ModelTask,
    groups: Sequence[ParityGroup] | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Export a saved torch model to ONNX fp32, then quantize it to int8, in
    ``out_dir/onnx-fp32`` and ``out_dir/onnx-int8``: the directory per variant made (the
    torch one included), and the variants a parity check refused, with why."""
    paths = {"torch": torch_dir}
    try:
        paths["onnx-fp32"] = export_model(
            torch_dir, out_dir / "onnx-fp32", task=task, groups=groups
        ).path
    except ParityError as exc:
        logger.warning("%s", exc)
        return paths, {"onnx-fp32": str(exc), "onnx-int8": "no fp32 export to quantize"}
    try:
        paths["onnx-int8"] = quantize_model(
            paths["onnx-fp32"], out_dir / "onnx-int8", precision=Precision.QINT8, groups=groups
        ).path
    except ParityError as exc:
        logger.warning("%s", exc)
        return paths, {"onnx-int8": str(exc)}
    return paths, {}
