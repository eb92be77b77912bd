"""Comparison reports: a Markdown and a terminal table of systems, and an NDCG@10 bar chart."""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from indexer.stores.atomic import atomic_write_bytes
from ranker.evaluation.bootstrap import PairedDifference
from ranker.evaluation.metrics import CONDENSED_NDCG_AT_10, MRR, NDCG_AT_10, RECALL_AT_100

logger = logging.getLogger(__name__)

TASK_RERANK = "rerank"
TASK_RETRIEVAL = "retrieval"
TASKS = (TASK_RERANK, TASK_RETRIEVAL)

REPORT_FILE = "report.md"
CHART_FILE = "ndcg.png"
MISSING = "–"

_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # header, task, metric
    ("rerank NDCG@10", TASK_RERANK, NDCG_AT_10),
    ("retrieval NDCG@10", TASK_RETRIEVAL, NDCG_AT_10),
    ("retrieval condensed NDCG@10", TASK_RETRIEVAL, CONDENSED_NDCG_AT_10),
    ("retrieval Recall@100", TASK_RETRIEVAL, RECALL_AT_100),
    ("retrieval MRR", TASK_RETRIEVAL, MRR),
)
PAIRED_NOTE = (
    "Paired bootstrap: per-query differences of the two systems on the same queries, their "
    "mean and its 95 % interval over 10,000 resamples of the queries. An interval that "
    "excludes 0 is a difference this many queries can tell apart."
)
_TASK_COLORS = {TASK_RERANK: "#4C72B0", TASK_RETRIEVAL: "#DD8452"}


@dataclass(frozen=True)
class SystemResult:
    """One system's metric means on one task."""

    name: str
    task: str
    """``"rerank"`` or ``"retrieval"``."""
    means: dict[str, float]
    """Metric name -> mean, as in :attr:`EvalResult.means`."""
    note: str = ""
    """How it was measured, e.g. ``"5-fold CV"``."""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Metric name -> 95 % bootstrap interval of its mean over queries, where measured."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not self.name.strip():
            raise ValueError("system name must not be empty")


@dataclass(frozen=True)
class Comparison:
    """Two systems scored on the same queries: the paired difference of one metric."""

    system: str
    baseline: str
    task: str
    metric: str
    difference: PairedDifference
    note: str = ""

    def describe(self) -> str:
        """One line: which systems, the mean difference and its interval, the queries."""
        low, high = self.difference.interval
        return (
            f"{self.system} - {self.baseline}, {self.task} {self.metric}: "
            f"{self.difference.mean:+.4f} [{low:+.3f}, {high:+.3f}] over "
            f"{self.difference.queries} queries"
        )


def comparisons_markdown(comparisons: Sequence[Comparison]) -> str:
    """A Markdown table of paired differences (empty without comparisons)."""
    if not comparisons:
        return ""
    header = ["system", "against", "task", "metric", "mean difference [95 %]", "queries", "note"]
    lines = [_md_line(header), _md_line(["---", "---", "---", "---", "---:", "---:", "---"])]
    for c in comparisons:
        low, high = c.difference.interval
        cells = [c.system, c.baseline, c.task, c.metric]
        cells += [f"{c.difference.mean:+.4f} [{low:+.3f}, {high:+.3f}]"]
        lines.append(_md_line([*cells, str(c.difference.queries), c.note]))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Row:
    name: str
    cells: list[str]
    note: str


def markdown_table(results: Sequence[SystemResult]) -> str:
    """A Markdown table, one row per system name (its rerank and retrieval results merged).

    Columns: system | rerank NDCG@10 | retrieval NDCG@10 | retrieval condensed NDCG@10 |
    retrieval Recall@100 | retrieval MRR | note. Values have four decimals, followed by
    their bootstrap interval in brackets where the result has one; a missing value is "–".

    Raises:
        ValueError: a (system, task) pair repeats.
    """
    header = ["system", *(title for title, _, _ in _COLUMNS), "note"]
    lines = [_md_line(header), _md_line(["---", *("---:" for _ in _COLUMNS), "---"])]
    lines += [_md_line([row.name, *row.cells, row.note]) for row in _rows(results)]
    return "\n".join(lines) + "\n"


def text_table(results: Sequence[SystemResult]) -> str:
    """The same table as :func:`markdown_table`, as aligned plain text for a terminal."""
    header = ["system", *(title for title, _, _ in _COLUMNS), "note"]
    body = [[row.name, *row.cells, row.note] for row in _rows(results)]
    widths = [max(len(line[col]) for line in [header, *body]) for col in range(len(header))]
    numeric = range(1, len(_COLUMNS) + 1)

    def render(cells: list[str]) -> str:
        parts = [
            cell.rjust(width) if col in numeric else cell.ljust(width)
            for col, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in body)]) + "\n"


def write_report(
    results: Sequence[SystemResult],
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    preamble: str = "",
    comparisons: Sequence[Comparison] = (),
) -> tuple[Path, Path]:
    """Write ``report.md`` (title, preamble, table, paired comparisons, chart link) and
    ``ndcg.png`` to ``out_dir``.

    The chart groups NDCG@10 bars by system, one bar per task, each labelled with its value.
    Both files are written atomically; ``out_dir`` is created if needed.

    Returns:
        The paths of the Markdown report and of the PNG chart.

    Raises:
        ValueError: ``results`` is empty or a (system, task) pair repeats.
    """
    if not results:
        raise ValueError("no results to report")
    out = Path(out_dir)
    table = markdown_table(results)
    parts = [f"# {title}", preamble.strip(), table.rstrip()]
    if comparisons:
        parts.append(PAIRED_NOTE + "\n\n" + comparisons_markdown(comparisons).rstrip())
    parts.append(f"NDCG@10 by system and task: `{CHART_FILE}`\n\n![NDCG@10]({CHART_FILE})")
    markdown = "\n\n".join(part for part in parts if part) + "\n"

    md_path, png_path = out / REPORT_FILE, out / CHART_FILE
    atomic_write_bytes(png_path, _ndcg_chart(results, title=title))
    atomic_write_bytes(md_path, markdown.encode("utf-8"))
    logger.info("wrote report for %d results to %s", len(results), out)
    return md_path, png_path


def _rows(results: Sequence[SystemResult]) -> list[_Row]:
    by_system = _group(results)
    rows = []
    for name, by_task in by_system.items():
        cells = []
        for _, task, metric in _COLUMNS:
            result = by_task.get(task)
            value = None if result is None else result.means.get(metric)
            interval = None if result is None else result.intervals.get(metric)
            cells.append(_format(value, interval))
        notes = dict.fromkeys(result.note for result in by_task.values() if result.note)
        rows.append(_Row(name=name, cells=cells, note="; ".join(notes)))
    return rows


def _group(results: Sequence[SystemResult]) -> dict[str, dict[str, SystemResult]]:
    by_system: dict[str, dict[str, SystemResult]] = {}
    for result in results:
        by_task = by_system.setdefault(result.name, {})
        if result.task in by_task:
            raise ValueError(f"system {result.name!r} has two {result.task} results")
        by_task[result.task] = result
    return by_system


def _format(value: float | None, interval: tuple[float, float] | None = None) -> str:
    if value is None or math.isnan(value):
        return MISSING
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _md_line(cells: Sequence[str]) -> str:
    escaped = (cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
    return "| " + " | ".join(escaped) + " |"


def _ndcg_chart(results: Sequence[SystemResult], *, title: str) -> bytes:
    """PNG bytes of a grouped bar chart: NDCG@10 per system, one bar per task."""
    # Imported here: matplotlib is slow to import and only reports need it. Figure with the
    # Agg canvas needs no display and leaves pyplot's global state alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_system = _group(results)
    names = list(by_system)
    width = 0.38
    fig = Figure(figsize=(max(6.0, 1.6 * len(names) + 2.5), 4.5), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for offset, task in zip((-width / 2, width / 2), TASKS, strict=True):
        xs: list[float] = []
        ys: list[float] = []
        for index, name in enumerate(names):
            result = by_system[name].get(task)
            value = None if result is None else result.means.get(NDCG_AT_10)
            if value is None or math.isnan(value):
                ax.text(index + offset, 0.01, "n/a", ha="center", va="bottom", fontsize=8)
                continue
            xs.append(index + offset)
            ys.append(value)
        bars = ax.bar(xs, ys, width, label=task, color=_TASK_COLORS[task])
        ax.bar_label(bars, fmt="%.3f", padding=2, fontsize=8)
    crowded = len(names) > 4
    ax.set_xticks(range(len(names)), names)
    if crowded:
        ax.tick_params(axis="x", labelrotation=20)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    ax.set_ylim(0.0, 1.1)
    ax.set_ylabel("NDCG@10")
    ax.set_title(title)
    ax.legend(title="task", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
