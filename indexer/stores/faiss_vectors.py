"""Vectors in and out of a FAISS index: validate and L2-normalize rows, read stored vectors
back, and search one query row (FAISS's own search, or exact over allowed slots)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faiss as _faiss
import numpy as np
import numpy.typing as npt

from indexer.stores.base import FloatMatrix, ModelIdentity, StoreError
from indexer.stores.faiss_filters import BoolArray, IdArray

# faiss's bundled stubs are incomplete (no SearchParametersHNSW, not the one-argument
# IDSelectorBitmap the Python wrapper adds), so it is used untyped here.
faiss: Any = _faiss

RECONSTRUCT_CHUNK = 16_384
NORMALIZE_CHUNK = 8_192

ScoreArray = npt.NDArray[np.float32]


def unit_rows(
    vectors: Any, rows: int, identity: ModelIdentity, name: Callable[[int], str]
) -> FloatMatrix:
    """Check shape and values against ``identity``'s dimension, then L2-normalize into a new
    float32 matrix; ``name(row)`` says whose vector a bad row is.

    Works in chunks of rows, so a large build needs little memory beyond its output.
    """
    dim = identity.dimension
    try:
        matrix = np.asarray(vectors)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"vectors are not a numeric array: {exc}") from exc
    if matrix.dtype.kind not in "fiu":
        raise StoreError(f"vectors must be real numbers, got dtype {matrix.dtype}")
    if matrix.ndim != 2 or matrix.shape[0] != rows:
        raise StoreError(f"expected vectors of shape ({rows}, {dim}), got {matrix.shape}")
    if matrix.shape[1] != dim:
        raise StoreError(
            f"vectors have dimension {matrix.shape[1]}, but this index "
            f"(model {identity.model_id!r}) expects dimension {dim}"
        )
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, NORMALIZE_CHUNK):
        part = matrix[start : start + NORMALIZE_CHUNK].astype(np.float64)
        finite = np.isfinite(part).all(axis=1)
        if not finite.all():
            bad = start + int(np.argmin(finite))
            raise StoreError(f"vector for {name(bad)} has non-finite values (NaN or inf)")
        norms = np.linalg.norm(part, axis=1)
        usable = (norms > 0) & np.isfinite(norms)
        if not usable.all():
            bad = start + int(np.argmin(usable))
            raise StoreError(
                f"vector for {name(bad)} has norm {norms[bad - start]} and cannot be normalized"
            )
        out[start : start + len(part)] = part / norms[:, None]
    return out


def stored_vectors(index: Any, slots: IdArray, dimension: int) -> FloatMatrix:
    """The vectors ``index`` holds at ``slots``, shape ``(len(slots), dimension)``, read in
    chunks."""
    out = np.empty((len(slots), dimension), dtype=np.float32)
    for start in range(0, len(slots), RECONSTRUCT_CHUNK):
        part = slots[start : start + RECONSTRUCT_CHUNK]
        out[start : start + len(part)] = index.reconstruct_batch(part)
    return out


def index_search(
    index: Any, query: FloatMatrix, wanted: int, mask: BoolArray | None, *, hnsw_ef: int | None
) -> tuple[IdArray, ScoreArray]:
    """FAISS's own search of ``index`` for one query row: ``(slots, scores)``, best first, -1
    slots where it found fewer than ``wanted``. ``mask``: the allowed slots (None: all);
    ``hnsw_ef``: the HNSW search depth, None for a Flat index."""
    bitmap = None if mask is None else np.packbits(mask, bitorder="little")
    selector = None if bitmap is None else faiss.IDSelectorBitmap(bitmap)
    params: Any
    if hnsw_ef is not None:
        params = faiss.SearchParametersHNSW()
        params.efSearch = hnsw_ef
        if selector is not None:
            params.sel = selector
    else:
        params = None if selector is None else faiss.SearchParameters(sel=selector)
    scores, slots = index.search(query, wanted, params=params)
    return slots[0], scores[0]


def exact_search(
    index: Any, allowed: IdArray, query: FloatMatrix, wanted: int
) -> tuple[IdArray, ScoreArray]:
    """Exact search over the ``allowed`` slots' vectors (reconstructed in chunks) for one query
    row: the best ``wanted`` ``(slots, scores)``, best first, ties by slot."""
    best_slots = np.empty(0, dtype=np.int64)
    best_scores = np.empty(0, dtype=np.float32)
    for start in range(0, len(allowed), RECONSTRUCT_CHUNK):
        part = allowed[start : start + RECONSTRUCT_CHUNK]
        scores = index.reconstruct_batch(part) @ query[0]
        best_slots = np.concatenate([best_slots, part])
        best_scores = np.concatenate([best_scores, scores.astype(np.float32)])
        if len(best_slots) > wanted:
            top = np.argpartition(-best_scores, wanted - 1)[:wanted]
            best_slots, best_scores = best_slots[top], best_scores[top]
    order = np.lexsort((best_slots, -best_scores))
    return best_slots[order], best_scores[order]
