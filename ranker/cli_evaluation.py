"""`shoprank eval` and `shoprank run`: score the retrieval and rerank systems on the shop's
judgments, and write TREC runs (see ``ranker.evaluation``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ranker.cli_common import IndexDirOption, RerankerOption, fail, settings_with_flags
from ranker.cli_shop import shop_options
from ranker.settings import Settings
from ranker.shop import ShopFiles


@shop_options()
def evaluate_command(
    shop: ShopFiles,
    folds: Annotated[
        int, typer.Option(help="Cross-validation folds for trained models (0: no CV).")
    ] = 5,
    out: Annotated[Path, typer.Option("--out", help="Report directory.")] = Path("var/report"),
    relevant_gain: Annotated[
        float | None,
        typer.Option(
            "--relevant-gain",
            min=0,
            help="Recall@100 and MRR count a product relevant from this gain up (Home Depot: "
            "1.33, i.e. relevance >= 2.33); default: any gain above 0.",
        ),
    ] = None,
    index_dir: IndexDirOption = None,
    reranker: RerankerOption = None,
    via_api: Annotated[
        str | None,
        typer.Option(
            "--via-api",
            help="Score only the rerank task, through a running server's /v1/rerank at this "
            "base URL (texts from the index's catalog); its API key, if it needs one, from "
            "SHOPRANK_EVAL_API_KEY.",
        ),
    ] = None,
) -> None:
    """NDCG@10 (full and condensed), Recall@100 and MRR of BM25, dense, hybrid, hybrid +
    rerank and the reranker's prior alone, with bootstrap intervals."""
    from ranker.evaluation.report import text_table
    from ranker.evaluation.suite import run_evaluation

    settings = settings_with_flags(index_dir, reranker)
    if via_api is not None:
        _evaluate_via_api(settings, shop, via_api, out=out, relevant_gain=relevant_gain)
        return
    try:
        catalog = shop.catalog_for(settings) if folds >= 2 else shop.catalog
        evaluation = run_evaluation(
            settings,
            judgments_path=shop.judgments,
            catalog=catalog,
            folds=folds,
            out=out,
            relevant_at_least=relevant_gain,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(text_table(evaluation.results))
    for comparison in evaluation.comparisons:
        typer.echo(comparison.describe())
    typer.echo(f"report: {evaluation.report}  chart: {evaluation.chart}")


def _evaluate_via_api(
    settings: Settings, shop: ShopFiles, url: str, *, out: Path, relevant_gain: float | None
) -> None:
    import httpx

    from ranker.evaluation.api_rerank import evaluate_api_rerank, report_api_rerank
    from ranker.evaluation.judgment_files import judgments_file
    from ranker.evaluation.report import text_table

    try:
        _, row = evaluate_api_rerank(
            settings,
            url=url,
            judgments_path=shop.judgments,
            relevant_at_least=relevant_gain,
            api_key=os.environ.get("SHOPRANK_EVAL_API_KEY") or None,
        )
        source = (
            judgments_file(shop.judgments).describe()
            if shop.judgments is not None
            else "the sample judgments"
        )
        paths = report_api_rerank(row, out, source=source)
    except httpx.HTTPStatusError as exc:
        raise fail(f"{url}: {exc.response.status_code} {exc.response.text[:300]}") from exc
    except httpx.HTTPError as exc:
        raise fail(f"{url}: {exc}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(text_table([row]))
    typer.echo(f"report: {paths[0]}  chart: {paths[1]}")


@shop_options(catalog=False, judgments_file=False)
def run_command(
    shop: ShopFiles,
    queries: Annotated[
        Path,
        typer.Option(
            "--queries",
            help="CSV or JSONL with query_id,query (or as --judgment-field/--mapping say).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="TREC run file to write.")],
    candidates: Annotated[
        Path | None,
        typer.Option(
            "--candidates",
            help="CSV or JSONL with query_id,product_id (or as mapped): the rerank task.",
        ),
    ] = None,
    depth: Annotated[int, typer.Option(min=1, help="Results per query (retrieval task).")] = 100,
    tag: Annotated[str, typer.Option(help="Run tag, the TREC file's last column.")] = "shoprank",
    index_dir: IndexDirOption = None,
    reranker: RerankerOption = None,
) -> None:
    """Write a TREC run (qid Q0 docid rank score tag) with the served defaults."""
    from ranker.evaluation.judgments import load_candidates, load_queries
    from ranker.evaluation.systems import System, system_run
    from ranker.evaluation.trec import write_trec_run
    from ranker.loading import open_serving_pipeline

    settings = settings_with_flags(index_dir, reranker)
    try:
        query_texts = load_queries(queries, mapping=shop.judgment_mapping)
        candidate_lists = (
            load_candidates(candidates, mapping=shop.judgment_mapping) if candidates else None
        )
        pipeline = open_serving_pipeline(settings, with_reranker=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    served = System("served", settings.retrieval.mode, rerank=pipeline.reranker is not None)
    result = system_run(
        pipeline,
        served,
        query_texts,
        task="rerank" if candidate_lists is not None else "retrieval",
        candidates=candidate_lists,
        depth=depth,
        progress=True,
    )
    write_trec_run(result, out, tag=tag)
    typer.echo(f"wrote {out}: {len(result)} queries")
