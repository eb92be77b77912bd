"""`shoprank train` and `shoprank compress`: fine-tune the models on the shop's judgments,
then export, quantize and distil them (see ``ranker.training`` and ``ranker.compress``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ranker.cli_common import IndexDirOption, fail, settings_with_flags
from ranker.cli_shop import shop_options
from ranker.compress.records import CompressConfig
from ranker.shop import ShopFiles

COMPRESS_DEFAULTS = CompressConfig()


def _comma_list(values: tuple[int, ...]) -> str:
    """``(1, 2)`` -> ``"1,2"``: a config default as the option's text."""
    return ",".join(str(value) for value in values)


def _int_list(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> ``(1, 2)``; a ValueError names a part that is not an integer."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


@shop_options()
def train_command(
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
    prior_only: Annotated[
        bool,
        typer.Option(
            "--prior-only",
            help="Reranker: fit its linear prior alone (cosine and word coverage; seconds, "
            "no transformer to train or serve) and register it as a prior-only reranker.",
        ),
    ] = False,
    title_cosine: Annotated[
        bool,
        typer.Option(
            "--title-cosine",
            help="Reranker: its prior also weighs the query's cosine with each product's "
            "title (the text's first line), for texts whose title is followed by a long "
            "description; serving embeds each title once (cached).",
        ),
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
        typer.Option(
            help="Cross-validate the recipe first, by query: the reranker's in both tasks "
            "(needs `shoprank index`); the bi-encoder's in the rerank task, under the "
            "reranker's prior, against the base model. 0: skip."
        ),
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
    device: Annotated[
        str | None,
        typer.Option(
            help="Where training computes: 'auto' (a CUDA GPU when torch sees one, in "
            "bfloat16 autocast; else the CPU), 'cpu' or 'cuda'."
        ),
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

    settings = settings_with_flags()
    given: dict[str, Any] = {
        "epochs": epochs,
        "unjudged_negatives": unjudged_negatives,
        "unjudged_target": unjudged_target,
        "unjudged_depth": unjudged_depth,
        "positive_gain": positive_gain,
        "checkpoint_every": checkpoint_every,
        "device": device,
    }
    overrides = {name: value for name, value in given.items() if value is not None}
    if loss is not None:
        overrides["loss"] = loss
    if bi_encoder and unjudged_target is not None:
        raise fail("--unjudged-target is the reranker's; the bi-encoder has no targets")
    if not bi_encoder and positive_gain is not None:
        raise fail("--positive-gain chooses the bi-encoder's positives; add --bi-encoder")
    if title_cosine:
        if bi_encoder:
            raise fail("--title-cosine is the reranker prior's; drop --bi-encoder")
        overrides["title_cosine"] = True
    if prior_only:
        if bi_encoder:
            raise fail("--prior-only is the reranker's; drop --bi-encoder")
        unused = [flag for flag, value in (("--epochs", epochs), ("--loss", loss)) if value]
        if unused:
            raise fail(f"{', '.join(unused)}: the prior alone is fitted, not trained by steps")
        overrides["cross_encoder"] = False
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
                folds=folds,
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
        raise fail(str(exc)) from exc
    typer.echo(f"saved {path}")
    typer.echo(json.dumps(summary, indent=2))


@shop_options()
def compress_command(
    shop: ShopFiles,
    layers: Annotated[
        str,
        typer.Option(
            help="Teacher layers the students keep, comma-separated; 0: the prior alone, "
            "with a miss embedder for texts the index does not hold."
        ),
    ] = _comma_list(COMPRESS_DEFAULTS.layers),
    max_lengths: Annotated[
        str,
        typer.Option(help="Students' maximum pair lengths in word pieces, comma-separated."),
    ] = _comma_list(COMPRESS_DEFAULTS.max_lengths),
    embedder_max_lengths: Annotated[
        str,
        typer.Option(
            help="Shorter input lengths the bi-encoder is also tried at, comma-separated "
            "(empty: the served length only)."
        ),
    ] = _comma_list(COMPRESS_DEFAULTS.embedder_max_lengths),
    folds: Annotated[
        int, typer.Option(min=2, help="Cross-validation folds, by query.")
    ] = COMPRESS_DEFAULTS.folds,
    pseudo_queries: Annotated[
        int, typer.Option(min=0, help="Pseudo-queries cut from product titles.")
    ] = COMPRESS_DEFAULTS.pseudo_queries,
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
    embedder: Annotated[
        bool,
        typer.Option(
            "--embedder/--no-embedder",
            help="Also compress the bi-encoder (--no-embedder: the reranker only).",
        ),
    ] = True,
) -> None:
    """Compress the bi-encoder and the reranker: export, quantize, distil, gate, register
    the winners as candidates and promote them through the registry's gate.

    Pseudo-queries are cut from the catalog's titles; index that catalog first: retrieval
    finds the students' training products."""
    from ranker.compress.embedder import EmbedderReport
    from ranker.compress.job import compress_models, compress_reranker
    from ranker.errors import ShoprankError

    settings = settings_with_flags(index_dir)
    try:
        config = CompressConfig(
            layers=_int_list(layers),
            max_lengths=_int_list(max_lengths),
            embedder_max_lengths=_int_list(embedder_max_lengths),
            folds=folds,
            pseudo_queries=pseudo_queries,
        )
        work = out or settings.home / "compress"
        judgments, catalog = shop.judgments, shop.catalog_for(settings)
        embedder_report: EmbedderReport | None = None
        if embedder:
            embedder_report, report = compress_models(
                settings,
                config,
                work_dir=work,
                judgments=judgments,
                catalog=catalog,
                teacher=teacher,
                promote=promote,
            )
        else:
            report = compress_reranker(
                settings,
                config,
                work_dir=work,
                judgments=judgments,
                catalog=catalog,
                teacher=teacher,
                promote=promote,
            )
    except (OSError, ValueError, RuntimeError, ShoprankError) as exc:
        raise fail(str(exc)) from exc
    typer.echo((work / "report.md").read_text(encoding="utf-8"))
    for what, outcome in (("reranker", report), ("bi-encoder", embedder_report)):
        if outcome is None:
            continue
        if outcome.registered is None:
            typer.echo(f"{what}: nothing registered (no variant passed its gate)")
        elif outcome.promoted:
            typer.echo(f"{what}: {outcome.registered} registered and serving")
        else:
            typer.echo(
                f"{what}: {outcome.registered} registered, not promoted: {outcome.promotion_note}"
            )
