"""File helpers shared by the evaluation modules: reading CSV and writing atomically."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

_FILE_MODE = 0o644


def open_text(path: Path) -> IO[str]:
    """Open ``path`` for reading as UTF-8 text, dropping a BOM; ``.gz`` files are decompressed."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def read_csv(path: Path, *, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Read a CSV file with a header into ``(line_number, row)`` pairs.

    Column names and values are stripped of surrounding whitespace; a short row's missing
    fields read as empty strings; blank lines are skipped. Columns beyond ``required`` are
    kept but unchecked.

    Raises:
        ValueError: the file is empty, lacks required columns (all are named), or a row has
            more fields than the header.
    """
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected columns {', '.join(required)}")
        columns = [name.strip() for name in header]
        missing = [name for name in required if name not in columns]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}"
            )
        rows: list[tuple[int, dict[str, str]]] = []
        for fields in reader:
            if not fields or all(not value.strip() for value in fields):
                continue
            if len(fields) > len(columns):
                raise ValueError(
                    f"{path}:{reader.line_num}: {len(fields)} fields, "
                    f"but the header has {len(columns)}"
                )
            values = [value.strip() for value in fields]
            values += [""] * (len(columns) - len(values))
            rows.append((reader.line_num, dict(zip(columns, values, strict=True))))
    return rows


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write`` into a temp file beside it, then ``os.replace`` it.

    Readers see either the old file or the whole new one. Missing parent directories are
    created; the temp file is removed if writing fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    logger.debug("wrote %s", path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(handle: IO[bytes]) -> None:
        handle.write(data)

    atomic_write(path, write)
