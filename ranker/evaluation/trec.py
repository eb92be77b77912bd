"""TREC run files: ``qid Q0 docid rank score tag``, one line per retrieved document."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from indexer.fileio import open_text
from indexer.stores.atomic import atomic_write_text
from ranker.evaluation.metrics import Run, ranked_ids

logger = logging.getLogger(__name__)


def write_trec_run(
    run: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike[str],
    *,
    tag: str,
    depth: int | None = None,
) -> None:
    """Write ``run`` as a TREC run file, atomically (temp file beside it, then ``os.replace``).

    Queries come in the run's order; each query's docs by score descending, then doc id
    ascending, ranked from 1 and cut at ``depth`` if given. Scores are written with
    ``repr(float)``, which reads back exactly, so the file adds no ties of its own; the rank
    column is the order of record. Queries with no docs write no lines.

    Raises:
        ValueError: ``tag``, a qid or a doc id is empty or contains whitespace; ``depth`` < 1;
            a score is NaN. Nothing is written then.
    """
    _check_token(tag, "tag")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1 or None, got {depth}")
    rankings: list[tuple[str, list[str], Mapping[str, float]]] = []
    for qid, scores in run.items():
        _check_token(qid, "qid")
        for doc_id in scores:
            _check_token(doc_id, f"doc id (query {qid!r})")
        order = ranked_ids(scores)
        rankings.append((qid, order if depth is None else order[:depth], scores))

    text = "".join(
        f"{qid} Q0 {doc_id} {rank} {float(scores[doc_id])!r} {tag}\n"
        for qid, order, scores in rankings
        for rank, doc_id in enumerate(order, start=1)
    )
    atomic_write_text(Path(path), text)
    logger.info(
        "wrote %d lines for %d queries to %s",
        sum(len(order) for _, order, _ in rankings),
        len(rankings),
        path,
    )


def read_trec_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run file (``.gz`` too) into ``{qid: {doc_id: score}}``.

    Queries and docs keep file order; the Q0 and tag columns are not checked, and the rank
    column is checked to be an integer but the scores define the order.

    Raises:
        ValueError: a line has other than six fields, a bad rank or score, or repeats a
            (qid, doc id) pair; the message names the line.
    """
    path = Path(path)
    run: Run = {}
    with open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{line_number}"
            if len(fields) != 6:
                raise ValueError(f"{where}: expected 6 fields (qid Q0 docid rank score tag)")
            qid, _, doc_id, rank, score, _ = fields
            try:
                int(rank)
                value = float(score)
            except ValueError as exc:
                raise ValueError(f"{where}: bad rank {rank!r} or score {score!r}") from exc
            scores = run.setdefault(qid, {})
            if doc_id in scores:
                raise ValueError(f"{where}: doc {doc_id!r} repeats for query {qid!r}")
            scores[doc_id] = value
    logger.info("read run of %d queries from %s", len(run), path)
    return run


def _check_token(value: str, what: str) -> None:
    if not value or any(char.isspace() for char in value):
        raise ValueError(f"{what} must be non-empty with no whitespace, got {value!r}")
