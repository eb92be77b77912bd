"""The rerank task through /v1/rerank (the app in-process) against the same task in process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.api.service_loading import load_service
from ranker.evaluation.api_rerank import api_rerank_run, judged_texts
from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import NDCG_AT_10, evaluate_run
from ranker.evaluation.systems import RERANKED_SYSTEM, system_run
from ranker.loading import open_serving_pipeline
from ranker.settings import Settings


@pytest.fixture(scope="module")
def client(built_index: dict[str, Any], integration_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(integration_settings, loader=load_service)) as test_client:
        yield test_client


def test_over_http_the_rerank_task_scores_as_it_does_in_process(
    client: TestClient,
    integration_settings: Settings,
    sample_judgments: Judgments,
    subset_qids: list[str],
) -> None:
    judgments = sample_judgments.subset(subset_qids[:6])
    pipeline = open_serving_pipeline(integration_settings)
    documents = judged_texts(pipeline, judgments)

    over_http = api_rerank_run(client, judgments.queries, documents)
    in_process = system_run(
        pipeline,
        RERANKED_SYSTEM,
        judgments.queries,
        task="rerank",
        candidates={qid: list(judged) for qid, judged in judgments.qrels.items()},
    )

    for qid, (ids, _) in documents.items():
        assert set(over_http[qid]) == set(ids)
    http_ndcg = evaluate_run(over_http, judgments.qrels).means[NDCG_AT_10]
    process_ndcg = evaluate_run(in_process, judgments.qrels).means[NDCG_AT_10]
    assert http_ndcg == pytest.approx(process_ndcg, abs=1e-6)


def test_an_index_without_the_judged_products_is_a_clear_error(
    integration_settings: Settings,
) -> None:
    judgments = Judgments(queries={"q1": "bag"}, qrels={"q1": {"nope": 1.0}}, labels={})
    with pytest.raises(ValueError, match="index holds none of the judged products"):
        judged_texts(open_serving_pipeline(integration_settings), judgments)
