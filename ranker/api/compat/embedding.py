"""Embedding as every embed route does it: check, cut, embed, count tokens, encode."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ranker.api.errors import RequestValidationFailedError
from ranker.api.validation import check_documents, require_text
from ranker.embedder import Embedder
from ranker.settings import Settings

Side = Literal["right", "left"]


@dataclass(frozen=True, slots=True)
class Embedded:
    """``(n, dim)`` float32 vectors and the tokens the model read (0 when not counted)."""

    vectors: np.ndarray
    tokens: int = 0


def refuse_token_ids(inputs: object, *, field: str) -> None:
    """422 for token-id inputs (a list of ints, or of int lists): only text is served."""
    if isinstance(inputs, list) and any(isinstance(item, int | list) for item in inputs):
        raise RequestValidationFailedError(
            f"{field}: token-id arrays are not accepted; send text (a string or a list of strings)"
        )


def check_dimensions(embedder: Embedder, dimensions: int | None, *, field: str) -> None:
    """422 unless ``dimensions`` is unset or the model's own: vectors are never shortened."""
    if dimensions is not None and dimensions != embedder.dimension:
        raise RequestValidationFailedError(
            f"{field} {dimensions}: this model answers {embedder.dimension}-dimensional vectors "
            f"only (leave {field} out, or send {embedder.dimension})"
        )


def embed_texts(
    embedder: Embedder,
    settings: Settings,
    texts: Sequence[str],
    *,
    truncate: bool,
    side: Side = "right",
    normalize: bool = True,
    max_tokens: int | None = None,
    count_tokens: bool = False,
    field: str = "inputs",
) -> Embedded:
    """Check ``texts`` (empty, too many, too long), cut them, then embed them.

    ``truncate``: cut an over-long text from ``side`` (``left`` keeps its end) to what the
    model reads, instead of refusing it with 413. ``max_tokens``: cut every text to that many
    word pieces as well.
    """
    stripped = [require_text(text, what=f"{field}[{i}]") for i, text in enumerate(texts)]
    tokenizer = embedder.tokenizer
    checked = check_documents(
        stripped,
        limits=settings.api,
        tokenizer=tokenizer,
        max_tokens=tokenizer.max_length,
        truncate=truncate,
        what=field,
        max_count=settings.api.max_embed_inputs,
    )
    room = tokenizer.max_length - 2  # [CLS] text [SEP]
    cut = room if truncate and side == "left" else None
    if max_tokens is not None:
        cut = max_tokens if cut is None else min(cut, max_tokens)
    if cut is not None:
        checked = [tokenizer.truncate_text(text, cut, side=side) for text in checked]
    tokens = 0
    if count_tokens:
        tokens = sum(min(count, tokenizer.max_length) for count in tokenizer.count_tokens(checked))
    return Embedded(vectors=embedder.embed(checked, normalize=normalize), tokens=tokens)


def as_floats(vectors: np.ndarray) -> list[list[float]]:
    """Vectors as JSON number lists."""
    rows: list[list[float]] = vectors.astype(np.float64).tolist()
    return rows


def as_base64(vector: np.ndarray) -> str:
    """One vector as base64 of its little-endian float32 bytes (what the openai SDK decodes)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
