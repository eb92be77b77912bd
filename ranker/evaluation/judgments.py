"""Relevance judgments, query and candidate files, and query-level cross-validation splits.

The judgments file has columns ``query_id,query,product_id,esci_label`` (see
``indexer/sample_data/judgments.csv``); ``.csv.gz`` and JSONL are read as well, and a
:class:`~ranker.evaluation.judgment_files.JudgmentMapping` reads other shops' columns.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ranker.errors import InputError
from ranker.evaluation.judgment_files import (
    GradeKind,
    JudgmentMapping,
    JudgmentsFile,
    check_gains,
    grade_gain,
    read_mapped,
)
from ranker.settings import ESCI_GAINS

logger = logging.getLogger(__name__)

QUERY_ID = "query_id"
QUERY = "query"
PRODUCT_ID = "product_id"
LABEL = "esci_label"
JUDGMENT_COLUMNS = (QUERY_ID, QUERY, PRODUCT_ID, LABEL)
"""The sample's columns (the default mapping reads them)."""


@dataclass(frozen=True)
class Judgments:
    """Judged queries: their text, their gains per product, and the raw labels."""

    queries: dict[str, str]
    """qid -> query text, in file order."""
    qrels: dict[str, dict[str, float]]
    """qid -> product_id -> gain (every judged product, gain 0 included)."""
    labels: dict[str, dict[str, str]]
    """qid -> product_id -> label as written in the file."""

    @property
    def num_judgments(self) -> int:
        """How many (query, product) pairs are judged."""
        return sum(len(judged) for judged in self.qrels.values())

    def subset(self, qids: Iterable[str]) -> Judgments:
        """The judgments of ``qids`` only, kept in this object's (file) order.

        Raises:
            ValueError: some qids are not judged here (they are named).
            TypeError: ``qids`` is one string rather than a collection of them.
        """
        if isinstance(qids, str):
            raise TypeError("qids must be an iterable of query ids, not one string")
        wanted = set(qids)
        unknown = sorted(wanted - self.queries.keys())
        if unknown:
            raise ValueError(f"unknown query ids: {_preview(unknown)}")
        keep = [qid for qid in self.queries if qid in wanted]
        return Judgments(
            queries={qid: self.queries[qid] for qid in keep},
            qrels={qid: dict(self.qrels[qid]) for qid in keep},
            labels={qid: dict(self.labels[qid]) for qid in keep},
        )


def load_judgments(
    path: str | os.PathLike[str] | JudgmentsFile,
    *,
    gains: Mapping[str, float] = ESCI_GAINS,
    mapping: JudgmentMapping | None = None,
) -> Judgments:
    """Read a judgments file (CSV or JSONL; by default ``query_id,query,product_id,esci_label``,
    other columns ignored); ``mapping`` (or a :class:`JudgmentsFile`'s) names other columns.

    A label found in ``gains`` (the mapping's, if it has some) takes that gain; otherwise a
    numeric label, or a numeric gain column, gives ``value - mapping.gain_base``, so graded
    data (e.g. Home Depot's 1-3 with base 1) loads as it is. Gains must be finite and
    non-negative. ``labels`` keeps a label as written, and a number as its gain.

    Raises:
        InputError: a required column is missing, a label is unknown or not a valid gain, an
            id is empty, a (query_id, product_id) pair repeats, or a query_id has two texts.
            Row errors name the file, line and column.
    """
    source = _with_mapping(path, mapping)
    mapping = source.mapping
    gains = mapping.gains if mapping.gains is not None else gains
    check_gains(gains)
    table = read_mapped(source.path, mapping, required=(QUERY_ID, QUERY, PRODUCT_ID), grade=True)
    kind: GradeKind = "gain" if "gain" in table.columns else "label"
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    labels: dict[str, dict[str, str]] = {}
    for line, row in table.rows:
        where = table.where(line)
        qid, pid, grade = row[QUERY_ID], row[PRODUCT_ID], row[kind]
        _add_query(queries, qid, row[QUERY], where=where)
        gain = grade_gain(
            grade,
            kind=kind,
            gains=gains,
            base=mapping.gain_base,
            where=where,
            column=table.columns[kind],
        )
        judged = qrels.setdefault(qid, {})
        if pid in judged:
            raise InputError(f"{where}: duplicate judgment for query {qid!r}, product {pid!r}")
        judged[pid] = gain
        labels.setdefault(qid, {})[pid] = grade if grade in gains else format(gain, ".6g")
    judgments = Judgments(queries=queries, qrels=qrels, labels=labels)
    logger.info(
        "loaded %d judgments for %d queries from %s",
        judgments.num_judgments,
        len(queries),
        source.describe(),
    )
    return judgments


def load_queries(
    path: str | os.PathLike[str] | JudgmentsFile, *, mapping: JudgmentMapping | None = None
) -> dict[str, str]:
    """Read a queries file (``query_id,query``, or as ``mapping`` says; other columns ignored;
    without a query id column the ids are derived from the text) into qid -> text.

    Repeated rows with the same text are fine (a judgments file reads as a queries file).

    Raises:
        InputError: a column is missing, a query_id is empty, or a query_id has two texts.
    """
    source = _with_mapping(path, mapping)
    table = read_mapped(source.path, source.mapping, required=(QUERY_ID, QUERY))
    queries: dict[str, str] = {}
    for line, row in table.rows:
        _add_query(queries, row[QUERY_ID], row[QUERY], where=table.where(line))
    logger.info("loaded %d queries from %s", len(queries), source.path)
    return queries


def load_candidates(
    path: str | os.PathLike[str] | JudgmentsFile, *, mapping: JudgmentMapping | None = None
) -> dict[str, list[str]]:
    """Read a candidates file (``query_id,product_id``, or as ``mapping`` says; other columns
    ignored; without a query id column the ids are derived from the query text).

    Returns qid -> product ids, both in order of first appearance; repeats are dropped.

    Raises:
        InputError: a column is missing or an id is empty.
    """
    source = _with_mapping(path, mapping)
    table = read_mapped(source.path, source.mapping, required=(QUERY_ID, PRODUCT_ID))
    candidates: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for _, row in table.rows:
        qid, pid = row[QUERY_ID], row[PRODUCT_ID]
        if (qid, pid) in seen:
            continue
        seen.add((qid, pid))
        candidates.setdefault(qid, []).append(pid)
    logger.info(
        "loaded %d candidates for %d queries from %s", len(seen), len(candidates), source.path
    )
    return candidates


def _with_mapping(
    path: str | os.PathLike[str] | JudgmentsFile, mapping: JudgmentMapping | None
) -> JudgmentsFile:
    source = path if isinstance(path, JudgmentsFile) else JudgmentsFile(Path(path))
    return source if mapping is None else JudgmentsFile(source.path, mapping)


def kfold_query_splits(
    qids: Sequence[str], *, folds: int, seed: int
) -> list[tuple[list[str], list[str]]]:
    """Split queries into ``folds`` (train, test) pairs; each qid is in exactly one test fold.

    Assignment depends only on the set of qids and ``seed`` (not on their order): the sorted
    qids are shuffled with ``random.Random(seed)`` and dealt round-robin, so fold sizes differ
    by at most one. Within each list, qids keep the order they were given in.

    Raises:
        ValueError: ``folds`` < 2 or > the number of qids, or a qid repeats.
        TypeError: ``qids`` is one string rather than a sequence of them.
    """
    if isinstance(qids, str):
        raise TypeError("qids must be a sequence of query ids, not one string")
    if len(set(qids)) != len(qids):
        raise ValueError("qids contain duplicates")
    if not 2 <= folds <= len(qids):
        raise ValueError(f"folds must be between 2 and the number of queries ({len(qids)})")
    shuffled = sorted(qids)
    random.Random(seed).shuffle(shuffled)
    fold_of = {qid: index % folds for index, qid in enumerate(shuffled)}
    return [
        (
            [qid for qid in qids if fold_of[qid] != fold],
            [qid for qid in qids if fold_of[qid] == fold],
        )
        for fold in range(folds)
    ]


def _add_query(queries: dict[str, str], qid: str, text: str, *, where: str) -> None:
    known = queries.setdefault(qid, text)
    if known != text:
        raise InputError(f"{where}: query {qid!r} has text {text!r}, earlier {known!r}")


def _preview(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"
