"""Embedding as every embed route does it: admit, check, cut, count tokens, embed through
the bi-encoder's scheduler (:func:`ranker.api.inference.embed`), encode."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence

import numpy as np
from fastapi import Request

from ranker.api.deps import embedder_of
from ranker.api.errors import RequestValidationFailedError
from ranker.api.inference import Embedded, Side, admit, deadline_of, embed, off_loop
from ranker.api.metrics import Metrics
from ranker.api.service import Service, Snapshot
from ranker.api.validation import check_documents, require_text
from ranker.embedder import Embedder
from ranker.settings import Settings


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


def _checked_texts(
    embedder: Embedder,
    settings: Settings,
    texts: Sequence[str],
    *,
    truncate: bool,
    side: Side,
    max_tokens: int | None,
    count_tokens: bool,
    field: str,
) -> tuple[list[str], int]:
    """``texts`` checked and cut (see :func:`embed_texts`), and the tokens the model reads
    (0 unless ``count_tokens``)."""
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
    return checked, tokens


async def embed_texts(
    request: Request,
    *,
    service: Service,
    snapshot: Snapshot,
    settings: Settings,
    metrics: Metrics,
    texts: Sequence[str],
    truncate: bool,
    side: Side = "right",
    normalize: bool = True,
    max_tokens: int | None = None,
    count_tokens: bool = False,
    field: str = "inputs",
) -> Embedded:
    """An embed route's work: admit (429 now, before any work), check ``texts`` (empty, too
    many, too long), cut them, then embed them; the stage times also go to ``metrics``.

    ``truncate``: cut an over-long text from ``side`` (``left`` keeps its end) to what the
    model reads, instead of refusing it with 413. ``max_tokens``: cut every text to that many
    word pieces as well.
    """
    start = time.perf_counter()
    deadline = deadline_of(request.headers)
    embedder = embedder_of(snapshot)
    admit(service.schedulers.get(embedder))
    checked, tokens = await off_loop(
        sum(map(len, texts)),
        _checked_texts,
        embedder,
        settings,
        texts,
        truncate=truncate,
        side=side,
        max_tokens=max_tokens,
        count_tokens=count_tokens,
        field=field,
    )
    timings = {"validate": 1e3 * (time.perf_counter() - start)}
    embedded = await embed(
        embedder,
        checked,
        schedulers=service.schedulers,
        normalize=normalize,
        deadline=deadline,
        metrics=metrics,
    )
    timings.update(embedded.timings_ms)
    metrics.observe_stages(timings)
    return Embedded(embedded.vectors, timings, tokens)


def as_floats(vectors: np.ndarray) -> list[list[float]]:
    """Vectors as JSON number lists."""
    rows: list[list[float]] = vectors.astype(np.float64).tolist()
    return rows


def as_base64(vector: np.ndarray) -> str:
    """One vector as base64 of its little-endian float32 bytes (what the openai SDK decodes)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
