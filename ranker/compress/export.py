"""Export a bi-encoder or cross-encoder to ONNX, fuse its graph, and accept it only on parity.

``export_model`` writes a model directory that the Embedder or Reranker loads unchanged on
the ``onnx`` backend: ``model.onnx`` (dynamic batch and sequence axes; an embedding graph
ends in mean pooling, a scoring graph in one logit per pair), ``config.json``, the tokenizer
files and a ``shoprank.json`` manifest that keeps the source's (the dense prior included)
and adds the export's lineage, fusion counts and parity figures. The directory appears whole
(a temp dir, then a rename) and only when the parity check against torch passes.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from indexer.stores.atomic import atomic_directory
from ranker.backends.base import Backend, FloatArray, ModelTask, dummy_batch
from ranker.compress.parity import (
    Agreement,
    EmbedFn,
    ParityGroup,
    ScoreFn,
    Thresholds,
    catalog_groups,
    check,
    embedding_agreement,
    score_agreement,
)
from ranker.model_files import (
    ONNX_MODEL_NAME,
    copy_model_files,
    lineage,
    model_id,
    read_manifest,
    write_manifest,
)
from ranker.settings import ApiSettings, BackendSettings, EmbedderSettings, RerankSettings

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = {ModelTask.EMBED: "embedding", ModelTask.SCORE: "logits"}
EXPORT_THRESHOLDS = Thresholds(max_abs_diff=1e-3, min_kendall=0.99, max_ndcg10_drop=1e-3)
"""fp32 ONNX against fp32 torch: the same function, so only rounding may differ."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Where the export went and what it was checked against."""

    path: Path
    agreement: Agreement
    fused_operators: dict[str, int]
    seconds: float


class _Embedding(torch.nn.Module):
    """A bi-encoder whose output is the mean of its unpadded token vectors."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return pooled


class _Logits(torch.nn.Module):
    """A cross-encoder whose output is one logit per pair."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        logits: torch.Tensor = self.model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits
        return logits.reshape(-1)


def load_torch_model(model_dir: Path, task: ModelTask) -> Any:
    """The model in fp32 with eager attention (the pattern ONNX Runtime's fusions match)."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    loader = AutoModel if task is ModelTask.EMBED else AutoModelForSequenceClassification
    model = loader.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager")
    if task is ModelTask.SCORE and model.config.num_labels != 1:
        raise ValueError(f"{model_dir}: a scoring model needs one label, not {model.config}")
    return model.eval()


def export_graph(
    model: torch.nn.Module, path: Path, *, task: ModelTask, opset: int = OPSET
) -> None:
    """``torch.onnx.export`` with dynamic batch and sequence axes."""
    wrapper = _Embedding(model) if task is ModelTask.EMBED else _Logits(model)
    example = torch.ones((2, 16), dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes[OUTPUT_NAMES[task]] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example, example, torch.zeros_like(example)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAMES[task]],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


CPU_SESSION_FUSIONS = (
    "enable_attention",
    "enable_skip_layer_norm",
    "enable_bias_skip_layer_norm",
    "enable_bias_gelu",
)
"""Fusions an export for the CPU leaves to ONNX Runtime's session. Its fused Attention,
SkipLayerNormalization and BiasGelu kernels are slower on the CPU than what the session
makes of the plain graph (onnxruntime 1.32, 2 cores): the int8 1-layer student, 50 pairs of
40 tokens, 12.2 → 10.0 ms; int8 MiniLM-L6 at 128 tokens, 210 → 247 docs/s; fp32 alike
within 5 %. The GPU variant fuses them all (:func:`optimize_graph` with ``gpu``)."""


EXPORT_RECIPE = 2
"""Bumped when the export makes a different graph from the same weights (2: fusions for the
CPU left to the session), so that exports made once and kept (the bench's) are made again."""


def optimize_graph(
    source: Path, target: Path, *, num_heads: int, hidden_size: int, gpu: bool = False
) -> dict[str, int]:
    """ONNX Runtime's BERT optimizer; returns fusion counts.

    For the CPU (the default) it fuses LayerNorm and GELU and leaves
    :data:`CPU_SESSION_FUSIONS` to the session; with ``gpu`` it also fuses attention,
    SkipLayerNorm and BiasGelu, the kernels CUDA and TensorRT run fastest.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    if not gpu:
        for name in CPU_SESSION_FUSIONS:
            setattr(options, name, False)
    optimized = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        use_gpu=gpu,
        optimization_options=options,
    )
    optimized.save_model_to_file(str(target))
    stats = optimized.get_fused_operator_statistics()
    fused = {name: int(count) for name, count in stats.items() if count}
    if gpu and not fused.get("Attention"):
        logger.warning("the optimizer fused no attention in %s: %s", source, fused)
    return fused


def export_model(
    model_dir: Path,
    out_dir: Path,
    *,
    task: ModelTask,
    optimize: bool = True,
    thresholds: Thresholds = EXPORT_THRESHOLDS,
    groups: Sequence[ParityGroup] | None = None,
    opset: int = OPSET,
) -> ExportResult:
    """Export ``model_dir`` to ``out_dir`` and check it against torch on catalog inputs.

    Raises:
        ParityError: the export disagrees with torch beyond ``thresholds``; nothing is
            written.
        ValueError: a scoring model with more than one label.
    """
    start = time.perf_counter()
    model = load_torch_model(model_dir, task)
    config = model.config
    groups = list(groups) if groups is not None else catalog_groups()
    with atomic_directory(out_dir) as staging, tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.onnx"
        export_graph(model, raw, task=task, opset=opset)
        fused: dict[str, int] = {}
        if optimize:
            fused = optimize_graph(
                raw,
                staging / ONNX_MODEL_NAME,
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
            )
        else:
            shutil.copy2(raw, staging / ONNX_MODEL_NAME)
        copy_model_files(model_dir, staging)
        agreement = compare_to_reference(model_dir, staging, task=task, groups=groups)
        check(agreement, thresholds, what=f"ONNX export of {model_dir}")
        source_manifest = read_manifest(model_dir) or {}
        manifest = variant_manifest(
            source_manifest,
            staging,
            task=task,
            variant="fp32",
            source_dir=model_dir,
            details={
                "onnx": {
                    "file": ONNX_MODEL_NAME,
                    "opset": opset,
                    "recipe": EXPORT_RECIPE,
                    "optimizer": {
                        "model_type": "bert" if optimize else None,
                        "target": "cpu",
                        "num_heads": int(config.num_attention_heads),
                        "hidden_size": int(config.hidden_size),
                        "fused_operators": fused,
                    },
                },
                "parity": {
                    "reference": "torch fp32",
                    **agreement.as_dict(),
                    "thresholds": thresholds.as_dict(),
                },
            },
        )
        write_manifest(staging, manifest)
    seconds = time.perf_counter() - start
    logger.info("exported %s to %s in %.1f s", model_dir, out_dir, seconds)
    return ExportResult(path=out_dir, agreement=agreement, fused_operators=fused, seconds=seconds)


def compare_to_reference(
    reference_dir: Path,
    candidate_dir: Path,
    *,
    task: ModelTask,
    groups: Sequence[ParityGroup],
    reference_backend: str = "torch",
) -> Agreement:
    """Run both directories on ``groups`` through the serving tokenization and compare.

    The reference runs on ``reference_backend`` (fp32), the candidate on ONNX Runtime's CPU
    provider. A cross-encoder's logits are compared as they are, its rankings with the dense
    prior its manifest declares added (computed once, by the serving bi-encoder).
    """
    from ranker.backends import load_backend

    quiet = BackendSettings(warmup=False, onnx_providers=("CPUExecutionProvider",))
    reference = load_backend(reference_backend, reference_dir, task=task, config=quiet)
    candidate = load_backend("onnx", candidate_dir, task=task, config=quiet)
    if task is ModelTask.EMBED:
        return embedding_agreement(
            groups,
            reference=_embed_fn(reference_dir, reference),
            candidate=_embed_fn(reference_dir, candidate),
        )
    return score_agreement(
        groups,
        reference=_score_fn(reference_dir, reference),
        candidate=_score_fn(reference_dir, candidate),
        prior=_prior_fn(reference_dir),
    )


def _prior_fn(model_dir: Path) -> ScoreFn | None:
    """The dense prior a cross-encoder's manifest declares, on the settings' bi-encoder."""
    if not (read_manifest(model_dir) or {}).get("prior"):
        return None
    from ranker.loading import load_embedder
    from ranker.reranker import dense_prior
    from ranker.settings import Settings

    prior = dense_prior(model_dir, load_embedder(Settings()))
    assert prior is not None
    return prior.scores


def _embed_fn(model_dir: Path, backend: Backend) -> EmbedFn:
    from indexer.stores.base import ModelIdentity
    from ranker.embedder import Embedder
    from ranker.tokenization import PairTokenizer

    settings = EmbedderSettings()
    dimension = int(backend.infer(dummy_batch(1, 2)).shape[1])
    embedder = Embedder(
        tokenizer=PairTokenizer.from_model_dir(model_dir, max_length=settings.max_length),
        backend=backend,
        identity=ModelIdentity(model_id="parity", weights_sha256="-", dimension=dimension),
        batch_size=settings.batch_size,
    )

    def embed(texts: Sequence[str]) -> FloatArray:
        return embedder.embed(texts, normalize=False)

    return embed


def _score_fn(model_dir: Path, backend: Backend) -> ScoreFn:
    from ranker.reranker import Reranker
    from ranker.tokenization import PairTokenizer

    settings = RerankSettings()
    reranker = Reranker(
        tokenizer=PairTokenizer.from_model_dir(model_dir, max_length=settings.max_length),
        backend=backend,
        model_id="parity",
        weights_sha256="-",
        batch_size=settings.batch_size,
        max_query_tokens=ApiSettings().max_query_tokens,
    )
    return reranker.score


def variant_manifest(
    source_manifest: Mapping[str, Any],
    staging: Path,
    *,
    task: ModelTask,
    variant: str,
    source_dir: Path,
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """The source's manifest, with this variant's identity, lineage and details on top."""
    from ranker.model_files import weights_sha256

    source = source_manifest.get("source") or {
        "model_id": model_id(source_dir),
        "weights_sha256": weights_sha256(source_dir),
        "path": str(source_dir),
    }
    digest = weights_sha256.__wrapped__(staging)
    return {
        **{k: v for k, v in source_manifest.items() if k not in ("versions", "created_at")},
        "model_id": f"{source['model_id']}-onnx-{variant}",
        "task": task.value,
        "format": "onnx",
        "variant": variant,
        "source": source,
        "derived_from": list(lineage(source_dir)),
        **details,
        "weights_sha256": digest,
        "dtype": "float16" if variant == "fp16" else "float32",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }


def install_gated(
    source: Path,
    target: Path,
    gate: Mapping[str, Any],
    *,
    serving: Mapping[str, Any] | None = None,
) -> None:
    """Copy a model directory that passed its gate to where serving looks for it (a temp
    dir, then a rename), with the verdict (``passed: true`` added) in its manifest, and the
    settings it was judged with (``serving``, e.g. its input length) when given."""
    with atomic_directory(target) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        manifest = read_manifest(staging) or {}
        if serving is not None:
            manifest = {**manifest, "serving": {**manifest.get("serving", {}), **serving}}
        write_manifest(staging, {**manifest, "gate": {**gate, "passed": True}})


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("torch", "transformers", "onnx", "onnxruntime"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
