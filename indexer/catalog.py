"""The product catalog: a typed schema, loaders for JSONL / CSV / Parquet, and text templates.

ESCI's field names (``asin``, ``title``, ``bullet_points`` ...) load as they are; other shops
pass a :class:`FieldMapping` from our field names to theirs.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from indexer.fileio import open_text
from indexer.markup import plain_text


class CatalogError(ValueError):
    """A catalog file or record that cannot be read; the message says where and why."""


class Product(BaseModel):
    """One product, as every store and model sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    title: str = ""
    description: str = ""
    bullet_points: tuple[str, ...] = ()
    brand: str = ""
    color: str = ""
    category: tuple[str, ...] = Field(default=(), description="The category path, broadest first.")
    price: float | None = Field(default=None, ge=0)
    attributes: dict[str, str | float | int | bool | None] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value).strip() if isinstance(value, (int, str)) else value


# Our field -> the source names tried in order. ESCI's names come first.
DEFAULT_SOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "id": ("asin", "product_id", "id", "_id", "product_uid"),
    "title": ("title", "product_title", "name"),
    "description": ("description", "product_description"),
    "bullet_points": ("bullet_points", "product_bullet_point", "bullets"),
    "brand": ("brand", "product_brand"),
    "color": ("color", "product_color", "colour"),
    "category": ("category", "categories", "product_category"),
    "price": ("price", "product_price"),
}

PRODUCT_TEXT_FIELDS = ("title", "description", "bullet_points", "brand", "color", "category")


class FieldMapping(BaseModel):
    """Which source column feeds each Product field.

    ``fields`` overrides the defaults for the fields it names; ``attributes`` lists source
    columns kept as free-form attributes (by default every unmapped column is kept).
    """

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, str] = Field(default_factory=dict)
    attributes: tuple[str, ...] | None = None
    category_separator: str = Field(default=" > ", description="For categories given as text.")
    join: tuple[str, ...] = Field(
        default=(),
        description="More files (same formats) whose columns are added to each record with "
        "the same product id, where the record's own are empty; e.g. a descriptions file.",
    )
    duplicates: Literal["error", "first"] = Field(
        default="error",
        description="A repeated product id: an error, or keep the first record (for a file "
        "with one row per judgment, such as Home Depot's).",
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(DEFAULT_SOURCE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown product field(s) {unknown}; known: {sorted(DEFAULT_SOURCE_NAMES)}"
            )
        return value

    def source_for(self, field: str, record: Mapping[str, Any]) -> str | None:
        """The column of ``record`` that feeds ``field``, or None."""
        if field in self.fields:
            return self.fields[field]
        return next((name for name in DEFAULT_SOURCE_NAMES[field] if name in record), None)

    @property
    def is_default(self) -> bool:
        """True when this mapping reads a file as ESCI's names would."""
        return self == FieldMapping()


@dataclasses.dataclass(frozen=True)
class CatalogFile:
    """A catalog file and the mapping it is read with."""

    path: Path
    mapping: FieldMapping = dataclasses.field(default_factory=FieldMapping)

    def describe(self) -> str:
        """The path, with the mapping when it is not the default one (for logs, lineage)."""
        if self.mapping.is_default:
            return str(self.path)
        return f"{self.path} (mapping {self.mapping.model_dump_json(exclude_defaults=True)})"


CatalogInput = Path | CatalogFile
"""A catalog as the jobs take it: a path (read with the default mapping) or a CatalogFile."""


def catalog_file(catalog: str | Path | CatalogFile) -> CatalogFile:
    """``catalog`` as a :class:`CatalogFile` (a bare path reads with the default mapping)."""
    return catalog if isinstance(catalog, CatalogFile) else CatalogFile(Path(catalog))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _as_text(value: Any) -> str:
    return "" if _is_missing(value) else str(value).strip()


def _as_plain_text(value: Any) -> str:
    return plain_text(_as_text(value))


def _as_list(value: Any, separator: str) -> tuple[str, ...]:
    if _is_missing(value):
        return ()
    if isinstance(value, str):
        parts: Iterable[Any] = value.split(separator)
    elif isinstance(value, Iterable):
        parts = value
    else:
        parts = [value]
    return tuple(text for part in parts if (text := _as_plain_text(part)))


def _as_price(value: Any) -> float | None:
    if _is_missing(value):
        return None
    if isinstance(value, str):
        cleaned = value.replace("$", "").replace(",", "").strip()
        return float(cleaned) if cleaned else None
    return float(value)


def product_from_record(record: Mapping[str, Any], mapping: FieldMapping | None = None) -> Product:
    """Build a Product from one source record; raises CatalogError on bad values. Text fields
    carrying HTML are read as plain text (:func:`indexer.markup.plain_text`)."""
    mapping = mapping or FieldMapping()
    used: set[str] = set()
    values: dict[str, Any] = {}
    for field in DEFAULT_SOURCE_NAMES:
        source = mapping.source_for(field, record)
        if source is None:
            continue
        used.add(source)
        raw = record.get(source)
        try:
            if field == "bullet_points":
                values[field] = _as_list(raw, "\n")
            elif field == "category":
                values[field] = _as_list(raw, mapping.category_separator)
            elif field == "price":
                values[field] = _as_price(raw)
            elif field == "id":
                values[field] = _as_text(raw)
            else:
                values[field] = _as_plain_text(raw)
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"field {field!r} (column {source!r}): {exc}") from exc
    if not values.get("id"):
        looked_for = mapping.fields.get("id") or ", ".join(DEFAULT_SOURCE_NAMES["id"])
        raise CatalogError(f"record has no product id (looked for: {looked_for})")
    extra_columns = mapping.attributes
    if extra_columns is None:
        extra_columns = tuple(name for name in record if name not in used)
    attributes = {}
    for name in extra_columns:
        value = record.get(name)
        if isinstance(value, (str, int, float, bool)) and not _is_missing(value):
            attributes[name] = value
    values["attributes"] = attributes
    try:
        return Product(**values)
    except ValidationError as exc:
        raise CatalogError(str(exc)) from exc


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CatalogError(f"{path}:{line_number}: invalid JSON: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise CatalogError(f"{path}:{line_number}: expected a JSON object")
            yield line_number, record


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path) as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, dict(row)


def _parquet_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    yield from enumerate(table.to_pylist(), start=1)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return _jsonl_records(path)
    if name.endswith(".csv"):
        return _csv_records(path)
    if name.endswith(".parquet"):
        return _parquet_records(path)
    raise CatalogError(
        f"{path}: unknown catalog format; use .jsonl, .jsonl.gz, .csv, .csv.gz or .parquet"
    )


def iter_products(
    path: str | Path | CatalogFile, mapping: FieldMapping | None = None
) -> Iterator[Product]:
    """Stream products from a JSONL (optionally gzipped), CSV or Parquet file.

    ``path`` may be a :class:`CatalogFile`, whose mapping is used unless ``mapping`` is given.
    """
    source = _with_mapping(path, mapping)
    for _, product in _positioned_products(source.path, source.mapping):
        yield product


def _with_mapping(path: str | Path | CatalogFile, mapping: FieldMapping | None) -> CatalogFile:
    source = catalog_file(path)
    return source if mapping is None else CatalogFile(source.path, mapping)


def _positioned_products(path: Path, mapping: FieldMapping) -> Iterator[tuple[int, Product]]:
    """Products with their line (JSONL, CSV) or row (Parquet) number; with
    ``mapping.duplicates == "first"``, only the first record of each id."""
    if not path.is_file():
        raise CatalogError(f"{path}: no such catalog file")
    joined = [_join_table(Path(name), mapping) for name in mapping.join]
    kept: set[str] = set()
    for position, record in _records(path):
        try:
            product = product_from_record(_joined(record, joined, mapping), mapping)
        except CatalogError as exc:
            raise CatalogError(f"{path}:{position}: {exc}") from exc
        if mapping.duplicates == "first":
            if product.id in kept:
                continue
            kept.add(product.id)
        yield position, product


def _join_table(path: Path, mapping: FieldMapping) -> tuple[str, dict[str, dict[str, Any]]]:
    """A joined file's records by product id, and the id column they were keyed by."""
    if not path.is_file():
        raise CatalogError(f"{path}: no such file to join to the catalog")
    table: dict[str, dict[str, Any]] = {}
    column = ""
    for position, record in _records(path):
        column = mapping.source_for("id", record) or ""
        if column not in record:
            raise CatalogError(f"{path}:{position}: no product id column to join on")
        table.setdefault(_as_text(record[column]), record)
    return column, table


def _joined(
    record: dict[str, Any],
    tables: list[tuple[str, dict[str, dict[str, Any]]]],
    mapping: FieldMapping,
) -> dict[str, Any]:
    """``record`` with the columns of its rows in ``tables`` where its own are missing."""
    if not tables:
        return record
    key = _as_text(record.get(mapping.source_for("id", record) or ""))
    merged = dict(record)
    for column, table in tables:
        for name, value in table.get(key, {}).items():
            if name != column and _is_missing(merged.get(name)):
                merged[name] = value
    return merged


def load_products(
    path: str | Path | CatalogFile, mapping: FieldMapping | None = None
) -> list[Product]:
    """Load a whole catalog; duplicate ids are an error, since they would silently overwrite
    (unless the mapping keeps the first of each). A :class:`CatalogFile` brings its mapping."""
    source = _with_mapping(path, mapping)
    path = source.path
    products: list[Product] = []
    first_seen: dict[str, int] = {}
    for position, product in _positioned_products(path, source.mapping):
        if product.id in first_seen:
            raise CatalogError(
                f"{path}:{position}: duplicate product id {product.id!r} "
                f"(first seen at {path}:{first_seen[product.id]}); a file with one row per "
                'judgment needs duplicates = "first" (--catalog-duplicates first)'
            )
        first_seen[product.id] = position
        products.append(product)
    return products


class TextTemplate:
    """Builds the text a model sees for a product from a ``str.format`` template.

    A line whose placeholders are all empty is dropped, so ``"Brand: {brand}"`` disappears
    for a product without a brand. List fields are joined with ``list_separator``.
    """

    def __init__(self, template: str, *, list_separator: str = " ") -> None:
        self.template = template
        self.list_separator = list_separator
        self._lines: list[tuple[str, list[str]]] = []
        for line in template.split("\n"):
            names = [name for _, name, _, _ in string.Formatter().parse(line) if name]
            unknown = sorted(set(names) - set(Product.model_fields) - {"attributes"})
            if unknown:
                raise ValueError(f"text template names unknown product field(s) {unknown}")
            self._lines.append((line, names))

    def _field_values(self, product: Product) -> dict[str, str]:
        values: dict[str, str] = {}
        for name in Product.model_fields:
            value = getattr(product, name)
            if isinstance(value, tuple):
                values[name] = self.list_separator.join(value)
            elif value is None:
                values[name] = ""
            else:
                values[name] = str(value)
        return values

    def render(self, product: Product) -> str:
        """The product's text, with empty lines and surplus whitespace removed."""
        values = self._field_values(product)
        lines = []
        for line, names in self._lines:
            if names and not any(values[name] for name in names):
                continue
            rendered = re.sub(r"[ \t]+", " ", line.format(**values)).strip()
            if rendered:
                lines.append(rendered)
        return "\n".join(lines)


def sample_catalog_path() -> Path:
    """The shipped ESCI sample catalog (Apache-2.0, see indexer/sample_data/README.md)."""
    return Path(str(resources.files("indexer") / "sample_data" / "products.jsonl.gz"))


def sample_judgments_path() -> Path:
    """The shipped ESCI example judgments (100 queries)."""
    return Path(str(resources.files("indexer") / "sample_data" / "judgments.csv"))
