"""A cross-validated bi-encoder reaches the promotion gate with both arms' figures."""

from __future__ import annotations

from pathlib import Path

from ranker.promotion import gate_decision
from ranker.registry import Registry
from ranker.settings import RegistrySettings
from ranker.training.bi_encoder_cv import gate_metrics, record_base_figure

CV = {
    "folds": 3,
    "task": "rerank",
    "zero_shot": {"ndcg@10": 0.8900, "interval": [0.87, 0.91]},
    "fine_tuned": {"ndcg@10": 0.9050, "interval": [0.89, 0.92]},
}
SHA = "ab" * 32


def _model(directory: Path, payload: bytes) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    (directory / "model.safetensors").write_bytes(payload)
    return directory


def test_the_gate_compares_the_two_arms_when_production_is_the_base_model(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry")
    base = _model(tmp_path / "base", b"base weights")
    production = registry.register("embedder", base)
    registry.promote("embedder", production.version)
    candidate = registry.register(
        "embedder", _model(tmp_path / "tuned", b"tuned"), metrics=gate_metrics(CV, SHA)
    )

    assert record_base_figure(registry, base, CV, SHA) == production.ref
    assert record_base_figure(registry, base, CV, SHA) is None  # it has a figure now

    decision = gate_decision(
        candidate, registry.production("embedder"), RegistrySettings(max_ndcg_drop=0.0)
    )
    assert decision.figures["candidate_ndcg@10"] == 0.9050
    assert decision.figures["production_ndcg@10"] == 0.8900
    assert decision.passed, decision.reasons


def test_a_production_model_the_folds_did_not_start_from_gets_no_figure(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry")
    other = registry.register("embedder", _model(tmp_path / "other", b"an earlier fine-tune"))
    registry.promote("embedder", other.version)

    assert record_base_figure(registry, _model(tmp_path / "base", b"base"), CV, SHA) is None
    assert registry.production("embedder").metrics == {}  # type: ignore[union-attr]
