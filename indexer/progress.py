"""Progress bars that suit where they are written: redrawn in place on a terminal; in a log
file or a worker's log (stderr not a terminal), one plain line every ``LOG_INTERVAL_S`` at
most, instead of one per update."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

LOG_INTERVAL_S = 20.0
"""Seconds between progress lines when stderr is not a terminal (three a minute)."""


def _on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable: Iterable[T] | None = None, **options: Any) -> tqdm[T]:
    """``tqdm(iterable, **options)``, throttled to a line every ``LOG_INTERVAL_S`` (plain
    ASCII) when stderr is not a terminal."""
    if not _on_terminal():
        options = {
            "mininterval": LOG_INTERVAL_S,
            "maxinterval": LOG_INTERVAL_S,
            "ascii": True,
            **options,
        }
    bar: tqdm[T] = tqdm(iterable, **options)
    return bar
