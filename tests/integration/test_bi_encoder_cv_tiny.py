"""Cross-validation of the bi-encoder's recipe on a tiny model: every judged query is scored
once under each prior, by models that never saw it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import Product, TextTemplate
from ranker.evaluation.judgments import Judgments, kfold_query_splits
from ranker.settings import Settings
from ranker.training import bi_encoder_cv
from ranker.training.bi_encoder import BiEncoderConfig
from ranker.training.common import TrainingResult
from ranker.training.cross_encoder import CrossEncoderConfig

pytestmark = pytest.mark.slow

FOLDS = 2


@pytest.fixture(scope="module")
def judgments(sample_judgments: Judgments) -> Judgments:
    return sample_judgments.subset(list(sample_judgments.queries)[:8])


@pytest.fixture(scope="module")
def texts(sample_products: list[Product]) -> dict[str, str]:
    template = TextTemplate(Settings().index.text_template)
    return {product.id: template.render(product) for product in sample_products}


@pytest.fixture(scope="module")
def config(tiny_embedder_dir: Path) -> BiEncoderConfig:
    return BiEncoderConfig(base_model=str(tiny_embedder_dir), max_length=64, epochs=1, batch_size=8)


def test_each_query_is_scored_once_per_prior_by_folds_that_never_saw_it(
    judgments: Judgments,
    texts: dict[str, str],
    config: BiEncoderConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trained_on: list[set[str]] = []
    train = bi_encoder_cv.train_bi_encoder

    def recording(*args: Any, train_qids: list[str], **kwargs: Any) -> TrainingResult:
        trained_on.append(set(train_qids))
        return train(*args, train_qids=train_qids, **kwargs)

    monkeypatch.setattr(bi_encoder_cv, "train_bi_encoder", recording)

    cv = bi_encoder_cv.cross_validate_bi_encoder(
        judgments, texts, config, CrossEncoderConfig(), folds=FOLDS, seed=0
    )

    splits = kfold_query_splits(list(judgments.queries), folds=FOLDS, seed=0)
    assert trained_on == [set(train_qids) for train_qids, _ in splits]
    assert set(cv.base) == set(cv.fine_tuned) == set(judgments.queries)
    assert all(0.0 <= value <= 1.0 for value in [*cv.base.values(), *cv.fine_tuned.values()])
    assert len(cv.kept_steps) == FOLDS
    summary = cv.summary()
    assert summary["fine_tuned_over_zero_shot"]["queries"] == len(judgments.queries)
    low, high = summary["zero_shot"]["interval"]
    assert low <= summary["zero_shot"]["ndcg@10"] <= high


def test_a_fold_that_keeps_the_base_model_scores_as_the_base_model(
    judgments: Judgments,
    texts: dict[str, str],
    config: BiEncoderConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fold's in-memory model and the loaded base model go through the same prior: when
    training leaves the base weights as they were, the two arms rank alike."""
    train = bi_encoder_cv.train_bi_encoder

    def frozen(
        judgments: Judgments, texts: dict[str, str], config: BiEncoderConfig, **kwargs: Any
    ) -> TrainingResult:
        still = config.model_copy(update={"learning_rate": 1e-30, "epochs": 0.01})
        return train(judgments, texts, still, **kwargs)

    monkeypatch.setattr(bi_encoder_cv, "train_bi_encoder", frozen)

    cv = bi_encoder_cv.cross_validate_bi_encoder(
        judgments, texts, config, CrossEncoderConfig(), folds=FOLDS, seed=0
    )

    assert cv.kept_steps == [0] * FOLDS
    assert cv.fine_tuned == pytest.approx(cv.base, abs=1e-6)
    assert cv.summary()["fine_tuned_over_zero_shot"]["ndcg@10"] == pytest.approx(0.0, abs=1e-6)
