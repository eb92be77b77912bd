"""One query's judgments, found by its text, and the NDCG of rankings against them.

The workbench (``POST /judgments``) looks a typed query up here. Texts match with case and
surrounding or repeated spaces ignored (:func:`query_key`). NDCG is
:func:`ranker.evaluation.metrics.ndcg_at_k`, the project's one formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import ndcg_at_k


def query_key(text: str) -> str:
    """What two query texts that mean the same typed query share: casefolded, spaces
    collapsed."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class QueryJudgment:
    """A judged query: its id and text, each judged product's gain and label."""

    query_id: str
    query: str
    gains: dict[str, float]
    labels: dict[str, str]

    def ndcg(self, ranked: Sequence[str], *, k: int) -> float:
        """NDCG at ``k`` of ``ranked`` (product ids, best first) against these gains.

        Raises:
            ValueError: ``k`` < 1, or a product id repeats within the top ``k``.
        """
        return ndcg_at_k(ranked, self.gains, k=k)


class JudgmentLookup:
    """Judged queries by their text; the first query id wins when two share a text."""

    def __init__(self, judgments: Judgments) -> None:
        self._judgments = judgments
        self._by_key: dict[str, str] = {}
        for qid, text in judgments.queries.items():
            self._by_key.setdefault(query_key(text), qid)

    def __len__(self) -> int:
        return len(self._judgments.queries)

    def find(self, query: str) -> QueryJudgment | None:
        """The judgments of ``query`` (matched by :func:`query_key`); None when unjudged."""
        qid = self._by_key.get(query_key(query))
        if qid is None:
            return None
        return QueryJudgment(
            query_id=qid,
            query=self._judgments.queries[qid],
            gains=dict(self._judgments.qrels[qid]),
            labels=dict(self._judgments.labels[qid]),
        )
