"""The GPU bench says it was not run where no CUDA GPU is present, and times nothing."""

from __future__ import annotations

import pytest

from bench import gpu, gpu_training


def test_without_a_gpu_the_bench_says_it_was_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    result = gpu.run(repeats=1)

    assert result == {"task": "rerank-50 on CUDA", "skipped": gpu.NO_GPU}
    assert gpu.render(result) == f"rerank-50 on CUDA: {gpu.NO_GPU}"


def test_without_a_gpu_the_training_bench_trains_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    result = gpu_training.run(steps=1)

    assert result == {
        "task": "reranker training, 1 steps of 16 pairs",
        "skipped": gpu_training.NO_GPU,
    }
    assert gpu_training.render(result).endswith(gpu_training.NO_GPU)


def test_the_training_bench_puts_the_gpu_beside_the_cpu() -> None:
    rows = [
        {
            "variant": gpu_training.BASELINE,
            "seconds": 100.0,
            "steps_per_s": 2.0,
            "validation_ndcg": "0.6800",
            "over_prior": "+0.0020",
            "speedup": 1.0,
        },
        {
            "variant": "cuda, bfloat16 autocast",
            "seconds": 5.0,
            "steps_per_s": 40.0,
            "validation_ndcg": "0.6790",
            "over_prior": "+0.0010",
            "speedup": 20.0,
        },
    ]

    table = gpu_training.render({"task": "t", "device": "H200", "rows": rows})

    assert table.splitlines()[0] == "t on H200"
    assert "20.00x" in table.splitlines()[-1]
    assert "1.00x (baseline)" in table.splitlines()[-2]
