"""Backend selection: explicit names win, auto follows the machine, GPUs fall back to the CPU.

The real CUDA and TensorRT checks skip, with the reason, where their provider is absent.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ranker.backends import BackendError, ModelTask, load_backend, resolve_backend
from ranker.backends.base import dummy_batch
from ranker.settings import BackendSettings

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
QUIET = BackendSettings(warmup=False)


def test_auto_runs_a_weights_directory_on_torch(
    tiny_embedder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ranker.backends.cuda_available", lambda: False)

    name, options, reason = resolve_backend("auto", tiny_embedder_dir, QUIET)

    assert (name, options) == ("torch", {})
    assert "no GPU" in reason


def test_auto_runs_an_export_on_onnxruntime(onnx_embedder_dir: Path) -> None:
    name, _, reason = resolve_backend("auto", onnx_embedder_dir, QUIET)

    assert name == "onnx"
    assert "exported graph" in reason


def test_an_explicit_backend_wins(onnx_embedder_dir: Path) -> None:
    name, _, reason = resolve_backend("torch", onnx_embedder_dir, QUIET)

    assert name == "torch"
    assert reason == "set explicitly"


def test_onnx_on_a_weights_directory_says_to_export(tiny_embedder_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(BackendError, match=r"no model\.onnx; export"):
        load_backend("onnx", tiny_embedder_dir, task=ModelTask.EMBED, config=QUIET)


def test_onnx_refuses_the_wrong_task(onnx_embedder_dir: Path) -> None:
    with pytest.raises(BackendError, match="computes 'embed', not 'score'"):
        load_backend("onnx", onnx_embedder_dir, task=ModelTask.SCORE, config=QUIET)


# ------------------------------------------------------------------ provider choice


def test_auto_providers_prefer_tensorrt_then_cuda_on_a_gpu() -> None:
    from ranker.backends.onnx_backend import choose_providers

    providers, reason = choose_providers((), [TENSORRT, CUDA, CPU], gpu=True)

    assert providers == [TENSORRT, CUDA, CPU]
    assert TENSORRT in reason


def test_auto_providers_without_a_gpu_are_the_cpu() -> None:
    from ranker.backends.onnx_backend import choose_providers

    providers, reason = choose_providers((), [TENSORRT, CUDA, CPU], gpu=False)

    assert providers == [CPU]
    assert "no GPU" in reason


def test_requested_gpu_provider_missing_falls_back_to_cpu() -> None:
    from ranker.backends.onnx_backend import choose_providers

    providers, reason = choose_providers((CUDA,), [CPU], gpu=True)

    assert providers == [CPU]
    assert "CUDAExecutionProvider not usable" in reason
    assert "falling back" in reason


def test_onnx_backend_falls_back_to_cpu_when_cuda_is_absent(
    onnx_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CPU])
    config = BackendSettings(onnx_providers=(TENSORRT, CUDA), warmup=False)

    backend = load_backend("onnx", onnx_reranker_dir, task=ModelTask.SCORE, config=config)

    assert backend.device == "cpu"
    assert "falling back" in backend.reason  # type: ignore[attr-defined]
    assert backend.infer(dummy_batch(2, 5)).shape == (2,)


def test_onnx_backend_falls_back_when_a_listed_gpu_provider_cannot_start(
    onnx_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime says CUDA is there and a GPU seems present, but the session cannot use it."""
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime really has CUDA; the fallback is tested on CPU builds")
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr("ranker.backends.onnx_backend.cuda_available", lambda: True)

    backend = load_backend("onnx", onnx_reranker_dir, task=ModelTask.SCORE, config=QUIET)

    assert backend.device == "cpu"
    assert backend.infer(dummy_batch(1, 4)).dtype == np.float32


def test_onnx_backend_threads_match_physical_cores() -> None:
    pytest.importorskip("onnxruntime")
    from ranker.backends.onnx_backend import session_options
    from ranker.hardware import physical_cores

    assert session_options(BackendSettings()).intra_op_num_threads == physical_cores()
    assert session_options(BackendSettings(intra_op_threads=3)).intra_op_num_threads == 3


def test_tensorrt_provider_options_carry_flags_and_cache(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from ranker.backends.onnx_backend import provider_options

    config = BackendSettings(trt_fp16=True, trt_int8=True, trt_engine_cache_dir=tmp_path / "e")

    options = provider_options(TENSORRT, config)

    assert options["trt_fp16_enable"] is True
    assert options["trt_int8_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "e")
    assert (tmp_path / "e").is_dir()
    assert provider_options(CPU, config) == {}


# ------------------------------------------------------------------ native TensorRT


def test_native_tensorrt_without_the_package_is_a_clear_error(
    onnx_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError

    hint = r"needs the `tensorrt` package: pip install 'shoprank\[tensorrt\]'"
    with pytest.raises(BackendError, match=hint):
        load_backend("tensorrt", onnx_reranker_dir, task=ModelTask.SCORE, config=QUIET)


def test_native_tensorrt_without_a_gpu_is_a_clear_error(
    onnx_reranker_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr("ranker.backends.tensorrt_backend.cuda_available", lambda: False)

    with pytest.raises(BackendError, match="needs a CUDA GPU and none is visible"):
        load_backend("tensorrt", onnx_reranker_dir, task=ModelTask.SCORE, config=QUIET)


# ------------------------------------------------------------------ real GPU paths


def _require_provider(provider: str) -> None:
    import onnxruntime

    from ranker.hardware import cuda_available

    if provider not in onnxruntime.get_available_providers():
        pytest.skip(f"{provider} is absent: this onnxruntime is CPU-only (needs onnxruntime-gpu)")
    if not cuda_available():
        pytest.skip(f"{provider} is installed but no CUDA GPU is visible")


@pytest.mark.parametrize("provider", [CUDA, TENSORRT])
def test_gpu_provider_matches_cpu(onnx_reranker_dir: Path, provider: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    _require_provider(provider)
    gpu_config = BackendSettings(
        onnx_providers=(provider,), trt_fp16=False, trt_engine_cache_dir=tmp_path, warmup=False
    )
    cpu = load_backend("onnx", onnx_reranker_dir, task=ModelTask.SCORE, config=QUIET)
    gpu = load_backend("onnx", onnx_reranker_dir, task=ModelTask.SCORE, config=gpu_config)
    batch = dummy_batch(4, 12)

    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(gpu.infer(batch), cpu.infer(batch), atol=1e-3)


def test_native_tensorrt_matches_onnxruntime(onnx_reranker_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="the tensorrt package is absent (needs a CUDA GPU)")
    from ranker.hardware import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA GPU is visible")
    config = BackendSettings(trt_fp16=False, trt_engine_cache_dir=tmp_path, warmup=False)
    native = load_backend("tensorrt", onnx_reranker_dir, task=ModelTask.SCORE, config=config)
    cpu = load_backend("onnx", onnx_reranker_dir, task=ModelTask.SCORE, config=QUIET)
    batch = dummy_batch(4, 12)

    np.testing.assert_allclose(native.infer(batch), cpu.infer(batch), atol=1e-3)
