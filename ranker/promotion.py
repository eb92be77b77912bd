"""Gated promotion: a candidate serves only when it is as good as production and fast enough.

A candidate passes when both hold:

- its NDCG@10 (``metrics["ndcg@10"]``: cross-validated by query on the shop's judgments) is at
  least production's figure on the *same* judgments minus ``max_ndcg_drop``. Production's
  figure is its own ``ndcg@10`` when it was measured on those judgments
  (``metrics["judgments_sha256"]``), else the one the evaluate step recorded for them
  (``metrics["on_judgments"][sha256]``); unknown, the candidate is refused;
- for a reranker, its rerank-50 p50 latency measured on this machine
  (``metrics["rerank50_p50_ms"]``) is at most ``max_rerank_p50_ms``.

The decision and its reasons are written into the candidate's manifest (``gate``), and
:func:`promote_gated` swaps the production pointer only when it passed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ranker.errors import ShoprankError
from ranker.registry import ModelVersion, Registry
from ranker.settings import RegistrySettings

logger = logging.getLogger(__name__)

NDCG = "ndcg@10"
JUDGMENTS = "judgments_sha256"
ON_JUDGMENTS = "on_judgments"
BASIS = "ndcg_basis"
"""How an NDCG@10 was measured, in words (see :func:`is_cross_validated`)."""
LEGACY_BASIS = "basis"
"""What the evaluate job named ``ndcg_basis`` in ``on_judgments`` entries before."""
LATENCY = "rerank50_p50_ms"


class PromotionRefusedError(ShoprankError):
    """The gate refused a candidate; ``decision`` says why."""

    def __init__(self, message: str, decision: GateDecision) -> None:
        super().__init__(message)
        self.decision = decision

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.decision))


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate may replace production, with every check's reason and figure;
    ``failures`` are the reasons that refused it (a subset of ``reasons``)."""

    candidate: str
    production: str | None
    passed: bool
    reasons: tuple[str, ...]
    figures: Mapping[str, float | None] = field(default_factory=dict)
    checked_at: str = ""
    failures: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for the manifest and task results."""
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        data["failures"] = list(self.failures)
        data["figures"] = dict(self.figures)
        return data


def is_cross_validated(basis: object) -> bool:
    """Whether a recorded NDCG@10's basis (``ndcg_basis``) says it was cross-validated.

    The writers say so in words: "3-fold cross-validation by query, rerank task" (training,
    compression), "cross-validated by query" (seeding), "the teacher's own cross-validated
    figure" (compression recording its teacher's). The evaluate job's in-sample figure says
    "not cross-validated"; a figure with no basis is not cross-validated either.
    """
    if not isinstance(basis, str):
        return False
    text = basis.lower()
    says = "cross-validated" in text or "cross-validation" in text
    return says and "not cross-validated" not in text


def production_figure(
    production: ModelVersion, judgments_sha256: str | None, *, cross_validated: bool = False
) -> float | None:
    """Production's NDCG@10 on the judgments hashed to ``judgments_sha256``, when known.

    ``cross_validated``: only a figure whose basis says so counts (:func:`is_cross_validated`).
    """
    metrics = production.metrics
    if judgments_sha256 is None:
        return None
    recorded = (metrics.get(ON_JUDGMENTS) or {}).get(judgments_sha256) or {}
    found = [(recorded.get(NDCG), recorded.get(BASIS, recorded.get(LEGACY_BASIS)))]
    if metrics.get(JUDGMENTS) == judgments_sha256:
        found.insert(0, (metrics.get(NDCG), metrics.get(BASIS)))
    for value, basis in found:
        if _number(value) is not None and (not cross_validated or is_cross_validated(basis)):
            return _number(value)
    return None


def gate_decision(
    candidate: ModelVersion,
    production: ModelVersion | None,
    budgets: RegistrySettings,
    *,
    blockers: Sequence[str] = (),
) -> GateDecision:
    """Judge ``candidate`` against ``production`` (None: nothing serves yet); each of
    ``blockers`` is a reason it cannot serve, whatever its figures."""
    reasons: list[str] = list(blockers)
    failures: list[str] = list(blockers)

    def check(ok: bool, reason: str) -> None:
        reasons.append(reason)
        if not ok:
            failures.append(reason)

    ndcg = _number(candidate.metrics.get(NDCG))
    judgments = candidate.metrics.get(JUDGMENTS)
    figures: dict[str, float | None] = {"candidate_ndcg@10": ndcg}
    if ndcg is None:
        check(False, "the candidate has no cross-validated NDCG@10 (metrics.ndcg@10)")
    if production is not None and production.version != candidate.version:
        reference = production_figure(production, str(judgments) if judgments else None)
        figures["production_ndcg@10"] = reference
        if reference is None:
            check(
                False,
                f"production {production.ref} has no NDCG@10 on the candidate's judgments; "
                "run the evaluate job first",
            )
        elif ndcg is not None:
            floor = reference - budgets.max_ndcg_drop
            figures["floor_ndcg@10"] = floor
            verdict = "≥" if ndcg >= floor else "<"
            check(
                ndcg >= floor,
                f"NDCG@10 {ndcg:.4f} {verdict} production {reference:.4f} − "
                f"{budgets.max_ndcg_drop} = {floor:.4f}",
            )
    elif ndcg is not None:
        reasons.append(f"NDCG@10 {ndcg:.4f}; no production version to compare with")
    if candidate.role == "reranker":
        latency = _number(candidate.metrics.get(LATENCY))
        figures["rerank50_p50_ms"] = latency
        if latency is None:
            check(
                False,
                "the candidate's rerank-50 latency was not measured (metrics.rerank50_p50_ms)",
            )
        else:
            fast = latency <= budgets.max_rerank_p50_ms
            check(
                fast,
                f"rerank-50 p50 {latency:.1f} ms {'≤' if fast else '>'} budget "
                f"{budgets.max_rerank_p50_ms:.1f} ms",
            )
    return GateDecision(
        candidate=candidate.ref,
        production=production.ref if production is not None else None,
        passed=not failures,
        reasons=tuple(reasons),
        figures=figures,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        failures=tuple(failures),
    )


def promote_gated(
    registry: Registry,
    role: str,
    version: str,
    budgets: RegistrySettings,
    *,
    actor: str = "manual",
    force: bool = False,
    switch: Callable[[], AbstractContextManager[None]] | None = None,
    blockers: Sequence[str] = (),
) -> GateDecision:
    """Judge the candidate, record the decision in its manifest, promote it when it passed.

    ``force`` promotes a refused candidate anyway (recorded as forced). Raises
    PromotionRefusedError, with the decision, when it did not pass and was not forced.
    ``switch``: what must change with the pointer (a bi-encoder's index); the pointer moves
    inside it, and an error there undoes it. ``blockers``: as for :func:`gate_decision`.
    """
    candidate = registry.verify(role, version)
    decision = gate_decision(candidate, registry.production(role), budgets, blockers=blockers)
    registry.update(
        role, version, gate={**decision.as_dict(), "forced": force and not decision.passed}
    )
    if not decision.passed and not force:
        logger.warning("refused %s: %s", candidate.ref, "; ".join(decision.failures))
        raise PromotionRefusedError(
            f"{candidate.ref} not promoted: " + "; ".join(decision.failures), decision
        )
    reason = "forced past the gate" if not decision.passed else "gate passed"
    with switch() if switch is not None else contextlib.nullcontext():
        registry.promote(role, version, actor=actor, reason=reason)
    return decision


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
