"""The ``shoprank`` command line: index, search, serve, train, eval, run, demo."""

from __future__ import annotations

import json
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ranker.cli_models import app as models_app
from ranker.cli_shop import shop_options
from ranker.cli_tuning import tune_fusion_command
from ranker.settings import Settings, get_settings
from ranker.shop import ShopFiles
from workers.cli import PASS_THROUGH, beat_command, jobs_app, worker_command

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    name="shoprank",
    help="E-commerce product search: dense + BM25 retrieval and a trained reranker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class RetrievalModeChoice(StrEnum):
    """Retrieval modes the CLI offers."""

    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


class IndexBackendChoice(StrEnum):
    """Where `shoprank index` writes."""

    EMBEDDED = "embedded"
    OPENSEARCH = "opensearch"


IndexDirOption = Annotated[
    Path | None, typer.Option("--index-dir", help="Index directory (default: var/index).")
]
RerankerOption = Annotated[
    Path | None,
    typer.Option("--reranker", help="Reranker model directory (default: trained, else shipped)."),
]


def _int_list(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> ``(1, 2)``; a ValueError names a part that is not an integer."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def _settings(index_dir: Path | None = None, reranker: Path | None = None) -> Settings:
    """Settings from the environment, with command-line flags on top."""
    settings = get_settings()
    updates: dict[str, object] = {}
    if index_dir is not None:
        updates["index_dir"] = index_dir
    if reranker is not None:
        updates["rerank"] = settings.rerank.model_copy(update={"model": str(reranker)})
    return settings.model_copy(update=updates) if updates else settings


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    """Configure logging once for every command."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "transformers", "huggingface_hub", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


@app.command()
@shop_options(judgments=False)
def index(
    shop: ShopFiles,
    index_dir: IndexDirOption = None,
    upsert: Annotated[
        bool, typer.Option("--upsert", help="Add or replace the catalog's products in place.")
    ] = False,
    delete: Annotated[
        Path | None, typer.Option("--delete", help="A file of product ids to remove, one a line.")
    ] = None,
    backend: Annotated[
        IndexBackendChoice | None,
        typer.Option(
            "--backend", help="embedded (FAISS + SQLite) or opensearch; default: settings."
        ),
    ] = None,
    from_embedded: Annotated[
        bool,
        typer.Option(
            "--from-embedded",
            help="With --backend opensearch: copy the built embedded index (--index-dir: its "
            "products, template and vectors) into OpenSearch, embedding nothing.",
        ),
    ] = False,
    for_embedder: Annotated[
        str | None,
        typer.Option(
            "--for-embedder",
            help="Build the index for this candidate bi-encoder version (vN) beside the "
            "serving one (embedded, or with --backend opensearch a versioned index off the "
            "alias); `shoprank models promote embedder vN` swaps both in.",
        ),
    ] = None,
) -> None:
    """Build the FAISS and BM25 indexes of a catalog (the sample catalog by default)."""
    from indexer.stores.opensearch.bulk import BulkIndexingError
    from ranker.errors import ShoprankError
    from ranker.indexing import IndexRequest, failure_types, resolve_backend, run_index_job

    settings = _settings(index_dir)
    catalog = shop.catalog
    request = IndexRequest(
        backend=backend.value if backend is not None else None,
        catalog=catalog,
        upsert=upsert,
        delete=delete,
        from_embedded=from_embedded,
        for_embedder=for_embedder,
    )
    chosen = resolve_backend(settings, request)
    if chosen == "opensearch":
        if from_embedded and (catalog is not None or upsert or delete is not None):
            raise _fail(
                "--from-embedded copies the embedded index; drop --catalog/--upsert/--delete"
            )
    elif from_embedded:
        raise _fail("--from-embedded needs --backend opensearch")
    try:
        outcome = run_index_job(settings, request)
    except BulkIndexingError as exc:
        for failure in exc.failures:
            typer.echo(failure.describe(), err=True)
        raise _fail(f"{len(exc.failures)} document(s) rejected (listed above)") from exc
    except ShoprankError as exc:
        raise _fail(exc.message) from exc
    except failure_types(chosen) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(outcome.summary)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("--k", min=1)] = 10,
    mode: Annotated[RetrievalModeChoice | None, typer.Option(help="Retrieval mode.")] = None,
    rerank: Annotated[bool, typer.Option("--rerank/--no-rerank")] = True,
    brand: Annotated[list[str] | None, typer.Option(help="Keep only these brands.")] = None,
    category: Annotated[list[str] | None, typer.Option(help="Keep only these categories.")] = None,
    price_min: Annotated[float | None, typer.Option()] = None,
    price_max: Annotated[float | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    index_dir: IndexDirOption = None,
    reranker: RerankerOption = None,
) -> None:
    """Search the index from the command line."""
    from indexer.stores.base import SearchFilter
    from ranker.loading import open_serving_pipeline

    settings = _settings(index_dir, reranker)
    try:
        pipeline = open_serving_pipeline(settings, with_reranker=rerank)
        search_filter = SearchFilter(
            brands=tuple(brand or ()),
            categories=tuple(category or ()),
            price_min=price_min,
            price_max=price_max,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    outcome = pipeline.search(
        query,
        k=k,
        mode=mode.value if mode is not None else None,
        search_filter=search_filter,
        rerank=rerank,
    )
    if as_json:
        rows = [
            {"id": r.product.id, "title": r.product.title, "score": r.score}
            for r in outcome.results
        ]
        typer.echo(json.dumps({"results": rows, "timings_ms": outcome.timings_ms}, indent=2))
        return
    for rank, result in enumerate(outcome.results, start=1):
        typer.echo(f"{rank:3d}. {result.score:8.3f}  {result.product.id}  {result.product.title}")
    timings = ", ".join(f"{stage} {ms:.1f} ms" for stage, ms in outcome.timings_ms.items())
    typer.echo(f"({timings})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: settings (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default: settings (8000).")] = None,
    index_dir: IndexDirOption = None,
    reranker: RerankerOption = None,
) -> None:
    """Serve the HTTP API; it follows the registry's production versions (every
    api.reload_interval_s, and at once on SIGHUP) and swaps them in without a restart."""
    import uvicorn

    from ranker.api.app import create_app

    settings = _settings(index_dir, reranker)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port if port is not None else settings.api.port,
        log_level="info",
    )


@app.command()
@shop_options()
def train(
    shop: ShopFiles,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Also keep the model directory here (the registry takes a copy)."
        ),
    ] = None,
    epochs: Annotated[float | None, typer.Option(min=0.01)] = None,
    bi_encoder: Annotated[
        bool, typer.Option("--bi-encoder", help="Fine-tune the bi-encoder instead.")
    ] = False,
    loss: Annotated[
        str | None,
        typer.Option(
            help="Reranker: 'pointwise' (BCE, default) or 'listwise' (softmax over a query's "
            "products). Bi-encoder: 'contrastive' (default) or 'margin-mse' (distil the "
            "teacher reranker's score margins)."
        ),
    ] = None,
    folds: Annotated[
        int,
        typer.Option(help="Cross-validate the recipe first (needs `shoprank index`); 0: skip."),
    ] = 0,
    unjudged_negatives: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Retrieved, unjudged products per query as weak negatives (reranker) or hard "
            "negatives (bi-encoder); needs the shop's index. Default 0.",
        ),
    ] = None,
    unjudged_target: Annotated[
        float | None,
        typer.Option(min=0, max=1, help="Reranker: the target of an unjudged negative (0)."),
    ] = None,
    unjudged_depth: Annotated[
        int | None,
        typer.Option(min=1, help="Retrieval depth unjudged negatives are drawn from (50)."),
    ] = None,
    positive_gain: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Bi-encoder: judged products with at least this gain are positives "
            "(default: each query's top gain).",
        ),
    ] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, help="Steps between checkpoints (200).")
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(help="Where checkpoints go (default: <home>/checkpoints/<model>)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint of the same run.")
    ] = False,
) -> None:
    """Fine-tune the cross-encoder (or the bi-encoder) on the shop's judgments and catalog
    (default: the samples) and register it as a candidate. Training saves a checkpoint every
    few steps; `--resume` continues an interrupted run."""
    from ranker.errors import ShoprankError
    from ranker.training.jobs import checkpoint_dir as default_checkpoint_dir
    from ranker.training.jobs import train_bi_encoder_job, train_reranker_job

    settings = _settings()
    given: dict[str, Any] = {
        "epochs": epochs,
        "unjudged_negatives": unjudged_negatives,
        "unjudged_target": unjudged_target,
        "unjudged_depth": unjudged_depth,
        "positive_gain": positive_gain,
        "checkpoint_every": checkpoint_every,
    }
    overrides = {name: value for name, value in given.items() if value is not None}
    if loss is not None:
        overrides["loss"] = loss
    if bi_encoder and unjudged_target is not None:
        raise _fail("--unjudged-target is the reranker's; the bi-encoder has no targets")
    if not bi_encoder and positive_gain is not None:
        raise _fail("--positive-gain chooses the bi-encoder's positives; add --bi-encoder")
    checkpoints = checkpoint_dir or default_checkpoint_dir(
        settings, "embedder" if bi_encoder else "reranker"
    )
    try:
        judgments, catalog = shop.judgments, shop.catalog_for(settings)
        if bi_encoder:
            path, summary = train_bi_encoder_job(
                settings,
                judgments=judgments,
                catalog=catalog,
                out=out,
                overrides=overrides,
                checkpoints=checkpoints,
                resume=resume,
            )
        else:
            path, summary = train_reranker_job(
                settings,
                judgments=judgments,
                catalog=catalog,
                out=out,
                overrides=overrides,
                folds=folds,
                checkpoints=checkpoints,
                resume=resume,
            )
    except (OSError, ValueError, ShoprankError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"saved {path}")
    typer.echo(json.dumps(summary, indent=2))


@app.command()
@shop_options()
def compress(
    shop: ShopFiles,
    layers: Annotated[
        str,
        typer.Option(
            help="Teacher layers the students keep, comma-separated; 0: the prior alone, "
            "with a miss embedder for texts the index does not hold."
        ),
    ] = "1,2",
    max_lengths: Annotated[
        str,
        typer.Option(help="Students' maximum pair lengths in word pieces, comma-separated."),
    ] = "40,48",
    embedder_max_lengths: Annotated[
        str,
        typer.Option(
            help="Shorter input lengths the bi-encoder is also tried at, comma-separated "
            "(empty: the served length only)."
        ),
    ] = "64",
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds, by query.")] = 3,
    pseudo_queries: Annotated[
        int, typer.Option(min=0, help="Pseudo-queries cut from product titles.")
    ] = 1000,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Work and report directory (default: var/compress)."),
    ] = None,
    index_dir: IndexDirOption = None,
    teacher: Annotated[
        str | None,
        typer.Option(
            help="Reranker version to distil (default: the production reranker's source)."
        ),
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            help="Promote each registered winner when the registry's gate passes (else it "
            "stays a candidate)."
        ),
    ] = True,
) -> None:
    """Compress the bi-encoder and the reranker: export, quantize, distil, gate, register
    the winners as candidates and promote them through the registry's gate.

    Pseudo-queries are cut from the catalog's titles; index that catalog first: retrieval
    finds the students' training products."""
    from ranker.compress.job import CompressConfig, compress_models
    from ranker.errors import ShoprankError

    settings = _settings(index_dir)
    try:
        config = CompressConfig(
            layers=_int_list(layers),
            max_lengths=_int_list(max_lengths),
            embedder_max_lengths=_int_list(embedder_max_lengths),
            folds=folds,
            pseudo_queries=pseudo_queries,
        )
        work = out or settings.home / "compress"
        embedder_report, report = compress_models(
            settings,
            config,
            work_dir=work,
            judgments=shop.judgments,
            catalog=shop.catalog_for(settings),
            teacher=teacher,
            promote=promote,
        )
    except (OSError, ValueError, RuntimeError, ShoprankError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo((work / "report.md").read_text(encoding="utf-8"))
    for what, outcome in (("reranker", report), ("bi-encoder", embedder_report)):
        if outcome.registered is None:
            typer.echo(f"{what}: nothing registered (no variant passed its gate)")
        elif outcome.promoted:
            typer.echo(f"{what}: {outcome.registered} registered and serving")
        else:
            typer.echo(
                f"{what}: {outcome.registered} registered, not promoted: {outcome.promotion_note}"
            )


@app.command("eval")
@shop_options()
def evaluate(
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

    settings = _settings(index_dir, reranker)
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
        raise _fail(str(exc)) from exc
    typer.echo(text_table(evaluation.results))
    for comparison in evaluation.comparisons:
        typer.echo(comparison.describe())
    typer.echo(f"report: {evaluation.report}  chart: {evaluation.chart}")


def _evaluate_via_api(
    settings: Settings, shop: ShopFiles, url: str, *, out: Path, relevant_gain: float | None
) -> None:
    import httpx

    from ranker.evaluation.api_rerank import evaluate_api_rerank, report_api_rerank
    from ranker.evaluation.report import text_table

    try:
        _, row = evaluate_api_rerank(
            settings,
            url=url,
            judgments_path=shop.judgments,
            relevant_at_least=relevant_gain,
            api_key=os.environ.get("SHOPRANK_EVAL_API_KEY") or None,
        )
        source = str(shop.judgments or "the sample judgments")
        paths = report_api_rerank(row, out, source=source)
    except httpx.HTTPStatusError as exc:
        raise _fail(f"{url}: {exc.response.status_code} {exc.response.text[:300]}") from exc
    except httpx.HTTPError as exc:
        raise _fail(f"{url}: {exc}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(text_table([row]))
    typer.echo(f"report: {paths[0]}  chart: {paths[1]}")


@app.command()
@shop_options(catalog=False, judgments_file=False)
def run(
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

    settings = _settings(index_dir, reranker)
    try:
        query_texts = load_queries(queries, mapping=shop.judgment_mapping)
        candidate_lists = (
            load_candidates(candidates, mapping=shop.judgment_mapping) if candidates else None
        )
        pipeline = open_serving_pipeline(settings, with_reranker=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
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


@app.command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with the machine).")] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Timed calls per path.")] = 20,
    docs: Annotated[int, typer.Option(min=1, help="Catalog texts embedded per path.")] = 1024,
    models_dir: Annotated[
        Path, typer.Option("--models-dir", help="Where the ONNX exports are made once.")
    ] = Path("var/bench-models"),
    index: Annotated[
        bool,
        typer.Option(
            "--index",
            help="Also indexing throughput: the embedded build vs OpenSearch bulk (starts a "
            "dev node: java and mvn; or --opensearch-url).",
        ),
    ] = False,
    index_docs: Annotated[
        int, typer.Option(min=0, help="With --index: products indexed; 0: the whole catalog.")
    ] = 512,
    opensearch_url: Annotated[
        str | None,
        typer.Option(
            help="With --index: this cluster (SHOPRANK_OPENSEARCH__* auth), not a dev node."
        ),
    ] = None,
) -> None:
    """Rerank-50 and embedding speed per backend, side by side, with ratios (see bench/)."""
    try:
        from bench.suite import render_all, run_all
    except ImportError as exc:
        raise _fail(f"the benchmarks need the dev extra (pip install -e '.[dev]'): {exc}") from exc
    try:
        result = run_all(
            repeats=repeats,
            docs=docs,
            models_dir=models_dir,
            index=index,
            index_docs=index_docs or None,
            opensearch_url=opensearch_url,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    typer.echo(json.dumps(result, indent=2) if as_json else render_all(result))


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="0 picks a free port.")] = 0,
    folds: Annotated[int, typer.Option(help="CV folds for the trained reranker.")] = 0,
    compress: Annotated[
        bool,
        typer.Option(help="Compress the models first when none is gated yet (about 20 min, once)."),
    ] = True,
) -> None:
    """The main job: index the sample catalog, compress the models, serve, query, evaluate."""
    from ranker.demo import run_demo

    try:
        run_demo(_settings(), port=port, folds=folds, compress=compress)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc


opensearch_app = typer.Typer(
    help="OpenSearch: the rerank hook (see deploy/opensearch/README.md).", no_args_is_help=True
)
app.add_typer(opensearch_app, name="opensearch")
app.add_typer(models_app, name="models")


@opensearch_app.command("setup-rerank")
def opensearch_setup_rerank(
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url",
            help="shoprank's API as the OpenSearch nodes reach it, e.g. http://10.0.0.5:8000.",
        ),
    ],
    pipeline: Annotated[str, typer.Option(help="The search pipeline's name.")] = "shoprank-rerank",
    document_field: Annotated[
        list[str] | None,
        typer.Option(
            "--document-field",
            help="A _source field the reranker reads (repeatable; their values are "
            "concatenated); default: model_text, the text the models read.",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Connector and model name.")] = "shoprank-reranker",
) -> None:
    """Register an ML Commons connector to /v1/rerank, a model and a rerank search pipeline.

    Idempotent: a connector and model of this name on the same endpoint, and a pipeline
    that already holds the processor, are reused. With API keys set
    (SHOPRANK_API__API_KEYS), the connector sends the first one as 'Authorization: Bearer'.
    """
    from indexer.stores.base import StoreError
    from indexer.stores.opensearch.client import make_client
    from indexer.stores.opensearch.rerank_hook import (
        DEFAULT_DOCUMENT_FIELDS,
        rerank_endpoint,
        setup_rerank,
    )

    settings = _settings()
    api_keys = settings.api.api_key_list()
    try:
        hook = setup_rerank(
            make_client(settings.opensearch),
            endpoint=rerank_endpoint(api_url),
            pipeline=pipeline,
            document_fields=document_field or DEFAULT_DOCUMENT_FIELDS,
            name=name,
            api_key=api_keys[0] if api_keys else None,
        )
    except (StoreError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    changed = ", ".join(hook.changed) if hook.changed else "nothing, all reused"
    typer.echo(
        f"search pipeline {hook.pipeline}: model {hook.model_id} (connector {hook.connector_id}) "
        f"-> {hook.endpoint} (changed: {changed}; "
        f"{'sends the first API key' if api_keys else 'sends no API key'})\n"
        f"search with ?search_pipeline={hook.pipeline} and "
        '"ext": {"rerank": {"query_context": {"query_text": "..."}}}'
    )


app.command("worker", context_settings=PASS_THROUGH)(worker_command)
app.command("beat", context_settings=PASS_THROUGH)(beat_command)
app.add_typer(jobs_app, name="jobs")
app.command("tune-fusion")(tune_fusion_command)
