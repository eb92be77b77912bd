"""Compression's input key changes with what its result depends on, the CPU included."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranker.compress import inputs
from ranker.compress.records import CompressConfig
from ranker.settings import Settings


def test_the_key_changes_with_the_cpu_instruction_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path)
    config = CompressConfig(layers=(1,), max_lengths=(40,))
    first = inputs.compression_key(settings, config)
    assert inputs.compression_key(settings, config) == first
    monkeypatch.setattr(inputs, "simd_flags", lambda: ("avx2", "avx512_vnni"))
    assert inputs.compression_key(settings, config) != first
    monkeypatch.undo()
    other = CompressConfig(layers=(2,), max_lengths=(40,))
    assert inputs.compression_key(settings, other) != first
