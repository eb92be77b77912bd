"""The report step: every variant side by side (``report.md``), latency against NDCG@10
(``report.png``) and the figures (``report.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.stores.atomic import atomic_write_bytes
from ranker.compress.embedder import EmbedderReport, embedder_table, read_embedder_report
from ranker.compress.records import (
    RERANK_DEPTH,
    TEACHER,
    CompressionReport,
    outcome_line,
    read_json,
)


def report_step(
    out_dir: Path,
    *,
    gate: Path,
    max_ndcg_drop: float,
    embedder: Path | None = None,
    registered: str | None = None,
    promoted: bool = False,
    promotion_note: str = "",
    seconds: float = 0.0,
) -> Path:
    """:func:`write_report` from the gate step's ``gate.json`` and what became of its choice
    (``registered``: ``reranker/v3``); ``embedder``: the bi-encoder step's report."""
    report = CompressionReport.from_dict(read_json(gate))
    report.registered, report.promoted = registered, promoted
    report.promotion_note, report.seconds = promotion_note, seconds
    embedder_report = read_embedder_report(embedder) if embedder is not None else None
    return write_report(report, out_dir, max_ndcg_drop=max_ndcg_drop, embedder=embedder_report)


def write_report(
    report: CompressionReport,
    out_dir: Path,
    *,
    max_ndcg_drop: float,
    embedder: EmbedderReport | None = None,
) -> Path:
    """``report.md``, ``report.png`` and ``report.json`` in ``out_dir``; the bi-encoder's
    variants follow the reranker's when ``embedder`` is given."""
    base = report.variants[0]
    lines = [
        "# shoprank compression report",
        "",
        f"Teacher: {report.teacher}. Rerank-{RERANK_DEPTH} latency on this machine; NDCG@10 "
        f"on the rerank task, {report.folds}-fold cross-validated by query (each student "
        "scores only queries it never trained on; the teacher's row is on the same "
        "queries, in-sample if it was trained on them, and the gate below names the "
        "figure it holds students to). Timings: the served scoring, dense "
        "prior included (query embedded by the served bi-encoder, products' vectors read "
        "from the index), one query's judged products per call, caches cold.",
        f"Gate: NDCG@10 ≥ {report.gate_value:.4f} ({report.gate_basis}) − {max_ndcg_drop} = "
        f"{report.gate_value - max_ndcg_drop:.4f}.",
        "",
        "| variant | size (MB) | p50 (ms) | p99 (ms) | pairs/s | speed-up | NDCG@10 | gate "
        "| note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for v in report.variants:
        gate = "teacher" if v.name == TEACHER else ("pass" if v.passes else "fail")
        if v.name == report.served:
            gate += " (served)" if report.promoted else " (chosen)"
        ndcg = f"{v.cv_ndcg:.4f}" if v.cv_ndcg is not None else "–"
        if v.path is None:
            lines.append(f"| {v.name} | – | – | – | – | – | {ndcg} | {gate} | {v.note} |")
            continue
        lines.append(
            f"| {v.name} | {v.size_mb:.1f} | {v.p50_ms:.1f} | {v.p99_ms:.1f} | "
            f"{v.pairs_per_s:.0f} | {base.p50_ms / v.p50_ms:.1f}× | {ndcg} | {gate} | {v.note} |"
        )
    outcome = outcome_line(
        report.served,
        registered=report.registered,
        promoted=report.promoted,
        note=report.promotion_note,
        nothing="no student passed",
    )
    lines += ["", outcome, ""]
    lines.append("![latency against NDCG@10](report.png)")
    if embedder is not None:
        lines += ["", *embedder_table(embedder)]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "report.md", ("\n".join(lines) + "\n").encode())
    document = {**report.as_dict(), "embedder": embedder.as_dict() if embedder else None}
    atomic_write_bytes(out_dir / "report.json", json.dumps(document, indent=2).encode())
    atomic_write_bytes(out_dir / "report.png", _chart(report, max_ndcg_drop))
    return out_dir / "report.md"


def _chart(report: CompressionReport, max_ndcg_drop: float) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for v in report.variants:
        if v.cv_ndcg is None:
            continue
        axes.scatter(v.p50_ms, v.cv_ndcg, color="tab:green" if v.passes else "tab:red")
        axes.annotate(
            v.name, (v.p50_ms, v.cv_ndcg), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
    axes.axhline(report.gate_value - max_ndcg_drop, linestyle="--", color="gray", label="gate")
    axes.set_xscale("log")
    axes.set_xlabel(f"rerank-{RERANK_DEPTH} p50 (ms, log scale)")
    axes.set_ylabel("NDCG@10 (rerank task, cross-validated)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return buffer.getvalue()
