"""`shoprank tune-fusion`: choose the shop's fusion settings by cross-validation and write
them where serving reads them (see ``ranker.fusion_tuning`` and ``ranker.fusion_settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ranker.cli_common import fail, settings_with_flags
from ranker.cli_shop import shop_options
from ranker.shop import ShopFiles

DEFAULT_RRF_K = "10,20,40,60,100"
DEFAULT_DENSE_WEIGHTS = "0,0.25,0.5,0.75,1,1.5"
DEFAULT_RERANK_DEPTHS = "10,20,30,50"


def _floats(text: str, *, option: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated numbers, got {text!r}", param_hint=option
        ) from None


def _ints(text: str, *, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint=option
        ) from None


@shop_options(catalog=False)
def tune_fusion_command(
    shop: ShopFiles,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds, by query.")] = 5,
    rrf_k: Annotated[
        str, typer.Option("--rrf-k", help="RRF constants to try, comma-separated.")
    ] = DEFAULT_RRF_K,
    dense_weights: Annotated[
        str, typer.Option(help="Dense weights to try (0: lexical alone), comma-separated.")
    ] = DEFAULT_DENSE_WEIGHTS,
    lexical_weights: Annotated[
        str, typer.Option(help="Lexical weights to try, comma-separated.")
    ] = "1",
    rerank_depths: Annotated[
        str,
        typer.Option(
            help="Rerank depths to try, comma-separated ('' : keep the depth; the reranker "
            "should not have been trained on these queries)."
        ),
    ] = DEFAULT_RERANK_DEPTHS,
    out: Annotated[Path, typer.Option("--out", help="Where report.md goes.")] = Path(
        "var/fusion-report"
    ),
    index_dir: Annotated[
        Path | None, typer.Option("--index-dir", help="Index directory (default: var/index).")
    ] = None,
    fusion_file: Annotated[
        Path | None,
        typer.Option(
            "--fusion-file", help="Where the chosen settings go (default: <home>/fusion.json)."
        ),
    ] = None,
) -> None:
    """Tune the RRF constant, the dense/lexical weights and the rerank depth by k-fold
    cross-validation on the shop's judgments; write them where the API, `search`, `run`
    and `eval` read them, and a report of every grid point."""
    from indexer.stores.atomic import atomic_write_text
    from ranker.errors import ShoprankError
    from ranker.evaluation.judgments import load_judgments
    from ranker.fusion_settings import fusion_file as default_fusion_file
    from ranker.fusion_settings import write_tuned_fusion
    from ranker.fusion_tuning import GridPoint, tune, tuning_report
    from ranker.loading import open_serving_pipeline

    settings = settings_with_flags(index_dir)
    if shop.judgments is None:
        raise fail("tune-fusion needs the shop's judgments: add --judgments")
    grid = [
        GridPoint(k, dense, lexical)
        for k in _floats(rrf_k, option="--rrf-k")
        for dense in _floats(dense_weights, option="--dense-weights")
        for lexical in _floats(lexical_weights, option="--lexical-weights")
        if dense > 0 or lexical > 0
    ]
    depths = _ints(rerank_depths, option="--rerank-depths")
    target = fusion_file or default_fusion_file(settings)
    try:
        judgments = load_judgments(shop.judgments, gains=settings.label_gains)
        pipeline = open_serving_pipeline(settings, with_reranker=bool(depths))
        tuning = tune(
            pipeline, judgments, grid, depths=depths, folds=folds, seed=settings.seed, progress=True
        )
        write_tuned_fusion(tuning.tuned, target)
        report = tuning_report(tuning)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / "report.md",
            f"# Fusion tuned on {len(judgments.queries)} queries of "
            f"`{shop.judgments.describe()}`\n\n{report}",
        )
    except (OSError, ValueError, RuntimeError, ShoprankError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(report)
    typer.echo(f"wrote {target} and {out / 'report.md'}")
