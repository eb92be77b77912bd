"""The evaluate job records what the gate compares: latency here, production on the same data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ranker.embedder import Embedder
from ranker.evaluation.candidate import evaluate_candidate
from ranker.loading import build_default_index
from ranker.model_files import weights_sha256
from ranker.promotion import gate_decision
from ranker.registry import Registry
from ranker.settings import EmbedderSettings, RegistrySettings, RerankSettings, Settings


@pytest.mark.slow
def test_evaluate_measures_the_candidate_and_scores_production_on_its_judgments(
    tmp_path: Path, tiny_reranker_dir: Path, tiny_embedder_dir: Path
) -> None:
    settings = Settings(
        home=tmp_path,
        embedder=EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"),
        rerank=RerankSettings(backend="torch"),
    )
    registry = Registry(settings.registry_path)
    production = registry.register("reranker", tiny_reranker_dir)
    registry.promote("reranker", production.version)
    candidate = registry.register(
        "reranker", tiny_reranker_dir, metrics={"ndcg@10": 0.5, "judgments_sha256": "other"}
    )

    result = evaluate_candidate(settings, "reranker", candidate.version, repeats=3)

    judged = result["judgments_sha256"]
    measured = registry.get("reranker", candidate.version).metrics
    assert measured["rerank50_p50_ms"] == pytest.approx(result["rerank50_p50_ms"])
    assert measured["rerank50_p50_ms"] > 0
    assert 0 <= measured["on_judgments"][judged]["ndcg@10"] <= 1
    served = registry.get("reranker", production.version).metrics
    assert served["on_judgments"][judged]["ndcg@10"] == pytest.approx(result["production_ndcg@10"])
    # The same weights scored the same way: the candidate's as-is figure equals production's.
    assert result["candidate_ndcg@10"] == pytest.approx(result["production_ndcg@10"])
    # Its own figure was on other judgments, so the gate still cannot compare like for like.
    decision = gate_decision(
        registry.get("reranker", candidate.version),
        registry.production("reranker"),
        RegistrySettings(max_rerank_p50_ms=10_000),
    )
    assert not decision.passed


@pytest.mark.slow
def test_evaluate_uses_the_bi_encoder_it_is_handed(
    tmp_path: Path,
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ranker import loading

    settings = Settings(
        home=tmp_path,
        embedder=EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"),
        rerank=RerankSettings(backend="torch"),
    )
    registry = Registry(settings.registry_path)
    production = registry.register("reranker", tiny_reranker_dir)
    registry.promote("reranker", production.version)
    candidate = registry.register("reranker", tiny_reranker_dir)
    held = loading.load_embedder(settings)  # what a worker's cache holds
    handed: list[object] = []

    def cached() -> Embedder:
        handed.append(held)
        return held

    def no_load(*args: object, **kwargs: object) -> Embedder:
        raise AssertionError("the bi-encoder was loaded again")

    monkeypatch.setattr(loading, "load_embedder", no_load)
    result = evaluate_candidate(
        settings, "reranker", candidate.version, repeats=1, embedder_loader=cached
    )

    assert handed == [held]
    assert result["rerank50_p50_ms"] > 0


@pytest.mark.slow
def test_evaluate_times_the_prior_reading_indexed_vectors_as_serving_does(
    tmp_path: Path,
    tiny_reranker_dir: Path,
    tiny_embedder_dir: Path,
    tiny_embedder: Embedder,
    subset_catalog_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path,
        embedder=EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"),
        rerank=RerankSettings(backend="torch"),
    )
    build_default_index(settings, subset_catalog_path, embedder=tiny_embedder, progress=False)
    with_prior = tmp_path / "reranker-with-prior"
    shutil.copytree(tiny_reranker_dir, with_prior)
    prior = {
        "kind": "dense-cosine",
        "weight": 3.0,
        "bias": -1.0,
        "embedder": {"model_id": "tiny", "weights_sha256": weights_sha256(tiny_embedder_dir)},
    }
    (with_prior / "shoprank.json").write_text(json.dumps({"prior": prior}))
    registry = Registry(settings.registry_path)
    registry.promote("reranker", registry.register("reranker", with_prior).version)
    candidate = registry.register("reranker", with_prior)

    evaluate_candidate(
        settings, "reranker", candidate.version, catalog=subset_catalog_path, repeats=2
    )

    basis = registry.get("reranker", candidate.version).metrics["latency_basis"]
    assert "reading their vectors" in basis, basis
