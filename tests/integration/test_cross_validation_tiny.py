"""Cross-validation of the reranker recipe on the tiny models over the indexed subset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from indexer.catalog import Product, TextTemplate
from ranker.embedder import Embedder
from ranker.evaluation.judgments import Judgments, kfold_query_splits
from ranker.evaluation.trec import read_trec_run
from ranker.loading import open_serving_pipeline
from ranker.settings import Settings
from ranker.training.artifacts import data_sha256
from ranker.training.cross_encoder import CrossEncoderConfig
from ranker.training.cross_validation import CrossValidation, cross_validate_reranker
from ranker.training.jobs import TrainingData
from ranker.training.reranker_pairs import dense_priors

FOLDS = 2


@pytest.fixture(scope="module")
def cross_validated(
    integration_settings: Settings,
    built_index: dict[str, Any],
    sample_judgments: Judgments,
    subset_qids: list[str],
    catalog_subset: list[Product],
    tiny_reranker_dir: Path,
    tiny_embedder: Embedder,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[CrossValidation, Path, Judgments]:
    judgments = sample_judgments.subset(subset_qids)
    template = TextTemplate(integration_settings.index.text_template)
    texts = {product.id: template.render(product) for product in catalog_subset}
    rows = [
        (q, judgments.queries[q], p, lab)
        for q, ls in judgments.labels.items()
        for p, lab in ls.items()
    ]
    data = TrainingData(judgments, texts, data_sha256(rows, texts))
    config = CrossEncoderConfig(
        base_model=str(tiny_reranker_dir),
        max_length=48,
        max_query_tokens=16,
        batch_size=16,
        epochs=1,
        learning_rate=3e-3,
    )
    runs_out = tmp_path_factory.mktemp("cv-runs")
    cv = cross_validate_reranker(
        open_serving_pipeline(integration_settings, with_reranker=False),
        data,
        config,
        priors=dense_priors(tiny_embedder, judgments, texts),
        folds=FOLDS,
        seed=0,
        retrieval_depth=20,
        runs_out=runs_out,
        other_retrieval_weights=(integration_settings.rerank.retrieval_weight, 2.0),
    )
    return cv, runs_out, judgments


def test_every_query_is_scored_once_per_task_and_retrieval_weight(
    cross_validated: tuple[CrossValidation, Path, Judgments],
) -> None:
    cv, _, judgments = cross_validated
    results = cv.results

    # The served weight is not repeated; the other one gets its own keys, and so does each
    # fold's prior alone.
    assert set(results) == {
        "rerank",
        "retrieval",
        "rerank, retrieval_weight 2",
        "retrieval, retrieval_weight 2",
        "rerank, prior alone",
        "retrieval, prior alone",
    }
    for result in results.values():
        assert set(result.per_query) == set(judgments.queries)
        assert 0.0 <= result.means["ndcg@10"] <= 1.0


def test_runs_are_written_as_trec_files_that_read_back(
    cross_validated: tuple[CrossValidation, Path, Judgments],
) -> None:
    _, runs_out, judgments = cross_validated

    files = sorted(path.name for path in runs_out.iterdir())
    assert files == [
        "cv-rerank-prior-alone.trec",
        "cv-rerank-retrieval_weight-2.trec",
        "cv-rerank.trec",
        "cv-retrieval-prior-alone.trec",
        "cv-retrieval-retrieval_weight-2.trec",
        "cv-retrieval.trec",
    ]
    rerank = read_trec_run(runs_out / "cv-rerank-retrieval_weight-2.trec")
    for qid in judgments.queries:
        # The rerank task orders exactly each query's judged products.
        assert set(rerank[qid]) == set(judgments.qrels[qid])


def test_each_fold_says_which_step_it_kept_and_a_kept_start_is_its_prior_alone(
    cross_validated: tuple[CrossValidation, Path, Judgments],
) -> None:
    cv, _, judgments = cross_validated
    assert len(cv.kept_steps) == FOLDS
    assert all(isinstance(step, int) and step >= 0 for step in cv.kept_steps)
    assert cv.trained_folds == sum(1 for step in cv.kept_steps if step > 0)
    assert cv.summary()["kept_steps"] == cv.kept_steps
    splits = kfold_query_splits(list(judgments.queries), folds=FOLDS, seed=0)
    for step, (_, test_qids) in zip(cv.kept_steps, splits, strict=True):
        if step == 0:  # no step beat the start: the fold serves its prior alone
            for qid in test_qids:
                assert cv.results["rerank"].per_query[qid]["ndcg@10"] == pytest.approx(
                    cv.results["rerank, prior alone"].per_query[qid]["ndcg@10"]
                )
