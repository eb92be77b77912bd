"""Training picks its device at run time: a CUDA GPU when torch sees one, else the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ranker.backends.base import TokenBatch
from ranker.errors import InputError
from ranker.training import device as training_device
from ranker.training.device import (
    autocast_dtype,
    forward_inputs,
    forward_precision,
    model_device,
    resolve_device,
)


def _gpu(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    monkeypatch.setattr(training_device, "cuda_available", lambda: present)


@pytest.mark.parametrize(
    ("preference", "gpu", "expected"),
    [
        ("auto", False, "cpu"),
        ("auto", True, "cuda"),
        ("cpu", True, "cpu"),
        ("cuda", True, "cuda"),
    ],
)
def test_the_device_follows_the_preference_and_the_machine(
    preference: training_device.TrainingDevice,
    gpu: bool,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _gpu(monkeypatch, gpu)

    assert resolve_device(preference) == torch.device(expected)


def test_asking_for_cuda_without_a_gpu_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu(monkeypatch, False)

    with pytest.raises(InputError, match="torch sees no CUDA GPU here; use device 'auto' or 'cpu'"):
        resolve_device("cuda")


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, None)])
def test_a_gpu_runs_forward_passes_in_bfloat16_where_it_has_it(
    bf16: bool, expected: torch.dtype | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: bf16)

    assert autocast_dtype(torch.device("cuda")) == expected
    assert autocast_dtype(torch.device("cpu")) is None


def test_on_the_cpu_inputs_stay_as_given_and_nothing_is_autocast() -> None:
    model = torch.nn.Linear(2, 2)
    batch = TokenBatch(
        input_ids=np.array([[101, 7, 102]], dtype=np.int64),
        attention_mask=np.array([[1, 1, 1]], dtype=np.int64),
        token_type_ids=np.zeros((1, 3), dtype=np.int64),
    )

    inputs = forward_inputs(model, batch)

    assert model_device(model) == torch.device("cpu")
    assert {name: tensor.device.type for name, tensor in inputs.items()} == {
        "input_ids": "cpu",
        "attention_mask": "cpu",
        "token_type_ids": "cpu",
    }
    assert inputs["input_ids"].tolist() == [[101, 7, 102]]
    with forward_precision(model):
        assert not torch.is_autocast_enabled()


@pytest.mark.parametrize("flags", [[], ["--bi-encoder"]])
def test_train_refuses_cuda_without_a_gpu_before_it_reads_anything(
    flags: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ranker.cli import app
    from ranker.settings import get_settings
    from ranker.training import jobs

    def no_data(*_: object, **__: object) -> None:
        raise AssertionError("training data was read before the device was checked")

    _gpu(monkeypatch, False)
    monkeypatch.setattr(jobs, "load_training_data", no_data)
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    get_settings.cache_clear()

    result = CliRunner().invoke(app, ["train", *flags, "--device", "cuda"])

    get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "torch sees no CUDA GPU here" in result.output
