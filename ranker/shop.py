"""A shop's own files: its catalog and judgments, each with the mapping it is read with.

Mappings come from flags (``--field id=product_uid``, ``--judgment-field gain=relevance``,
``--gains E=1,S=0.1``, ``--gain-base 1``), from a TOML file (``--mapping shop.toml``, with a
``[catalog]`` and a ``[judgments]`` table; flags win), or from a job's parameters (plain
JSON). Every step resolves its catalog the same way (:meth:`ShopFiles.catalog_for`): the one
given; else, when judgments are given, the catalog the index was built from, read with the
mapping its manifest records; never the sample catalog behind a shop's judgments.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from indexer.catalog import CatalogFile, CatalogInput, FieldMapping, catalog_file
from ranker.errors import InputError
from ranker.evaluation.judgment_files import (
    JudgmentMapping,
    JudgmentsFile,
    JudgmentsInput,
    judgments_file,
)
from ranker.settings import Settings

logger = logging.getLogger(__name__)

CATALOG_MAPPING_KEY = "catalog_mapping"
"""The index manifest's record of the mapping its catalog was read with."""


@dataclasses.dataclass(frozen=True)
class ShopFiles:
    """The catalog and judgments a step was given (None: not given), with their mappings."""

    catalog: CatalogFile | None = None
    judgments: JudgmentsFile | None = None
    judgment_mapping: JudgmentMapping = dataclasses.field(default_factory=JudgmentMapping)
    """Also how ``shoprank run`` reads its queries and candidates files."""

    def catalog_for(self, settings: Settings) -> CatalogFile | None:
        """The catalog whose texts go with these judgments; see :func:`resolve_catalog`."""
        return resolve_catalog(settings, self.catalog, judgments_given=self.judgments is not None)

    def params(self) -> dict[str, Any]:
        """The files and mappings as a job's parameters (plain JSON; defaults left out)."""
        params: dict[str, Any] = {}
        if self.catalog is not None:
            params["catalog"] = str(self.catalog.path)
            if not self.catalog.mapping.is_default:
                params["catalog_mapping"] = self.catalog.mapping.model_dump(
                    mode="json", exclude_defaults=True
                )
        if self.judgments is not None:
            params["judgments"] = str(self.judgments.path)
            if not self.judgments.mapping.is_default:
                params["judgment_mapping"] = self.judgments.mapping.model_dump(
                    mode="json", exclude_defaults=True
                )
        return params


def mapping_inputs(
    *, catalog: CatalogInput | None = None, judgments: JudgmentsInput | None = None
) -> dict[str, Any]:
    """The mappings other than the default ones, for keys of work that reads the files
    (``catalog_mapping``, ``judgment_mapping``); empty for the default mappings, so the keys
    of sample runs do not change."""
    found: dict[str, Any] = {}
    if catalog is not None and not (mapping := catalog_file(catalog).mapping).is_default:
        found[CATALOG_MAPPING_KEY] = mapping.model_dump(mode="json")
    if judgments is not None and not (other := judgments_file(judgments).mapping).is_default:
        found["judgment_mapping"] = other.model_dump(mode="json")
    return found


def resolve_catalog(
    settings: Settings, catalog: CatalogFile | None, *, judgments_given: bool
) -> CatalogFile | None:
    """The catalog a step reads product texts from.

    ``catalog`` when given. Else, with judgments given, the catalog the index in
    ``settings.index_path`` was built from, with the mapping its manifest records; an
    InputError when there is no such index or its catalog file is gone, rather than the
    sample catalog (whose ids a shop's judgments would not find). None (the samples) when
    neither is given.
    """
    if catalog is not None or not judgments_given:
        return catalog
    from indexer.jobs import read_index_manifest
    from indexer.stores.base import StoreError

    hint = "pass the shop's catalog with --catalog (and its --field/--mapping)"
    try:
        manifest = read_index_manifest(settings.index_path)
    except (StoreError, OSError) as exc:
        raise InputError(
            f"judgments given without a catalog, and no index to take it from ({exc}); {hint}"
        ) from exc
    source = Path(str(manifest.get("source", "")))
    if not source.is_file():
        raise InputError(
            f"judgments given without a catalog, and the catalog the index at "
            f"{settings.index_path} was built from ({source}) is not a file here; {hint}"
        )
    found = CatalogFile(source, catalog_mapping(manifest.get(CATALOG_MAPPING_KEY) or {}))
    logger.info("no catalog given: using the index's, %s", found.describe())
    return found


def catalog_mapping(
    table: Mapping[str, Any],
    *,
    fields: Mapping[str, str] | None = None,
    attributes: str | None = None,
    join: Sequence[Path] = (),
    duplicates: str | None = None,
) -> FieldMapping:
    """A catalog mapping: a TOML ``[catalog]`` table (or a manifest's record), with flags on
    top. ``attributes``: comma-separated columns kept as attributes ('' keeps none)."""
    merged: dict[str, Any] = dict(table)
    merged["fields"] = {**dict(table.get("fields") or {}), **dict(fields or {})}
    if attributes is not None:
        merged["attributes"] = [name.strip() for name in attributes.split(",") if name.strip()]
    if join:
        merged["join"] = [*merged.get("join", ()), *(str(path.absolute()) for path in join)]
    if duplicates is not None:
        merged["duplicates"] = duplicates
    try:
        return FieldMapping.model_validate(merged)
    except ValidationError as exc:
        raise InputError(f"catalog mapping: {_problems(exc)}") from exc


def judgment_mapping(
    table: Mapping[str, Any],
    *,
    fields: Mapping[str, str] | None = None,
    gains: Mapping[str, float] | None = None,
    gain_base: float | None = None,
) -> JudgmentMapping:
    """A judgments mapping: a TOML ``[judgments]`` table, with flags on top."""
    merged: dict[str, Any] = dict(table)
    merged["fields"] = {**dict(table.get("fields") or {}), **dict(fields or {})}
    if gains is not None:
        merged["gains"] = dict(gains)
    if gain_base is not None:
        merged["gain_base"] = gain_base
    try:
        return JudgmentMapping.model_validate(merged)
    except ValidationError as exc:
        raise InputError(f"judgments mapping: {_problems(exc)}") from exc


def read_mapping_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[catalog]`` and ``[judgments]`` tables of a TOML mapping file; relative ``join``
    paths are taken from the file's folder."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the mapping file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - {"catalog", "judgments"})
    if unknown:
        raise InputError(f"{path}: unknown table(s) {unknown}; use [catalog] and [judgments]")
    catalog, judgments = document.get("catalog", {}), document.get("judgments", {})
    if not isinstance(catalog, dict) or not isinstance(judgments, dict):
        raise InputError(f"{path}: catalog and judgments must be tables")
    if isinstance(catalog.get("join"), list):
        folder = path.absolute().parent
        catalog["join"] = [str(folder / str(name)) for name in catalog["join"]]
    return catalog, judgments


def parse_assignments(values: Sequence[str], *, option: str) -> dict[str, str]:
    """``["id=product_uid", ...]`` -> ``{"id": "product_uid"}``; InputError names the option."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise InputError(f"{option} takes FIELD=COLUMN, got {value!r}")
        pairs[name.strip()] = column.strip()
    return pairs


def parse_gains(text: str) -> dict[str, float]:
    """``"E=1,S=0.1,C=0.01,I=0"`` -> label -> gain; InputError on a malformed part."""
    gains: dict[str, float] = {}
    for part in (part.strip() for part in text.split(",")):
        label, sep, number = part.partition("=")
        try:
            gain = float(number)
        except ValueError:
            gain = math.nan
        if not sep or not label.strip() or not math.isfinite(gain) or gain < 0:
            raise InputError(
                f"--gains takes LABEL=GAIN pairs, comma-separated, gains finite and >= 0; "
                f"got {part!r}"
            )
        gains[label.strip()] = gain
    return gains


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'mapping'}: {error['msg']}"
        for error in exc.errors()
    )
