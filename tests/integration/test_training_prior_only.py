"""`shoprank train --prior-only`: the reranker's prior fitted alone, saved and registered as
a prior-only reranker that runs no transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from ranker.backends.no_cross_encoder import NoCrossEncoder
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.model_files import read_manifest
from ranker.reranker import Reranker
from ranker.serving_models import open_registry
from ranker.settings import RerankSettings, Settings
from ranker.training.artifacts import save_cross_encoder
from ranker.training.common import TrainingResult, split_validation
from ranker.training.cross_encoder import CrossEncoderConfig, train_cross_encoder
from ranker.training.cross_validation import fold_reranker
from ranker.training.jobs import train_reranker_job
from ranker.training.reranker_pairs import PairCosines, dense_priors, fit_prior, labelled_pairs

QUERIES = 12


@pytest.fixture(scope="module")
def shop(
    sample_judgments: Judgments, sample_products: list[Product]
) -> tuple[Judgments, dict[str, str]]:
    judgments = sample_judgments.subset(list(sample_judgments.queries)[:QUERIES])
    template = TextTemplate(Settings().index.text_template)
    judged = {pid for qrels in judgments.qrels.values() for pid in qrels}
    texts = {p.id: template.render(p) for p in sample_products if p.id in judged}
    return judgments, texts


def _identity(embedder: Embedder) -> dict[str, Any]:
    return {
        "model_id": embedder.identity.model_id,
        "weights_sha256": embedder.identity.weights_sha256,
        "dimension": embedder.identity.dimension,
    }


def _save(
    result: TrainingResult, path: Path, config: CrossEncoderConfig, embedder: Embedder
) -> Path:
    """The trained prior saved as training saves it, under a made-up data digest."""
    return save_cross_encoder(
        result,
        path,
        config=config,
        data_sha256="d" * 64,
        metrics={"validation_ndcg@10": result.best_validation_ndcg},
        prior_embedder=_identity(embedder),
    )


def test_the_prior_alone_is_fitted_saved_and_served_without_a_transformer(
    shop: tuple[Judgments, dict[str, str]],
    tiny_embedder: Embedder,
    tiny_reranker_dir: Path,
    tmp_path: Path,
) -> None:
    judgments, texts = shop
    config = CrossEncoderConfig(base_model=str(tiny_reranker_dir), cross_encoder=False)
    priors = dense_priors(tiny_embedder, judgments, texts)

    result = train_cross_encoder(judgments, texts, config, priors=priors, progress=False)

    assert result.model is None
    assert result.kept_step == 0
    fit_qids, validation_qids = split_validation(
        list(judgments.queries), config.validation_fraction, config.seed
    )
    assert (result.train_queries, result.validation_queries) == (fit_qids, validation_qids)
    pairs = labelled_pairs(judgments, fit_qids, texts, config.targets, priors, lexical=True)
    weight, lexical, bias, _ = fit_prior(pairs, config.prior_l2)
    assert result.prior is not None
    assert result.prior["weight"] == pytest.approx(weight, rel=1e-5)
    assert result.prior["bias"] == pytest.approx(bias, rel=1e-5)
    assert list(result.prior["lexical_weights"].values()) == pytest.approx(lexical, rel=1e-5)

    identity = _identity(tiny_embedder)
    saved = _save(result, tmp_path / "prior-only", config, tiny_embedder)
    manifest = read_manifest(saved)
    assert manifest is not None
    assert manifest["cross_encoder"] is False
    assert manifest["kind"] == "reranker-prior-only"
    assert manifest["data_sha256"] == "d" * 64
    assert manifest["prior"]["embedder"] == identity
    assert not list(saved.glob("*.safetensors"))

    reranker = Reranker.load(saved, embedder=tiny_embedder)
    assert not reranker.has_cross_encoder
    qid = next(iter(judgments.queries))
    query, documents = judgments.queries[qid], [texts[p] for p in judgments.qrels[qid]]
    vectors = tiny_embedder.embed([query, *documents])
    weights = np.array([result.prior["lexical_weights"][name] for name in LEXICAL_FEATURES])
    expected = (
        result.prior["weight"] * (vectors[1:] @ vectors[0])
        + lexical_features(query, documents) @ weights
        + result.prior["bias"]
    )
    np.testing.assert_allclose(reranker.score(query, documents), expected, atol=1e-4)
    assert isinstance(fold_reranker(result, config, tiny_embedder).backend, NoCrossEncoder)


def test_a_prior_with_the_title_cosine_is_fitted_saved_and_served(
    shop: tuple[Judgments, dict[str, str]],
    tiny_embedder: Embedder,
    tiny_reranker_dir: Path,
    tmp_path: Path,
) -> None:
    judgments, texts = shop
    config = CrossEncoderConfig(
        base_model=str(tiny_reranker_dir), cross_encoder=False, title_cosine=True
    )
    priors = dense_priors(tiny_embedder, judgments, texts, titles=True)
    assert isinstance(priors, PairCosines)
    assert priors.titles is not None
    qid = next(iter(judgments.queries))
    pid = next(iter(judgments.qrels[qid]))
    title, query = texts[pid].partition("\n")[0], judgments.queries[qid]
    query_vector, title_vector = tiny_embedder.embed([query, title])
    assert priors.titles[(qid, pid)] == pytest.approx(float(title_vector @ query_vector), abs=1e-5)

    result = train_cross_encoder(judgments, texts, config, priors=priors, progress=False)

    assert result.prior is not None
    assert "title_weight" in result.prior
    saved = _save(result, tmp_path / "prior-only-title", config, tiny_embedder)
    assert read_manifest(saved)["prior"]["title_weight"] == result.prior["title_weight"]  # type: ignore[index]
    reranker = Reranker.load(saved, embedder=tiny_embedder)
    documents = [texts[p] for p in judgments.qrels[qid]]
    titles = [document.partition("\n")[0] for document in documents]
    vectors = tiny_embedder.embed([query, *documents])
    title_vectors = tiny_embedder.embed(titles)
    weights = np.array([result.prior["lexical_weights"][name] for name in LEXICAL_FEATURES])
    expected = (
        result.prior["weight"] * (vectors[1:] @ vectors[0])
        + result.prior["title_weight"] * (title_vectors @ vectors[0])
        + lexical_features(query, documents) @ weights
        + result.prior["bias"]
    )
    np.testing.assert_allclose(reranker.score(query, documents), expected, atol=1e-4)


def test_the_title_cosine_needs_the_fitted_prior_and_the_title_cosines(
    shop: tuple[Judgments, dict[str, str]], tiny_embedder: Embedder, tiny_reranker_dir: Path
) -> None:
    judgments, texts = shop
    with pytest.raises(ValueError, match="title_cosine needs"):
        CrossEncoderConfig(
            base_model=str(tiny_reranker_dir), title_cosine=True, lexical_prior=False
        )
    config = CrossEncoderConfig(
        base_model=str(tiny_reranker_dir), cross_encoder=False, title_cosine=True
    )
    without_titles = dense_priors(tiny_embedder, judgments, texts)
    with pytest.raises(ValueError, match="title cosines"):
        train_cross_encoder(judgments, texts, config, priors=without_titles, progress=False)


def test_a_reranker_without_its_cross_encoder_needs_the_prior(
    shop: tuple[Judgments, dict[str, str]], tiny_reranker_dir: Path
) -> None:
    judgments, texts = shop
    config = CrossEncoderConfig(
        base_model=str(tiny_reranker_dir), cross_encoder=False, prior="none"
    )
    with pytest.raises(ValueError, match="needs prior='dense'"):
        train_cross_encoder(judgments, texts, config, progress=False)


@pytest.mark.slow
def test_the_training_job_registers_a_prior_only_candidate(
    tmp_path: Path, tiny_reranker_dir: Path, tiny_embedder_dir: Path
) -> None:
    settings = Settings(
        home=tmp_path,
        embedder={"model": str(tiny_embedder_dir), "backend": "torch"},  # type: ignore[arg-type]
        rerank=RerankSettings(backend="torch"),
    )
    _, summary = train_reranker_job(
        settings, overrides={"base_model": str(tiny_reranker_dir), "cross_encoder": False}
    )
    version = open_registry(settings).get("reranker", summary["version"])
    assert read_manifest(version.path)["cross_encoder"] is False  # type: ignore[index]
    assert summary["cross_encoder_over_prior"] is None
    assert set(summary["prior"]["lexical_weights"]) == set(LEXICAL_FEATURES)
    assert version.lineage["recipe"]["cross_encoder"] is False
