"""The GPU bench says it was not run where no CUDA GPU is present, and times nothing."""

from __future__ import annotations

import pytest

from bench import gpu


def test_without_a_gpu_the_bench_says_it_was_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    result = gpu.run(repeats=1)

    assert result == {"task": "rerank-50 on CUDA", "skipped": gpu.NO_GPU}
    assert gpu.render(result) == f"rerank-50 on CUDA: {gpu.NO_GPU}"
