"""Relevance judgments, query and candidate files, and query-level cross-validation splits.

The judgments file has columns ``query_id,query,product_id,esci_label`` (see
``indexer/sample_data/judgments.csv``); ``.csv.gz`` is read as well.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from indexer.fileio import read_csv
from ranker.settings import ESCI_GAINS

logger = logging.getLogger(__name__)

QUERY_ID = "query_id"
QUERY = "query"
PRODUCT_ID = "product_id"
LABEL = "esci_label"
JUDGMENT_COLUMNS = (QUERY_ID, QUERY, PRODUCT_ID, LABEL)


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
    path: str | os.PathLike[str], *, gains: Mapping[str, float] = ESCI_GAINS
) -> Judgments:
    """Read a judgments CSV (``query_id,query,product_id,esci_label``; other columns ignored).

    A label found in ``gains`` takes that gain; otherwise a numeric label is taken as the gain
    itself, so graded data (e.g. Home Depot's 1-3) loads unchanged or can be rescaled by the
    caller. Gains must be finite and non-negative.

    Raises:
        ValueError: a required column is missing, a label is unknown or not a valid gain, an
            id is empty, a (query_id, product_id) pair repeats, or a query_id has two texts.
            Row errors name the file and line.
    """
    path = Path(path)
    _check_gains(gains)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    labels: dict[str, dict[str, str]] = {}
    for line, row in read_csv(path, required=JUDGMENT_COLUMNS):
        where = f"{path}:{line}"
        qid, pid, label = row[QUERY_ID], row[PRODUCT_ID], row[LABEL]
        if not qid or not pid:
            raise ValueError(f"{where}: empty {QUERY_ID} or {PRODUCT_ID}")
        _add_query(queries, qid, row[QUERY], where=where)
        gain = _label_gain(label, gains, where=where)
        judged = qrels.setdefault(qid, {})
        if pid in judged:
            raise ValueError(f"{where}: duplicate judgment for query {qid!r}, product {pid!r}")
        judged[pid] = gain
        labels.setdefault(qid, {})[pid] = label
    judgments = Judgments(queries=queries, qrels=qrels, labels=labels)
    logger.info(
        "loaded %d judgments for %d queries from %s",
        judgments.num_judgments,
        len(queries),
        path,
    )
    return judgments


def load_queries(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a queries CSV (``query_id,query``; other columns ignored) into qid -> text.

    Repeated rows with the same text are fine (a judgments file reads as a queries file).

    Raises:
        ValueError: a column is missing, a query_id is empty, or a query_id has two texts.
    """
    path = Path(path)
    queries: dict[str, str] = {}
    for line, row in read_csv(path, required=(QUERY_ID, QUERY)):
        where = f"{path}:{line}"
        if not row[QUERY_ID]:
            raise ValueError(f"{where}: empty {QUERY_ID}")
        _add_query(queries, row[QUERY_ID], row[QUERY], where=where)
    logger.info("loaded %d queries from %s", len(queries), path)
    return queries


def load_candidates(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read a candidates CSV (``query_id,product_id``; other columns ignored).

    Returns qid -> product ids, both in order of first appearance; repeats are dropped.

    Raises:
        ValueError: a column is missing or an id is empty.
    """
    path = Path(path)
    candidates: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in read_csv(path, required=(QUERY_ID, PRODUCT_ID)):
        qid, pid = row[QUERY_ID], row[PRODUCT_ID]
        if not qid or not pid:
            raise ValueError(f"{path}:{line}: empty {QUERY_ID} or {PRODUCT_ID}")
        if (qid, pid) in seen:
            continue
        seen.add((qid, pid))
        candidates.setdefault(qid, []).append(pid)
    logger.info("loaded %d candidates for %d queries from %s", len(seen), len(candidates), path)
    return candidates


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
        raise ValueError(f"{where}: query {qid!r} has text {text!r}, earlier {known!r}")


def _label_gain(label: str, gains: Mapping[str, float], *, where: str) -> float:
    if label in gains:
        return float(gains[label])
    try:
        gain = float(label)
    except ValueError as exc:
        raise ValueError(
            f"{where}: unknown label {label!r}; expected one of {', '.join(gains)} or a number"
        ) from exc
    if not math.isfinite(gain) or gain < 0:
        raise ValueError(f"{where}: label {label!r} is not a finite, non-negative gain")
    return gain


def _check_gains(gains: Mapping[str, float]) -> None:
    bad = [label for label, gain in gains.items() if not (math.isfinite(gain) and gain >= 0)]
    if bad:
        raise ValueError(f"gains must be finite and non-negative; bad labels: {', '.join(bad)}")


def _preview(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"
