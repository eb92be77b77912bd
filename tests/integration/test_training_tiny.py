"""Train a tiny cross-encoder for a few dozen steps, save it, and load it for serving.

The tiny reranker has random weights, so these tests check the mechanics (the loss falls,
the manifest is complete, the saved model scores like the one in memory, a dense-prior
model refuses the wrong bi-encoder), not ranking quality.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.catalog import Product, TextTemplate
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import ndcg_at_k, ranked_ids
from ranker.lexical_features import LEXICAL_FEATURES, lexical_features
from ranker.model_files import MANIFEST_NAME, weights_sha256
from ranker.reranker import Reranker, RerankerError
from ranker.settings import Settings
from ranker.training.artifacts import data_sha256, save_cross_encoder
from ranker.training.common import TrainingResult
from ranker.training.cross_encoder import CrossEncoderConfig, train_cross_encoder
from ranker.training.pair_scoring import score_pairs
from ranker.training.reranker_pairs import dense_priors

pytestmark = pytest.mark.slow

TRAIN_QUERIES = 6
MAX_STEPS = 60
MAX_LENGTH = 64
MAX_QUERY_TOKENS = 16


@dataclass(frozen=True)
class TrainingData:
    judgments: Judgments
    product_texts: dict[str, str]
    sha256: str


@dataclass(frozen=True)
class TrainedModel:
    config: CrossEncoderConfig
    result: TrainingResult
    saved: dict[str, Path]
    """save dtype -> saved model directory."""
    metrics: dict[str, Any]


@pytest.fixture(scope="module")
def training_data(sample_judgments: Judgments, sample_products: list[Product]) -> TrainingData:
    """The first judged queries and the text of every product."""
    judgments = sample_judgments.subset(list(sample_judgments.queries)[:TRAIN_QUERIES])
    template = TextTemplate(Settings().index.text_template)
    texts = {product.id: template.render(product) for product in sample_products}
    rows = [
        (qid, judgments.queries[qid], pid, label)
        for qid, labels in judgments.labels.items()
        for pid, label in labels.items()
    ]
    return TrainingData(judgments, texts, data_sha256(rows, texts))


def _train(
    *,
    prior: str,
    base_model: Path,
    data: TrainingData,
    out: Path,
    embedder: Embedder | None = None,
) -> TrainedModel:
    config = CrossEncoderConfig(
        base_model=str(base_model),
        max_length=MAX_LENGTH,
        max_query_tokens=MAX_QUERY_TOKENS,
        batch_size=16,
        epochs=10,
        # A random 2-layer model needs a far larger step than MiniLM to move in 60 steps.
        learning_rate=3e-3,
        evals_per_epoch=2,
        patience=MAX_STEPS,  # no early stop: the loss history covers every step
        prior=prior,  # type: ignore[arg-type]
        save_dtype="float32",
    )
    priors = None
    prior_embedder = None
    if prior == "dense":
        assert embedder is not None
        priors = dense_priors(embedder, data.judgments, data.product_texts)
        prior_embedder = {
            "model_id": embedder.identity.model_id,
            "weights_sha256": embedder.identity.weights_sha256,
            "dimension": embedder.identity.dimension,
        }
    result = train_cross_encoder(
        data.judgments,
        data.product_texts,
        config,
        priors=priors,
        max_steps=MAX_STEPS,
        progress=False,
    )
    metrics = {"validation_ndcg@10": result.best_validation_ndcg, "note": "tiny test run"}
    saved = {}
    for dtype in ("float32", "float16"):
        saved[dtype] = save_cross_encoder(
            result,
            out / dtype,
            config=config.model_copy(update={"save_dtype": dtype}),
            data_sha256=data.sha256,
            metrics=metrics,
            prior_embedder=prior_embedder,
        )
    return TrainedModel(config=config, result=result, saved=saved, metrics=metrics)


@pytest.fixture(scope="module")
def plain_model(
    training_data: TrainingData,
    tiny_reranker_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainedModel:
    """A cross-encoder alone (``prior="none"``)."""
    return _train(
        prior="none",
        base_model=tiny_reranker_dir,
        data=training_data,
        out=tmp_path_factory.mktemp("plain-reranker"),
    )


@pytest.fixture(scope="module")
def dense_model(
    training_data: TrainingData,
    tiny_reranker_dir: Path,
    tiny_embedder: Embedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> TrainedModel:
    """A cross-encoder plus the tiny bi-encoder's cosine (``prior="dense"``)."""
    return _train(
        prior="dense",
        base_model=tiny_reranker_dir,
        data=training_data,
        out=tmp_path_factory.mktemp("dense-reranker"),
        embedder=tiny_embedder,
    )


@pytest.fixture(scope="module", params=["none", "dense"])
def trained(request: pytest.FixtureRequest) -> TrainedModel:
    """Each trained model in turn."""
    name = "plain_model" if request.param == "none" else "dense_model"
    model: TrainedModel = request.getfixturevalue(name)
    return model


def _in_memory_scores(
    trained: TrainedModel, query: str, texts: list[str], embedder: Embedder | None
) -> np.ndarray:
    """What the model in memory scores: the cross-encoder, plus the learned prior if any."""
    scores = score_pairs(
        trained.result.model,
        trained.result.tokenizer,
        query,
        texts,
        max_query_tokens=trained.config.max_query_tokens,
    )
    if trained.result.prior is None:
        return scores
    assert embedder is not None
    vectors = embedder.embed([query, *texts])
    prior = trained.result.prior
    cosines = vectors[1:] @ vectors[0]
    lexical = lexical_features(query, texts) @ np.array(
        [prior["lexical_weights"][name] for name in LEXICAL_FEATURES]
    )
    return np.asarray(
        scores + prior["weight"] * cosines + lexical + prior["bias"], dtype=np.float32
    )


def _probe(data: TrainingData) -> tuple[str, list[str]]:
    qid = next(iter(data.judgments.queries))
    texts = [data.product_texts[pid] for pid in data.judgments.qrels[qid]][:12]
    return data.judgments.queries[qid], texts


def test_training_loss_falls(trained: TrainedModel) -> None:
    losses = [row["train_loss"] for row in trained.result.history if "train_loss" in row]

    assert trained.result.history[-1]["step"] == MAX_STEPS
    assert len(losses) >= 6
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    if trained.config.prior == "none":
        # Starts near ln 2 (random head), then fits the per-query label rates.
        assert first == pytest.approx(np.log(2), abs=0.05)
        assert last < 0.85 * first, losses
    else:
        # Starts from the fitted prior, already below a zero model's ln 2, and goes on.
        assert first < np.log(2) + 0.02
        assert last < 0.95 * first, losses


def test_saved_manifest_records_data_hyperparameters_and_metrics(
    trained: TrainedModel, training_data: TrainingData, tiny_embedder: Embedder
) -> None:
    saved = trained.saved["float32"]
    manifest = json.loads((saved / MANIFEST_NAME).read_text(encoding="utf-8"))

    assert manifest["kind"] == "cross-encoder"
    assert manifest["data_sha256"] == training_data.sha256
    assert manifest["hyperparameters"] == trained.config.model_dump()
    assert manifest["metrics"] == trained.metrics
    assert manifest["weights_sha256"] == weights_sha256(saved)
    assert manifest["model_id"].startswith("shoprank-cross-encoder-")
    assert manifest["dtype"] == "float32"
    assert manifest["train_queries"] + manifest["validation_queries"] == TRAIN_QUERIES
    assert manifest["history"] == trained.result.history
    if trained.config.prior == "none":
        assert manifest["prior"] is None
    else:
        assert manifest["prior"]["kind"] == "dense-cosine"
        assert manifest["prior"]["weight"] == trained.result.prior["weight"]  # type: ignore[index]
        assert list(manifest["prior"]["lexical_weights"]) == list(LEXICAL_FEATURES)
        assert manifest["prior"]["embedder"]["weights_sha256"] == (
            tiny_embedder.identity.weights_sha256
        )


@pytest.mark.parametrize(("dtype", "tolerance"), [("float32", 1e-5), ("float16", 1e-2)])
def test_loaded_reranker_reproduces_in_memory_scores(
    trained: TrainedModel,
    training_data: TrainingData,
    tiny_embedder: Embedder,
    dtype: str,
    tolerance: float,
) -> None:
    query, texts = _probe(training_data)
    embedder = tiny_embedder if trained.config.prior == "dense" else None
    expected = _in_memory_scores(trained, query, texts, embedder)

    reranker = Reranker.load(
        trained.saved[dtype],
        backend="torch",
        max_length=trained.config.max_length,
        max_query_tokens=trained.config.max_query_tokens,
        batch_size=5,  # other batches than training used: padding must not change scores
        embedder=embedder,
    )
    served = reranker.score(query, texts)

    assert served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=0, atol=tolerance)
    assert (
        reranker.model_id
        == json.loads((trained.saved[dtype] / MANIFEST_NAME).read_text(encoding="utf-8"))[
            "model_id"
        ]
    )


def test_plain_model_loads_with_or_without_an_embedder(
    plain_model: TrainedModel, other_tiny_embedder_dir: Path
) -> None:
    saved = plain_model.saved["float32"]

    assert Reranker.load(saved, backend="torch").prior is None
    other = Embedder.load(other_tiny_embedder_dir, backend="torch")
    assert Reranker.load(saved, backend="torch", embedder=other).prior is None


def test_dense_prior_model_needs_an_embedder(
    dense_model: TrainedModel, tiny_embedder: Embedder
) -> None:
    with pytest.raises(RerankerError, match="bi-encoder prior") as caught:
        Reranker.load(dense_model.saved["float32"], backend="torch")

    assert tiny_embedder.identity.model_id in str(caught.value)
    assert "load it with that embedder" in str(caught.value)


def test_dense_prior_model_refuses_another_embedder(
    dense_model: TrainedModel, tiny_embedder: Embedder, other_tiny_embedder_dir: Path
) -> None:
    other = Embedder.load(other_tiny_embedder_dir, backend="torch")
    assert other.identity.weights_sha256 != tiny_embedder.identity.weights_sha256

    with pytest.raises(RerankerError, match="retrain the reranker or serve that one") as caught:
        Reranker.load(dense_model.saved["float32"], backend="torch", embedder=other)

    message = str(caught.value)
    assert tiny_embedder.identity.model_id in message
    assert other.identity.model_id in message
    assert tiny_embedder.identity.weights_sha256[:12] in message
    assert other.identity.weights_sha256[:12] in message


def test_the_kept_model_is_measured_against_its_prior_alone(
    dense_model: TrainedModel,
    plain_model: TrainedModel,
    training_data: TrainingData,
    tiny_embedder: Embedder,
) -> None:
    reranker = Reranker.load(
        dense_model.saved["float32"],
        backend="torch",
        max_length=dense_model.config.max_length,
        max_query_tokens=dense_model.config.max_query_tokens,
        embedder=tiny_embedder,
    )
    judgments = training_data.judgments

    def ndcg(model: Reranker, qid: str) -> float:
        products = list(judgments.qrels[qid])
        scores = model.score(
            judgments.queries[qid], [training_data.product_texts[p] for p in products]
        )
        ranking = ranked_ids(dict(zip(products, scores.tolist(), strict=True)))
        return ndcg_at_k(ranking, judgments.qrels[qid], k=10)

    validation = dense_model.result.validation_queries
    expected = np.mean(
        [ndcg(reranker, qid) - ndcg(reranker.prior_alone(), qid) for qid in validation]
    )
    over_prior = dense_model.result.over_prior

    assert validation
    assert plain_model.result.over_prior is None
    assert over_prior is not None
    assert over_prior.queries == len(validation)
    assert over_prior.mean == pytest.approx(expected, abs=1e-6)
    assert over_prior.interval[0] <= over_prior.mean <= over_prior.interval[1]
