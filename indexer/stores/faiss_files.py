"""The FAISS store's directory: a manifest, the FAISS index, the id map and the filter
columns, written atomically and read back with errors that name the broken file."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from indexer.stores.atomic import atomic_directory
from indexer.stores.base import StoreError
from indexer.stores.faiss_filters import FilterColumns, Vocabulary

# faiss's bundled stubs are incomplete, so it is used untyped here (as in faiss_store).
faiss: Any = _faiss

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.faiss"
ID_MAP_NAME = "ids.json"
FILTERS_NAME = "filters.npz"
METRIC = "inner_product"
REBUILD_HINT = "rebuild it with `shoprank index`"


@dataclass(frozen=True)
class SavedFiles:
    """What :func:`read_files` found: the index, its slots' product ids (None: dead) and the
    filter vocabularies and columns."""

    index: Any
    slot_ids: list[str | None]
    brands: Vocabulary
    categories: Vocabulary
    arrays: dict[str, npt.NDArray[Any]]


def write_files(
    path: Path,
    index: Any,
    manifest: dict[str, Any],
    id_map: dict[str, Any],
    columns: dict[str, npt.NDArray[Any]],
) -> None:
    """Write the index, id map, filter columns and manifest to directory ``path`` atomically."""
    with atomic_directory(path) as temp:
        faiss.write_index(index, str(temp / INDEX_NAME))
        (temp / ID_MAP_NAME).write_text(json.dumps(id_map), encoding="utf-8")
        with (temp / FILTERS_NAME).open("wb") as handle:
            np.savez(
                handle,
                brand_codes=columns["brand_codes"],
                prices=columns["prices"],
                category_codes=columns["category_codes"],
                category_owners=columns["category_owners"],
            )
        (temp / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the index saved at ``path``."""
    manifest_path = Path(path) / MANIFEST_NAME
    if not Path(path).is_dir():
        raise StoreError(f"no FAISS index at {path}: not a directory")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StoreError(f"no FAISS index at {path}: {MANIFEST_NAME} is missing") from exc
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {manifest_path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise StoreError(f"{manifest_path} is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{manifest_path} has format version {manifest.get('format_version')!r}; "
            f"this version reads {FORMAT_VERSION}; {REBUILD_HINT}"
        )
    return manifest


def read_files(path: Path, files: dict[str, str]) -> SavedFiles:
    """Read the index, id map and filter columns the manifest's ``files`` name under ``path``."""
    index_path = path / files["index"]
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError as exc:
        raise StoreError(f"cannot read FAISS index {index_path}: {exc}") from exc
    id_path = path / files["id_map"]
    try:
        id_map = json.loads(id_path.read_text(encoding="utf-8"))
        slot_ids: list[str | None] = list(id_map["slots"])
        if not all(pid is None or isinstance(pid, str) for pid in slot_ids):
            raise ValueError("slots must be product ids or null")
        brands = Vocabulary(str(name) for name in id_map["brands"])
        categories = Vocabulary(str(name) for name in id_map["categories"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"cannot read id map {id_path}: {exc!r}") from exc
    filters_path = path / files["filters"]
    try:
        with np.load(filters_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in FilterColumns().arrays()}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise StoreError(f"cannot read filter metadata {filters_path}: {exc!r}") from exc

    return SavedFiles(
        index=index, slot_ids=slot_ids, brands=brands, categories=categories, arrays=arrays
    )
