"""The shop's command-line options, defined once: ``@shop_options(...)`` adds them to a
command and hands it one :class:`~ranker.shop.ShopFiles` as its ``shop`` argument.

Catalog: ``--catalog FILE``, ``--field FIELD=COLUMN`` (repeatable), ``--attributes COLS``,
``--catalog-join FILE`` (repeatable), ``--catalog-duplicates first``. Judgments:
``--judgments FILE``, ``--judgment-field FIELD=COLUMN`` (repeatable), ``--gains E=1,...``,
``--gain-base N``. Both: ``--mapping shop.toml`` (flags win over it). See
docs/your-own-shop.md.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from indexer.catalog import DEFAULT_SOURCE_NAMES, CatalogFile
from ranker.errors import InputError
from ranker.evaluation.judgment_files import JUDGMENT_SOURCE_NAMES, JudgmentsFile
from ranker.shop import (
    ShopFiles,
    catalog_mapping,
    judgment_mapping,
    parse_assignments,
    parse_gains,
    read_mapping_file,
)

R = TypeVar("R")


class DuplicatesChoice(StrEnum):
    """What a repeated product id in the catalog means."""

    ERROR = "error"
    FIRST = "first"


def _option(*names: str, help: str) -> Any:
    return typer.Option(*names, help=help, show_default=False)


_MAPPING = (
    "mapping",
    Annotated[
        Path | None,
        _option(
            "--mapping",
            help="TOML file with a catalog and a judgments table (fields, gains, gain_base, "
            "attributes, join, duplicates); flags win over it.",
        ),
    ],
)
_CATALOG = [
    (
        "catalog",
        Annotated[
            Path | None,
            _option(
                "--catalog",
                help="The shop's catalog (.jsonl[.gz], .csv[.gz], .parquet); default: with "
                "--judgments the index's catalog, else the sample.",
            ),
        ],
    ),
    (
        "field",
        Annotated[
            list[str] | None,
            _option(
                "--field",
                help="FIELD=COLUMN: the catalog column for a product field (repeatable); "
                f"fields: {', '.join(DEFAULT_SOURCE_NAMES)}.",
            ),
        ],
    ),
    (
        "attributes",
        Annotated[
            str | None,
            _option(
                "--attributes",
                help="Catalog columns kept as attributes, comma-separated ('' keeps none; "
                "default: every unmapped column).",
            ),
        ],
    ),
    (
        "catalog_join",
        Annotated[
            list[Path] | None,
            _option(
                "--catalog-join",
                help="A file whose columns join the catalog's by product id where they are "
                "empty (repeatable), e.g. a descriptions file.",
            ),
        ],
    ),
    (
        "catalog_duplicates",
        Annotated[
            DuplicatesChoice | None,
            _option(
                "--catalog-duplicates",
                help="A repeated product id: error (default), or keep the first row (a "
                "catalog read from a file with one row per judgment).",
            ),
        ],
    ),
]
_JUDGMENTS_FILE = (
    "judgments",
    Annotated[
        Path | None,
        _option(
            "--judgments",
            help="The shop's judgments, CSV or JSONL (default: the sample ESCI judgments).",
        ),
    ],
)
_JUDGMENT_FORMAT = [
    (
        "judgment_field",
        Annotated[
            list[str] | None,
            _option(
                "--judgment-field",
                help="FIELD=COLUMN: the judgments column for a field (repeatable); fields: "
                f"{', '.join(JUDGMENT_SOURCE_NAMES)}. Without query_id, ids come from the "
                "query text.",
            ),
        ],
    ),
    (
        "gains",
        Annotated[
            str | None,
            _option(
                "--gains",
                help="LABEL=GAIN,... for a label column (default: E=1,S=0.1,C=0.01,I=0).",
            ),
        ],
    ),
    (
        "gain_base",
        Annotated[
            float | None,
            _option(
                "--gain-base",
                help="For numeric grades: gain = grade - this (default 0; 1 for 1-3 or 1-4 "
                "scales).",
            ),
        ],
    ),
]


def shop_options(
    *, catalog: bool = True, judgments: bool = True, judgments_file: bool = True
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Add the shop's options to a typer command whose function takes ``shop: ShopFiles``.

    ``catalog``: the catalog options; ``judgments``: the judgment format options, and with
    ``judgments_file`` the ``--judgments`` file itself (``shoprank run`` reads its queries
    and candidates files with the format alone).
    """
    added: list[tuple[str, Any]] = [_MAPPING]
    if catalog:
        added += _CATALOG
    if judgments:
        added += ([_JUDGMENTS_FILE] if judgments_file else []) + _JUDGMENT_FORMAT

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for name, p in signature.parameters.items() if name != "shop"]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
            for name, kind in added
        ]
        names = {name for name, _ in added}

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> R:
            given = {name: kwargs.pop(name) for name in names}
            try:
                shop = _shop_files(given, catalog=catalog, judgments=judgments)
            except InputError as exc:
                typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
                raise typer.Exit(code=2) from exc
            return command(shop=shop, **kwargs)

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + extra
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def _shop_files(given: dict[str, Any], *, catalog: bool, judgments: bool) -> ShopFiles:
    """The ShopFiles the flags describe."""
    tables: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    if given["mapping"] is not None:
        tables = read_mapping_file(given["mapping"])
    shop_catalog = None
    if catalog:
        mapping = catalog_mapping(
            tables[0],
            fields=parse_assignments(given["field"] or [], option="--field"),
            attributes=given["attributes"],
            join=given["catalog_join"] or (),
            duplicates=given["catalog_duplicates"].value if given["catalog_duplicates"] else None,
        )
        if given["catalog"] is not None:
            shop_catalog = CatalogFile(_absolute(given["catalog"]), mapping)
        elif (
            given["field"]
            or given["catalog_join"]
            or _set(given, "attributes", "catalog_duplicates")
        ):
            raise InputError(
                "--field, --attributes, --catalog-join and --catalog-duplicates describe the "
                "--catalog file; add --catalog"
            )
    format_ = judgment_mapping(tables[1])
    shop_judgments = None
    if judgments:
        format_ = judgment_mapping(
            tables[1],
            fields=parse_assignments(given["judgment_field"] or [], option="--judgment-field"),
            gains=parse_gains(given["gains"]) if given["gains"] is not None else None,
            gain_base=given["gain_base"],
        )
        if given.get("judgments") is not None:
            shop_judgments = JudgmentsFile(_absolute(given["judgments"]), format_)
    return ShopFiles(catalog=shop_catalog, judgments=shop_judgments, judgment_mapping=format_)


def _set(given: dict[str, Any], *names: str) -> bool:
    return any(given[name] is not None for name in names)


def _absolute(path: Path) -> Path:
    return path.expanduser().absolute()
