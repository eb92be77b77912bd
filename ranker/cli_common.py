"""What the ``shoprank`` command modules share: the index and reranker options, settings
with command-line flags on top, and the error exit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ranker.settings import Settings, get_settings

IndexDirOption = Annotated[
    Path | None, typer.Option("--index-dir", help="Index directory (default: var/index).")
]
RerankerOption = Annotated[
    Path | None,
    typer.Option("--reranker", help="Reranker model directory (default: trained, else shipped)."),
]


def settings_with_flags(index_dir: Path | None = None, reranker: Path | None = None) -> Settings:
    """Settings from the environment, with command-line flags on top."""
    settings = get_settings()
    updates: dict[str, object] = {}
    if index_dir is not None:
        updates["index_dir"] = index_dir
    if reranker is not None:
        updates["rerank"] = settings.rerank.model_copy(update={"model": str(reranker)})
    return settings.model_copy(update=updates) if updates else settings


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red to stderr; the exit (code 2) for the caller to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)
