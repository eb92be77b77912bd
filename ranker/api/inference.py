"""A request's model work, kept off the event loop: the encoder's ``prepare`` stage (in a
worker thread, unless the texts are short), its ``infer`` stage through the model's scheduler
(with batching off, in a worker thread), then ``finish``. :func:`score_documents` is every
rerank route's work, admission and validation included.

Every helper returns its per-stage milliseconds: ``tokenize``, ``queue`` (waiting for the
model's thread), ``infer`` (the batch's inference, shared with the requests in it) and, for
the reranker, ``prior`` (the dense prior and lexical features). A request may carry a
deadline, the header ``x-request-timeout-ms`` (milliseconds from when its route starts):
past it, a request still queued is dropped and answered 504 ``deadline_exceeded``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ranker.api.deps import reranker_of
from ranker.api.errors import RequestValidationFailedError
from ranker.api.metrics import Metrics
from ranker.api.schedulers import ModelSchedulers
from ranker.api.validation import check_documents, check_query
from ranker.backends.base import FloatArray
from ranker.batching import DeadlineExceededError, Infer, Scheduler, inference_failed
from ranker.embedder import Embedder
from ranker.reranker import Reranker
from ranker.settings import Settings
from ranker.stages import PreparedTokens

if TYPE_CHECKING:
    from ranker.api.service import Service, Snapshot

Side = Literal["right", "left"]
T = TypeVar("T")

logger = logging.getLogger(__name__)

DEADLINE_HEADER = "x-request-timeout-ms"
INLINE_CHARS = 512
"""Texts at most this long in all are checked and tokenized on the event loop: a thread hop
costs more."""


def deadline_of(headers: Mapping[str, str]) -> float | None:
    """The request's deadline (a ``time.monotonic()`` value) from its
    ``x-request-timeout-ms`` header, counted from now; None without the header."""
    raw = headers.get(DEADLINE_HEADER)
    if raw is None:
        return None
    try:
        milliseconds = float(raw)
    except ValueError as exc:
        raise RequestValidationFailedError(
            f"{DEADLINE_HEADER} must be a number of milliseconds, got {raw!r}"
        ) from exc
    if not math.isfinite(milliseconds) or milliseconds <= 0:
        raise RequestValidationFailedError(f"{DEADLINE_HEADER} must be above 0, got {raw!r}")
    return time.monotonic() + milliseconds / 1e3


def admit(*schedulers: Scheduler | None) -> None:
    """Refuse now, before any work is done or queued, when a model cannot take more (429
    with ``Retry-After``, through the error table)."""
    for scheduler in schedulers:
        if scheduler is not None:
            scheduler.admit()


def _ms(since: float) -> float:
    return 1e3 * (time.perf_counter() - since)


async def off_loop(chars: int, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` on texts of ``chars`` characters in all: on the event
    loop up to :data:`INLINE_CHARS`, else in a worker thread."""
    if chars <= INLINE_CHARS:
        return function(*args, **kwargs)
    return await run_in_threadpool(function, *args, **kwargs)


async def _infer(
    infer: Infer,
    scheduler: Scheduler | None,
    prepared: PreparedTokens,
    *,
    role: str,
    deadline: float | None,
    metrics: Metrics | None,
) -> tuple[FloatArray, dict[str, float]]:
    """The ``infer`` stage for one request: its output, and its queue and infer times."""
    if scheduler is not None:
        inferred = await scheduler.submit(prepared, deadline=deadline)
        if metrics is not None:
            metrics.observe_batch(
                role,
                requests=inferred.batch_requests,
                padded_tokens=inferred.batch_padded_tokens,
                queued_tokens=scheduler.queued_tokens,
            )
        return inferred.output, {"queue": inferred.queue_ms, "infer": inferred.infer_ms}
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceededError(f"the deadline passed before the {role} ran the request")
    start = time.perf_counter()
    try:
        (output,) = await run_in_threadpool(infer, [prepared])
    except Exception as exc:  # as a failed batch answers (424), batching or not
        logger.exception("the %s failed on a request", role)
        raise inference_failed(f"the {role}", exc) from exc
    return output, {"queue": 0.0, "infer": _ms(start)}


@dataclass(frozen=True, slots=True)
class Embedded:
    """One request's vectors, its stage times and the tokens the model read (when counted)."""

    vectors: FloatArray
    timings_ms: dict[str, float]
    tokens: int = 0


async def embed(
    embedder: Embedder,
    texts: Sequence[str],
    *,
    schedulers: ModelSchedulers,
    normalize: bool = True,
    deadline: float | None = None,
    metrics: Metrics | None = None,
) -> Embedded:
    """``texts`` embedded through the bi-encoder's scheduler."""
    start = time.perf_counter()
    prepared = await off_loop(sum(map(len, texts)), embedder.prepare, texts)
    timings = {"tokenize": _ms(start)}
    output, stages = await _infer(
        embedder.infer,
        schedulers.get(embedder),
        prepared,
        role="embedder",
        deadline=deadline,
        metrics=metrics,
    )
    timings.update(stages)
    return Embedded(embedder.finish(output, normalize=normalize), timings)


async def embed_query(
    embedder: Embedder,
    query: str,
    *,
    schedulers: ModelSchedulers,
    deadline: float | None = None,
    metrics: Metrics | None = None,
) -> Embedded:
    """``query``'s unit vector (shape ``(1, dim)``): from the bi-encoder's query cache, else
    embedded through its scheduler and kept there (the timings then say ``cached``: 0)."""
    start = time.perf_counter()
    cached = embedder.query_cache.get(query)
    if cached is not None:
        return Embedded(cached[None, :], {"cached": _ms(start)})
    embedded = await embed(
        embedder, [query], schedulers=schedulers, deadline=deadline, metrics=metrics
    )
    kept = embedder.keep_query_vector(query, embedded.vectors[0])
    return Embedded(kept[None, :], embedded.timings_ms, embedded.tokens)


@dataclass(frozen=True, slots=True)
class Reranked:
    """One request's scores (the cross-encoder's logits plus the prior) and stage times."""

    logits: FloatArray
    timings_ms: dict[str, float]


async def rerank(
    reranker: Reranker,
    query: str,
    documents: Sequence[str],
    *,
    schedulers: ModelSchedulers,
    embedder: Embedder | None = None,
    document_vectors: FloatArray | None = None,
    query_vector: FloatArray | None = None,
    deadline: float | None = None,
    metrics: Metrics | None = None,
) -> Reranked:
    """``documents`` scored against ``query`` through the reranker's scheduler (a
    prior-only reranker has no scheduler stage: its prior is the whole score).

    A dense prior on ``embedder`` gets the query's vector (see :func:`embed_query`) while
    the cross-encoder runs, unless ``query_vector`` is given.
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    if reranker.has_cross_encoder:
        prepared = await off_loop(
            len(query) * len(documents) + sum(map(len, documents)),
            reranker.prepare,
            query,
            documents,
            document_vectors=document_vectors,
        )
        timings["tokenize"] = _ms(start)
        scoring = _infer(
            reranker.infer,
            schedulers.get(reranker),
            prepared.tokens,
            role="reranker",
            deadline=deadline,
            metrics=metrics,
        )
    else:  # a prior-only reranker: nothing to tokenize or infer
        prepared = reranker.prepare(query, documents, document_vectors=document_vectors)
        scoring = _no_cross_encoder()
    prior = reranker.prior
    if (
        query_vector is None
        and prior is not None
        and embedder is not None
        and prepared.documents
        and not prepared.query_cut
        and prior.reads_vectors_of(embedder)
    ):
        embedding = embed_query(
            embedder, query, schedulers=schedulers, deadline=deadline, metrics=metrics
        )
        (logits, stages), embedded = await asyncio.gather(scoring, embedding)
        query_vector = embedded.vectors[0]
        timings["embed_query"] = sum(embedded.timings_ms.values())
    else:
        logits, stages = await scoring
    timings.update(stages)
    start = time.perf_counter()
    if prior is None:
        cross_encoder, prior_terms = reranker.finish(prepared, logits)
    else:
        cross_encoder, prior_terms = await run_in_threadpool(
            reranker.finish, prepared, logits, query_vector=query_vector
        )
    timings["prior"] = _ms(start)
    return Reranked(cross_encoder + prior_terms, timings)


async def _no_cross_encoder() -> tuple[FloatArray, dict[str, float]]:
    """A prior-only reranker's ``infer`` stage: no logits, no time."""
    return np.zeros(0, dtype=np.float32), {}


@dataclass(frozen=True, slots=True)
class Scored:
    """Logits in the documents' order, stage times, and the tokens read (when counted)."""

    logits: FloatArray
    timings_ms: dict[str, float]
    tokens: int = 0


def _checked_pairs(
    reranker: Reranker,
    settings: Settings,
    *,
    query: str,
    documents: Sequence[str],
    truncate: bool,
    field: str,
    side: Side,
    max_document_tokens: int | None,
    count_tokens: bool,
) -> tuple[str, list[str], int]:
    """The query and documents checked against the limits and cut (see
    :func:`score_documents`), and the tokens the model reads (0 unless ``count_tokens``)."""
    tokenizer = reranker.tokenizer
    query = check_query(query, limits=settings.api, tokenizer=tokenizer, truncate=truncate)
    query_tokens = tokenizer.count_tokens([query])[0] - 2
    # A pair is [CLS] query [SEP] document [SEP]; counts include [CLS] and [SEP].
    room = tokenizer.max_length - query_tokens - 3
    checked = check_documents(
        documents,
        limits=settings.api,
        tokenizer=tokenizer,
        max_tokens=room + 2,
        truncate=truncate,
        what=field,
    )
    cut = room if truncate and side == "left" else None
    if max_document_tokens is not None:
        cut = max_document_tokens if cut is None else min(cut, max_document_tokens)
    if cut is not None:
        checked = [tokenizer.truncate_text(text, cut, side=side) for text in checked]
    tokens = 0
    if count_tokens:
        counts = tokenizer.count_tokens(checked)
        tokens = sum(min(count - 2, room) + query_tokens + 3 for count in counts)
    return query, checked, tokens


async def score_documents(
    request: Request,
    *,
    service: Service,
    snapshot: Snapshot,
    settings: Settings,
    metrics: Metrics,
    query: str,
    documents: Sequence[str],
    truncate: bool,
    field: str,
    side: Side = "right",
    max_document_tokens: int | None = None,
    count_tokens: bool = False,
) -> Scored:
    """A rerank route's work: admit (429 now, before any work), validate, then
    :func:`rerank` with the snapshot's models; the stage times also go to ``metrics``.

    ``truncate``: cut over-long inputs (from ``side``) instead of refusing them with 413.
    ``max_document_tokens``: also cut each document to that many word pieces.
    ``count_tokens``: count the tokens the model reads (for usage fields).
    """
    start = time.perf_counter()
    deadline = deadline_of(request.headers)
    reranker = reranker_of(snapshot)
    admit(service.schedulers.get(reranker))
    query, checked, tokens = await off_loop(
        len(query) + sum(map(len, documents)),
        _checked_pairs,
        reranker,
        settings,
        query=query,
        documents=documents,
        truncate=truncate,
        field=field,
        side=side,
        max_document_tokens=max_document_tokens,
        count_tokens=count_tokens,
    )
    validated = time.perf_counter()
    scored = await rerank(
        reranker,
        query,
        checked,
        schedulers=service.schedulers,
        embedder=snapshot.embedder,
        deadline=deadline,
        metrics=metrics,
    )
    timings = {"validate": 1e3 * (validated - start), **scored.timings_ms}
    timings["rerank"] = _ms(validated)
    metrics.observe_stages(timings)
    return Scored(scored.logits, timings, tokens)
