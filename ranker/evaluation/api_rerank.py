"""The rerank task through a running server's ``/v1/rerank``: what a Cohere-style client gets.

Each judged query's products go out as texts in one request, rendered from the index's
catalog the way training and serving render them; the order of the answer is the run. The
server may serve any reranker: this measures what it serves, end to end over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from indexer.catalog import sample_judgments_path
from indexer.progress import progress_bar
from ranker.evaluation.judgment_files import JudgmentsInput, judgments_file
from ranker.evaluation.judgments import Judgments, load_judgments
from ranker.evaluation.metrics import EvalResult, Run, evaluate_run
from ranker.evaluation.report import SystemResult
from ranker.loading import open_serving_pipeline
from ranker.pipeline import SearchPipeline
from ranker.settings import Settings

logger = logging.getLogger(__name__)

RerankDocuments = dict[str, tuple[list[str], list[str]]]
"""qid -> (product ids, their texts), in the same order."""


def judged_texts(pipeline: SearchPipeline, judgments: Judgments) -> RerankDocuments:
    """Each query's judged products that the index holds, with their texts.

    Raises:
        ValueError: the index holds none of the judged products.
    """
    wanted = sorted({pid for judged in judgments.qrels.values() for pid in judged})
    found = {
        product.id: product
        for product in pipeline.product_store.get_many(wanted)
        if product is not None
    }
    if not found:
        raise ValueError("the index holds none of the judged products; index the shop's catalog")
    if len(found) < len(wanted):
        logger.warning(
            "%d of %d judged products are not in the index; they rank last",
            len(wanted) - len(found),
            len(wanted),
        )
    documents: RerankDocuments = {}
    for qid, judged in judgments.qrels.items():
        products = [found[pid] for pid in judged if pid in found]
        documents[qid] = ([p.id for p in products], pipeline.product_texts(products))
    return documents


def api_rerank_run(
    client: httpx.Client,
    queries: Mapping[str, str],
    documents: RerankDocuments,
    *,
    progress: bool = False,
) -> Run:
    """One ``POST /v1/rerank`` per query; each product's score is its ``relevance_score``.

    Raises:
        httpx.HTTPStatusError: the server answered a request with an error status.
    """
    run: Run = {}
    for qid, query in progress_bar(
        list(queries.items()), desc="/v1/rerank", disable=not progress, total=len(queries)
    ):
        ids, texts = documents.get(qid, ([], []))
        if not texts:
            run[qid] = {}
            continue
        response = client.post(
            "/v1/rerank", json={"query": query, "documents": texts, "top_n": len(texts)}
        )
        response.raise_for_status()
        results: Sequence[Mapping[str, float]] = response.json()["results"]
        run[qid] = {ids[int(r["index"])]: float(r["relevance_score"]) for r in results}
    return run


def evaluate_api_rerank(
    settings: Settings,
    *,
    url: str,
    judgments_path: JudgmentsInput | None,
    relevant_at_least: float | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
) -> tuple[EvalResult, SystemResult]:
    """The rerank task of ``judgments_path`` (None: the samples) through ``url``'s
    ``/v1/rerank``, the texts read from ``settings``' index; the result and its table row."""
    from ranker.evaluation.bootstrap import metric_intervals

    source = judgments_file(judgments_path or sample_judgments_path())
    judgments = load_judgments(source, gains=settings.label_gains)
    documents = judged_texts(open_serving_pipeline(settings, with_reranker=False), judgments)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=url, timeout=timeout_s, headers=headers) as client:
        run = api_rerank_run(client, judgments.queries, documents, progress=True)
    result = evaluate_run(run, judgments.qrels, relevant_at_least=relevant_at_least)
    row = SystemResult(
        f"POST {url.rstrip('/')}/v1/rerank",
        "rerank",
        result.means,
        "the running server's reranker, over HTTP",
        intervals=metric_intervals(result),
    )
    return result, row


def report_api_rerank(row: SystemResult, out: Path, *, source: str) -> tuple[Path, Path]:
    """Write the one-row report of :func:`evaluate_api_rerank` into ``out``."""
    from ranker.evaluation.report import write_report

    return write_report(
        [row],
        out,
        title="shoprank evaluation over /v1/rerank",
        preamble=f"The rerank task of `{source}`: each query's judged products, sent as texts.",
    )
