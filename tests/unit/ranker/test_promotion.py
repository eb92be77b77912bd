"""The promotion gate: like-for-like NDCG@10 within the budget, and latency within its budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ranker.promotion import (
    PromotionRefusedError,
    gate_decision,
    is_cross_validated,
    production_figure,
    promote_gated,
)
from ranker.registry import Registry
from ranker.settings import RegistrySettings

BUDGETS = RegistrySettings(max_ndcg_drop=0.01, max_rerank_p50_ms=50.0)


def _version(registry: Registry, tmp_path: Path, **metrics: Any) -> str:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "config.json").write_text("{}")
    return registry.register("reranker", source, metrics=metrics).version


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    production = _version(
        registry, tmp_path, **{"ndcg@10": 0.70, "judgments_sha256": "j1", "rerank50_p50_ms": 30.0}
    )
    registry.promote("reranker", production)
    return registry


def test_a_candidate_within_the_budget_is_promoted(registry: Registry, tmp_path: Path) -> None:
    version = _version(
        registry, tmp_path, **{"ndcg@10": 0.695, "judgments_sha256": "j1", "rerank50_p50_ms": 20.0}
    )
    decision = promote_gated(registry, "reranker", version, BUDGETS, actor="test")
    assert decision.passed
    assert registry.production_version("reranker") == version
    gate = registry.get("reranker", version).manifest["gate"]
    assert gate["passed"] is True
    assert gate["figures"]["production_ndcg@10"] == pytest.approx(0.70)
    assert registry.history("reranker")[-1]["actor"] == "test"


def test_a_worse_candidate_is_refused_with_reasons(registry: Registry, tmp_path: Path) -> None:
    version = _version(
        registry, tmp_path, **{"ndcg@10": 0.60, "judgments_sha256": "j1", "rerank50_p50_ms": 80.0}
    )
    with pytest.raises(PromotionRefusedError) as refused:
        promote_gated(registry, "reranker", version, BUDGETS)
    reasons = refused.value.decision.reasons
    assert any("NDCG@10 0.6000 < production 0.7000" in r for r in reasons)
    assert any("80.0 ms > budget 50.0 ms" in r for r in reasons)
    assert registry.production_version("reranker") == "v1"
    gate = registry.get("reranker", version).manifest["gate"]
    assert gate["passed"] is False
    assert gate["reasons"] == list(reasons)
    assert gate["failures"] == list(reasons)  # both checks failed


def test_only_the_failing_checks_refuse(registry: Registry, tmp_path: Path) -> None:
    version = _version(
        registry, tmp_path, **{"ndcg@10": 0.71, "judgments_sha256": "j1", "rerank50_p50_ms": 80.0}
    )
    with pytest.raises(PromotionRefusedError) as refused:
        promote_gated(registry, "reranker", version, BUDGETS)
    decision = refused.value.decision
    assert len(decision.reasons) == 2
    assert decision.failures == ("rerank-50 p50 80.0 ms > budget 50.0 ms",)
    assert "NDCG@10" not in refused.value.message
    assert "80.0 ms > budget" in refused.value.message


def test_the_cli_prints_the_failing_check_apart_from_the_passing_one(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _version(
        registry, tmp_path, **{"ndcg@10": 0.71, "judgments_sha256": "j1", "rerank50_p50_ms": 150.0}
    )
    result = _promote_cli(tmp_path, monkeypatch, version)
    assert result.exit_code == 1, result.output
    refused, _, passed = result.output.partition("checks that passed:")
    assert f"refused reranker/{version}:" in refused
    assert "150.0 ms > budget 100.0 ms" in refused  # the default budget
    assert "NDCG@10" not in refused
    assert "NDCG@10 0.7100 ≥ production 0.7000" in passed


def test_figures_on_other_judgments_are_not_compared(registry: Registry, tmp_path: Path) -> None:
    version = _version(
        registry, tmp_path, **{"ndcg@10": 0.9, "judgments_sha256": "j2", "rerank50_p50_ms": 10.0}
    )
    candidate = registry.get("reranker", version)
    decision = gate_decision(candidate, registry.production("reranker"), BUDGETS)
    assert not decision.passed
    assert "no NDCG@10 on the candidate's judgments" in decision.reasons[0]
    production = registry.production("reranker")
    assert production is not None
    registry.update(
        "reranker",
        production.version,
        metrics={**production.metrics, "on_judgments": {"j2": {"ndcg@10": 0.88}}},
    )
    decision = gate_decision(candidate, registry.production("reranker"), BUDGETS)
    assert decision.passed
    assert decision.figures["production_ndcg@10"] == pytest.approx(0.88)


def test_missing_figures_refuse(registry: Registry, tmp_path: Path) -> None:
    version = _version(registry, tmp_path)
    decision = gate_decision(registry.get("reranker", version), None, BUDGETS)
    assert not decision.passed
    assert len(decision.reasons) == 2  # no NDCG, no latency


def test_force_promotes_a_refused_candidate_and_says_so(registry: Registry, tmp_path: Path) -> None:
    version = _version(registry, tmp_path, **{"ndcg@10": 0.1, "judgments_sha256": "j1"})
    decision = promote_gated(registry, "reranker", version, BUDGETS, force=True)
    assert not decision.passed
    assert registry.production_version("reranker") == version
    assert registry.get("reranker", version).manifest["gate"]["forced"] is True
    assert registry.history("reranker")[-1]["reason"] == "forced past the gate"


def test_the_refusal_pickles_with_its_decision(registry: Registry, tmp_path: Path) -> None:
    import pickle

    version = _version(registry, tmp_path, **{"ndcg@10": 0.1, "judgments_sha256": "j1"})
    with pytest.raises(PromotionRefusedError) as refused:
        promote_gated(registry, "reranker", version, BUDGETS)
    again = pickle.loads(pickle.dumps(refused.value))
    assert again.decision == refused.value.decision
    assert again.message == refused.value.message


@pytest.mark.parametrize(
    ("basis", "expected"),
    [
        ("5-fold cross-validation by query, rerank task", True),
        ("cross-validated by query (shoprank compress)", True),
        ("the teacher, rerank task: the teacher's own cross-validated figure (its manifest)", True),
        ("scored as it serves (rerank task), not cross-validated", False),
        ("the teacher, rerank task: the teacher on the same queries", False),
        ("dense retrieval over the catalog (exact inner product), judged queries", False),
        (None, False),
    ],
)
def test_only_a_basis_that_says_cross_validation_counts_as_cross_validated(
    basis: str | None, expected: bool
) -> None:
    assert is_cross_validated(basis) is expected


def test_productions_cross_validated_figure_skips_in_sample_ones(
    registry: Registry, tmp_path: Path
) -> None:
    production = registry.production("reranker")
    assert production is not None
    assert production_figure(production, "j1") == pytest.approx(0.70)
    assert production_figure(production, "j1", cross_validated=True) is None  # no basis
    in_sample = {"ndcg@10": 0.74, "basis": "scored as it serves (rerank task), not cross-validated"}
    cross_validated = {"ndcg@10": 0.71, "ndcg_basis": "3-fold cross-validation by query"}
    registry.update(
        "reranker",
        production.version,
        metrics={
            **production.metrics,
            "ndcg_basis": "3-fold cross-validation by query, rerank task",
            "on_judgments": {"j2": in_sample, "j3": cross_validated},
        },
    )
    production = registry.get("reranker", production.version)
    assert production_figure(production, "j1", cross_validated=True) == pytest.approx(0.70)
    assert production_figure(production, "j2") == pytest.approx(0.74)
    assert production_figure(production, "j2", cross_validated=True) is None
    assert production_figure(production, "j3", cross_validated=True) == pytest.approx(0.71)
    assert production_figure(production, None, cross_validated=True) is None


def test_the_cli_says_when_a_promotion_was_forced_past_the_gate(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _version(
        registry, tmp_path, **{"ndcg@10": 0.5, "judgments_sha256": "j1", "rerank50_p50_ms": 20.0}
    )
    result = _promote_cli(tmp_path, monkeypatch, version, "--force")
    assert result.exit_code == 0, result.output
    forced, _, passed = result.output.partition("checks that passed:")
    assert f"promoted reranker/{version} (was reranker/v1), forced past the gate:" in forced
    assert "NDCG@10 0.5000 < production 0.7000" in forced
    assert "rerank-50 p50 20.0 ms ≤ budget 100.0 ms" in passed


def _promote_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """`shoprank models promote reranker ARGS` on the registry under ``tmp_path``."""
    from typer.testing import CliRunner

    from ranker.cli import app
    from ranker.settings import get_settings

    monkeypatch.setenv("SHOPRANK_REGISTRY_DIR", str(tmp_path / "registry"))
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["models", "promote", "reranker", *args])
    finally:
        get_settings.cache_clear()
