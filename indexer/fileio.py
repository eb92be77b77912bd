"""Reading text files: gzip-aware, BOM-tolerant opening and CSV with required columns."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import IO


def open_text(path: Path) -> IO[str]:
    """Open ``path`` for reading as UTF-8 text, dropping a BOM; ``.gz`` files are decompressed."""
    # utf-8-sig: spreadsheet exports start with a BOM, which would hide the first column.
    if path.suffix.lower() == ".gz":
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
    return read_csv_table(path, required=required)[1]


def read_csv_table(
    path: Path, *, required: tuple[str, ...] = ()
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """:func:`read_csv`, with the header's column names first."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            expected = f"; expected columns {', '.join(required)}" if required else ""
            raise ValueError(f"{path}: empty file{expected}")
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
    return columns, rows
