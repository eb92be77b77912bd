"""How a shop's judgments file reads: which column holds what, and how a grade becomes a gain.

A judgments file is CSV or JSONL (``.gz`` too) with one (query, product) judgment a row. Its
logical fields, and the columns read for them unless :class:`JudgmentMapping` says otherwise:

============  ======================  ===================================================
field         default column(s)       meaning
============  ======================  ===================================================
query_id      ``query_id``            optional: derived from the query text when absent
query         ``query``               the query text
product_id    ``product_id``          the judged product's id in the catalog
label         ``esci_label``/``label``  a category, its gain from ``gains`` (ESCI's)
gain          ``gain``                a number, ``gain = value - gain_base``
============  ======================  ===================================================

A file has a label or a gain column, not both. Every row error is an
:class:`~ranker.errors.InputError` naming the file, the line and the column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from indexer.fileio import open_text, read_csv_table
from ranker.errors import InputError

JUDGMENT_SOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "query_id": ("query_id",),
    "query": ("query",),
    "product_id": ("product_id",),
    "label": ("esci_label", "label"),
    "gain": ("gain",),
}
"""Our field -> the columns tried in order when the mapping does not name one."""

GradeKind = Literal["label", "gain"]


class JudgmentMapping(BaseModel):
    """Which column feeds each judgment field, and how grades become gains."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, str] = Field(default_factory=dict)
    gains: dict[str, float] | None = Field(
        default=None, description="Label -> gain; None: the settings' (ESCI: E 1, S 0.1, ...)."
    )
    gain_base: float = Field(
        default=0.0,
        description="A numeric grade's gain is the grade minus this (Home Depot's 1-3 and "
        "Crowdflower's 1-4 take 1: gain = relevance - 1).",
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(JUDGMENT_SOURCE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown judgment field(s) {unknown}; known: {sorted(JUDGMENT_SOURCE_NAMES)}"
            )
        if "label" in value and "gain" in value:
            raise ValueError("map either label or gain, not both")
        return value

    @field_validator("gains")
    @classmethod
    def _valid_gains(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            check_gains(value)
        return value

    @property
    def is_default(self) -> bool:
        """True when this mapping reads a file as ESCI's sample judgments are read."""
        return self == JudgmentMapping()


@dataclasses.dataclass(frozen=True)
class JudgmentsFile:
    """A judgments file and the mapping it is read with."""

    path: Path
    mapping: JudgmentMapping = dataclasses.field(default_factory=JudgmentMapping)

    def describe(self) -> str:
        """The path, with the mapping when it is not the default one (for logs, lineage)."""
        if self.mapping.is_default:
            return str(self.path)
        return f"{self.path} (mapping {self.mapping.model_dump_json(exclude_defaults=True)})"


JudgmentsInput = Path | JudgmentsFile
"""Judgments as the jobs take them: a path (the default mapping) or a JudgmentsFile."""


def judgments_file(judgments: str | Path | JudgmentsFile) -> JudgmentsFile:
    """``judgments`` as a :class:`JudgmentsFile` (a bare path reads with the default mapping)."""
    if isinstance(judgments, JudgmentsFile):
        return judgments
    return JudgmentsFile(Path(judgments))


def derived_query_id(query: str) -> str:
    """A stable id for a query text, for files without query ids: ``q`` and 12 hex digits of
    its SHA-1 (the same text in any file gets the same id)."""
    return "q" + hashlib.sha1(query.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


def check_gains(gains: Mapping[str, float]) -> None:
    """Raise InputError unless every gain is finite and non-negative."""
    bad = [label for label, gain in gains.items() if not (math.isfinite(gain) and gain >= 0)]
    if bad:
        raise InputError(f"gains must be finite and non-negative; bad labels: {', '.join(bad)}")


@dataclasses.dataclass(frozen=True)
class MappedRows:
    """A file's rows by our field names; ``columns`` says which column fed each field."""

    path: Path
    columns: dict[str, str]
    rows: list[tuple[int, dict[str, str]]]

    def where(self, line: int) -> str:
        """``file:line`` of a row."""
        return f"{self.path}:{line}"


def read_mapped(
    path: Path, mapping: JudgmentMapping, *, required: Sequence[str], grade: bool = False
) -> MappedRows:
    """Read ``path`` and rename its columns to our fields; ``query_id`` is always filled
    (derived from ``query`` when the file has no query id column). ``grade``: also find the
    label or gain column (as field ``label`` or ``gain``).

    Raises:
        InputError: the file is missing or empty, a required column is missing (named with
            the field it feeds), or a row lacks a value for one (file, line and column).
    """
    columns, records = _records(path)
    found: dict[str, str] = {}
    for name in JUDGMENT_SOURCE_NAMES:
        column = _column(columns, mapping, name)
        if column is not None:
            found[name] = column
    needed = list(required)
    if "query_id" in needed and "query_id" not in found and "query_id" not in mapping.fields:
        needed.remove("query_id")  # derived from the text
        needed.append("query")
    grade_missing: list[str] = []
    if grade:
        kind = _grade_kind(found, mapping)
        if kind is None:
            grade_missing.append(f"{_described('label', mapping)} or {_described('gain', mapping)}")
        else:
            found.pop(_other(kind), None)
            needed.append(kind)
    missing = [_described(name, mapping) for name in dict.fromkeys(needed) if name not in found]
    missing += grade_missing
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(columns)}"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    for line, record in records:
        row: dict[str, str] = {}
        for name, column in found.items():
            value = record.get(column)
            if value is None:
                raise InputError(f"{path}:{line}: no column {column!r} ({name})")
            if not value and name in needed:
                raise InputError(f"{path}:{line}: empty {column!r} ({name})")
            row[name] = value
        if "query_id" not in found and "query" in row:
            row["query_id"] = derived_query_id(row["query"])
        rows.append((line, row))
    return MappedRows(path, found, rows)


def _described(name: str, mapping: JudgmentMapping) -> str:
    """The column(s) looked for a field: ``product_id``, ``esci_label/label (label)``."""
    columns = (mapping.fields[name],) if name in mapping.fields else JUDGMENT_SOURCE_NAMES[name]
    return name if columns == (name,) else f"{'/'.join(columns)} ({name})"


def _other(kind: GradeKind) -> GradeKind:
    return "gain" if kind == "label" else "label"


def _column(columns: Sequence[str], mapping: JudgmentMapping, name: str) -> str | None:
    if name in mapping.fields:
        return mapping.fields[name] if mapping.fields[name] in columns else None
    return next((column for column in JUDGMENT_SOURCE_NAMES[name] if column in columns), None)


def _grade_kind(found: Mapping[str, str], mapping: JudgmentMapping) -> GradeKind | None:
    for kind in ("gain", "label"):
        if kind in mapping.fields:
            return kind  # type: ignore[return-value]
    if "label" in found:
        return "label"
    return "gain" if "gain" in found else None


def grade_gain(
    value: str,
    *,
    kind: GradeKind,
    gains: Mapping[str, float],
    base: float,
    where: str,
    column: str | None = None,
) -> float:
    """The gain of one grade: a label's from ``gains`` (a numeric label is a number), a
    number's ``value - base``; InputError (naming ``where`` and ``column``) unless finite
    and >= 0."""
    if kind == "label" and value in gains:
        return float(gains[value])
    grade = f"{kind} {value!r} in column {column or kind!r}"
    try:
        gain = float(value) - base
    except ValueError as exc:
        expected = f"one of {', '.join(gains)} or a number" if kind == "label" else "a number"
        raise InputError(f"{where}: unknown {grade}; expected {expected}") from exc
    if not math.isfinite(gain) or gain < 0:
        shifted = f" after subtracting --gain-base {base:g}" if base else ""
        raise InputError(f"{where}: {grade} is not a finite, non-negative gain{shifted}")
    return gain


def _records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Columns and ``(line, row)`` pairs of a CSV or JSONL file, values as stripped text."""
    if not path.is_file():
        raise InputError(f"{path}: no such judgments file")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return _jsonl_records(path)
    if not name.endswith((".csv", ".tsv", ".txt")) and "." in name:
        raise InputError(f"{path}: unknown judgments format; use .csv or .jsonl (.gz too)")
    try:
        return read_csv_table(path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _jsonl_records(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    columns: dict[str, None] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    with open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{line_number}: invalid JSON: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise InputError(f"{path}:{line_number}: expected a JSON object")
            columns.update(dict.fromkeys(record))
            rows.append((line_number, {key: _text(value) for key, value in record.items()}))
    if not rows:
        raise InputError(f"{path}: empty file")
    return list(columns), rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()
