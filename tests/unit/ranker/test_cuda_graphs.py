"""CUDA graphs for the torch backend: shape buckets and padding (checked on the CPU, where
padded batches must give the same rows as unpadded ones), the refusal and fallback without a
GPU, and graph replay against eager runs (skipped, saying why, without CUDA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ranker.backends import BackendError, ModelTask, resolve_backend
from ranker.backends.base import TokenBatch
from ranker.backends.cuda_graphs import COLUMN_STEP, ROW_BUCKETS, bucket_shape, pad_batch_to
from ranker.backends.torch_backend import TorchBackend
from ranker.settings import BackendSettings

NO_CUDA = "CUDA graphs need a CUDA GPU; none here"


def _batch(rows: int, columns: int, *, seed: int = 0) -> TokenBatch:
    """Random word-piece ids, each row a different length (a ragged, right-padded batch)."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1000, 2000, size=(rows, columns), dtype=np.int64)
    attention_mask = np.zeros((rows, columns), dtype=np.int64)
    for row in range(rows):
        attention_mask[row, : columns - row % columns] = 1
    input_ids[attention_mask == 0] = 0
    return TokenBatch(input_ids, attention_mask, np.zeros_like(input_ids))


@pytest.mark.parametrize(
    ("shape", "bucket"),
    [((1, 1), (1, COLUMN_STEP)), ((3, 17), (4, 2 * COLUMN_STEP)), ((50, 40), (64, 48))],
)
def test_batches_pad_up_to_the_next_bucket(shape: tuple[int, int], bucket: tuple[int, int]) -> None:
    assert bucket_shape(*shape) == bucket


def test_a_batch_beyond_the_largest_bucket_has_none() -> None:
    assert bucket_shape(ROW_BUCKETS[-1] + 1, 8) is None
    with pytest.raises(ValueError, match="empty batch"):
        bucket_shape(0, 8)


def test_padding_rows_attend_to_one_position_and_columns_are_masked() -> None:
    batch = _batch(3, 5)

    padded = pad_batch_to(batch, 4, 16)

    assert padded.shape == (4, 16)
    np.testing.assert_array_equal(padded.input_ids[:3, :5], batch.input_ids)
    assert padded.attention_mask[:, 5:].sum() == 0
    assert list(padded.attention_mask[3]) == [1] + [0] * 15
    with pytest.raises(ValueError, match="cannot pad"):
        pad_batch_to(batch, 2, 16)


@pytest.mark.parametrize("task", [ModelTask.EMBED, ModelTask.SCORE])
def test_padded_batches_give_the_same_rows_as_unpadded_ones(
    task: ModelTask, tiny_embedder_dir: Path, tiny_reranker_dir: Path
) -> None:
    model_dir = tiny_embedder_dir if task is ModelTask.EMBED else tiny_reranker_dir
    backend = TorchBackend(model_dir, task=task)
    batch = _batch(5, 11)

    padded = pad_batch_to(batch, *(bucket_shape(*batch.shape) or batch.shape))

    np.testing.assert_allclose(backend.infer(padded)[:5], backend.infer(batch), atol=1e-5)


def test_the_torch_backend_refuses_cuda_graphs_on_the_cpu(tiny_embedder_dir: Path) -> None:
    with pytest.raises(BackendError, match="CUDA graphs need a CUDA device"):
        TorchBackend(tiny_embedder_dir, task=ModelTask.EMBED, cuda_graphs=True)


def test_selection_drops_cuda_graphs_without_a_gpu_and_says_so(
    tiny_embedder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ranker.backends.cuda_available", lambda: False)
    config = BackendSettings(torch_cuda_graphs=True, warmup=False)

    name, options, reason = resolve_backend("auto", tiny_embedder_dir, config)

    assert (name, options) == ("torch", {})
    assert "CUDA graphs asked for, but no CUDA GPU" in reason


def test_selection_passes_dtype_and_cuda_graphs_on_a_gpu(
    tiny_embedder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ranker.backends.cuda_available", lambda: True)
    config = BackendSettings(torch_cuda_dtype="bfloat16", torch_cuda_graphs=True, warmup=False)

    _, options, _ = resolve_backend("torch", tiny_embedder_dir, config)

    assert options == {"device": "cuda", "dtype": "bfloat16", "cuda_graphs": True}


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("task", [ModelTask.EMBED, ModelTask.SCORE])
def test_graph_replays_match_eager_runs_on_cuda(
    task: ModelTask, tiny_embedder_dir: Path, tiny_reranker_dir: Path
) -> None:
    model_dir = tiny_embedder_dir if task is ModelTask.EMBED else tiny_reranker_dir
    eager = TorchBackend(model_dir, task=task, device="cuda", dtype="float16")
    graphed = TorchBackend(model_dir, task=task, device="cuda", dtype="float16", cuda_graphs=True)

    for rows, columns in [(5, 11), (5, 13), (2, 40)]:  # (5, 11) and (5, 13) share a graph
        batch = _batch(rows, columns, seed=rows * columns)
        np.testing.assert_allclose(graphed.infer(batch), eager.infer(batch), atol=2e-2)
    assert graphed.captured_graphs == 2
