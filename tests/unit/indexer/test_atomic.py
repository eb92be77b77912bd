"""Atomic directory and file writes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from indexer.stores.atomic import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    write_json_atomic,
)
from indexer.stores.base import StoreError


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def _fill_then_fail(target: Path) -> None:
    with atomic_directory(target) as temp:
        (temp / "half.txt").write_text("half")
        raise RuntimeError("failed midway")


def test_atomic_directory_creates_target(tmp_path: Path) -> None:
    target = tmp_path / "index"
    with atomic_directory(target) as temp:
        assert temp.parent == tmp_path
        assert temp.name.startswith(".index.tmp-")
        (temp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"
    assert _names(tmp_path) == ["index"]


def test_atomic_directory_replaces_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "index"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as temp:
        (temp / "new.txt").write_text("new")
    assert _names(target) == ["new.txt"]
    assert _names(tmp_path) == ["index"]


def test_atomic_directory_failure_leaves_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        _fill_then_fail(target)
    assert _names(target) == ["old.txt"]
    assert (target / "old.txt").read_text() == "old"
    assert _names(tmp_path) == ["index"]


def test_atomic_directory_failure_without_target_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boom"), atomic_directory(tmp_path / "index"):
        raise ValueError("boom")
    assert _names(tmp_path) == []


def test_atomic_directory_refuses_a_file_target(tmp_path: Path) -> None:
    target = tmp_path / "index"
    target.write_text("not a directory")
    with pytest.raises(StoreError, match="not a directory"), atomic_directory(target):
        pass
    assert target.read_text() == "not a directory"


def test_atomic_writes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "t.txt", "héllo")
    write_json_atomic(tmp_path / "j.json", {"b": 1, "a": [1.5, None]})
    atomic_write_text(tmp_path / "t.txt", "replaced")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "replaced"
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": [1.5, None], "b": 1}
    assert _names(tmp_path) == ["b.bin", "j.json", "t.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(ValueError, match="JSON compliant"):
        write_json_atomic(path, {"bad": float("nan")})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert _names(tmp_path) == ["j.json"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_entries_get_umask_permissions_not_private_ones(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_text(tmp_path / "t.txt", "x")
    with atomic_directory(tmp_path / "index"):
        pass
    assert _mode(tmp_path / "t.txt") == 0o666 & ~mask
    assert _mode(tmp_path / "index") == 0o777 & ~mask


def test_replacements_keep_the_target_permissions(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("old")
    (tmp_path / "t.txt").chmod(0o640)
    (tmp_path / "index").mkdir()
    (tmp_path / "index").chmod(0o750)
    atomic_write_text(tmp_path / "t.txt", "new")
    with atomic_directory(tmp_path / "index"):
        pass
    assert _mode(tmp_path / "t.txt") == 0o640
    assert _mode(tmp_path / "index") == 0o750


def test_replacing_a_directory_never_leaves_the_path_empty(tmp_path: Path) -> None:
    """A reader polling the path while it is replaced always finds a complete directory."""
    import threading

    from indexer.stores.atomic import exchange_paths

    target = tmp_path / "index"
    target.mkdir()
    (target / "manifest.json").write_text("0")
    probe_a, probe_b = tmp_path / "a", tmp_path / "b"
    probe_a.mkdir()
    probe_b.mkdir()
    if not exchange_paths(probe_a, probe_b):
        pytest.skip("this OS or file system cannot exchange two paths atomically")
    missing: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if not (target / "manifest.json").is_file():
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for number in range(1, 60):
            with atomic_directory(target) as temp:
                (temp / "manifest.json").write_text(str(number))
    finally:
        stop.set()
        reader.join()
    assert missing == []
    assert (target / "manifest.json").read_text() == "59"
    assert _names(tmp_path) == ["a", "b", "index"]
