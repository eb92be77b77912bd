"""The ``shoprank`` command line: index, search, serve, train, eval, run, demo."""

from __future__ import annotations

import json
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ranker.cli_common import IndexDirOption, RerankerOption, fail, settings_with_flags
from ranker.cli_evaluation import evaluate_command, run_command
from ranker.cli_models import app as models_app
from ranker.cli_opensearch import app as opensearch_app
from ranker.cli_shop import shop_options
from ranker.cli_training import compress_command, train_command
from ranker.cli_tuning import tune_fusion_command
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

    settings = settings_with_flags(index_dir)
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
            raise fail(
                "--from-embedded copies the embedded index; drop --catalog/--upsert/--delete"
            )
    elif from_embedded:
        raise fail("--from-embedded needs --backend opensearch")
    try:
        outcome = run_index_job(settings, request)
    except BulkIndexingError as exc:
        for failure in exc.failures:
            typer.echo(failure.describe(), err=True)
        raise fail(f"{len(exc.failures)} document(s) rejected (listed above)") from exc
    except ShoprankError as exc:
        raise fail(exc.message) from exc
    except failure_types(chosen) as exc:
        raise fail(str(exc)) from exc
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
    as_typed: Annotated[
        bool, typer.Option("--as-typed", help="Search the query as typed: no spelling correction.")
    ] = False,
    index_dir: IndexDirOption = None,
    reranker: RerankerOption = None,
) -> None:
    """Search the index from the command line."""
    from indexer.stores.base import SearchFilter
    from ranker.loading import open_serving_pipeline

    settings = settings_with_flags(index_dir, reranker)
    try:
        pipeline = open_serving_pipeline(settings, with_reranker=rerank)
        search_filter = SearchFilter(
            brands=tuple(brand or ()),
            categories=tuple(category or ()),
            price_min=price_min,
            price_max=price_max,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    outcome = pipeline.search(
        query,
        k=k,
        mode=mode.value if mode is not None else None,
        search_filter=search_filter,
        rerank=rerank,
        correct_spelling=not as_typed,
    )
    if as_json:
        rows = [
            {"id": r.product.id, "title": r.product.title, "score": r.score}
            for r in outcome.results
        ]
        answer = {
            "corrected_query": outcome.corrected_query,
            "results": rows,
            "timings_ms": outcome.timings_ms,
        }
        typer.echo(json.dumps(answer, indent=2))
        return
    if outcome.corrected_query is not None:
        typer.echo(f"Showing results for: {outcome.corrected_query} (--as-typed: {query})")
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

    settings = settings_with_flags(index_dir, reranker)
    uvicorn.run(
        create_app(settings),
        host=host or settings.api.host,
        port=port if port is not None else settings.api.port,
        log_level="info",
    )


app.command("train")(train_command)
app.command("compress")(compress_command)
app.command("eval")(evaluate_command)
app.command("run")(run_command)


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
        raise fail(f"the benchmarks need the dev extra (pip install -e '.[dev]'): {exc}") from exc
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
        raise fail(str(exc)) from exc
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
        run_demo(settings_with_flags(), port=port, folds=folds, compress=compress)
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc


app.add_typer(opensearch_app, name="opensearch")
app.add_typer(models_app, name="models")


app.command("worker", context_settings=PASS_THROUGH)(worker_command)
app.command("beat", context_settings=PASS_THROUGH)(beat_command)
app.add_typer(jobs_app, name="jobs")
app.command("tune-fusion")(tune_fusion_command)
