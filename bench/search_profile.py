"""Where a ``POST /search`` (rerank 50) spends its time under concurrent load, two ways.

1. ``--base-url URL`` (a running ``shoprank serve``) or ``--index-dir DIR`` (one is started,
   as configured): ``--clients`` clients post back to back for ``--seconds`` (after a
   warm-up), and the answers' own per-stage timings (``timings_ms``: validate, embed_query,
   dense, lexical, fusion, fetch, tokenize, queue, infer, prior, rerank, total) are
   averaged. Those are wall times: under load they include waiting for the cores.
2. ``--collapsed FILE``: a py-spy profile of the server (``py-spy record --format raw
   --nonblocking -p PID -o FILE``, taken while 1. runs) summed by what the sampled thread
   was doing (reranker inference, query embedding, tokenization, FAISS, BM25, SQLite, the
   dense prior, JSON and pydantic, the HTTP server and event loop ...): where the CPU goes.

Both print one table; neither is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.rerank import DEPTH, rerank_cases

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reranker inference", ("reranker.py", "cross_encoder")),
    ("embedder inference", ("embedder.py",)),
    ("tokenization", ("tokenization.py", "tokenizers")),
    ("dense prior", ("DensePrior", "catalog_vectors", "lexical_features")),
    ("FAISS", ("faiss",)),
    ("BM25", ("lexical", "bm25")),
    ("SQLite product fetch", ("sqlite", "product_store", "get_many")),
    ("JSON and pydantic", ("jsonable_encoder", "serialize_response", "pydantic", "json")),
    ("product texts (template)", ("TextTemplate.render",)),
    ("pipeline glue (Python)", ("ranker/pipeline.py", "fusion.py")),
    ("HTTP server and event loop", ("uvicorn", "h11", "httptools", "asyncio/", "starlette")),
    ("worker-thread hand-offs", ("anyio",)),
)
"""What a sampled stack was doing: the first category one of whose markers appears in the
stack's frames, read from the leaf upwards, wins (inference inside the reranker's call
counts as the reranker's)."""
INFERENCE_MARKERS = ("onnxruntime", "torch")
"""Frames of a model runtime: a stack holding one counts as its encoder's inference."""
BACKOFF_S = 0.1
"""How long a client waits after a 429 (as bench/http_load.py's do)."""
IDLE_MARKERS = (
    "wait (threading.py",
    "select (selectors.py",
    "_worker (concurrent",
    "run (asyncio/runners.py",
)
"""Leaf frames of a thread waiting for work: the event loop's own leaf is its poll for
events (its Python callbacks have frames of their own)."""


def search_bodies(depth: int = DEPTH, *, rerank: bool = True) -> list[dict[str, Any]]:
    """One ``/search`` body per judged sample query, reranking ``depth`` (or nothing: what
    the rest of the pipeline costs)."""
    if not rerank:
        return [{"query": query, "k": 10, "rerank": False} for query, _ in rerank_cases()]
    return [{"query": query, "k": 10, "rerank_depth": depth} for query, _ in rerank_cases()]


async def _load(
    base_url: str, bodies: Sequence[dict[str, Any]], *, clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` clients posting back to back; the answers' stage timings and statuses."""
    timings: list[dict[str, float]] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=300.0, limits=limits) as client:
        stop_at = time.perf_counter() + seconds

        async def one_client(first: int) -> None:
            i = first
            while time.perf_counter() < stop_at:
                response = await client.post("/search", json=bodies[i % len(bodies)])
                i += clients
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    timings.append(response.json()["timings_ms"])
                elif response.status_code == 429:
                    await asyncio.sleep(BACKOFF_S)

        began = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        wall_s = time.perf_counter() - began
    return {"timings": timings, "statuses": dict(statuses), "wall_s": wall_s}


def stage_table(timings: Sequence[dict[str, float]]) -> list[dict[str, Any]]:
    """Per stage: mean and p50 milliseconds over the answers, and the mean's share of the
    mean total."""
    stages = list(dict.fromkeys(stage for row in timings for stage in row))
    total = float(np.mean([row.get("total", 0.0) for row in timings])) if timings else 0.0
    table = []
    for stage in stages:
        values = [row[stage] for row in timings if stage in row]
        mean = float(np.mean(values))
        table.append(
            {
                "stage": stage,
                "mean_ms": mean,
                "p50_ms": float(np.percentile(values, 50)),
                "share": mean / total if total else 0.0,
            }
        )
    return table


def categorize(stack: str) -> str:
    """The category of one collapsed stack (frames joined by ``;``, root first)."""
    frames = stack.split(";")
    if any(marker in frames[-1] for marker in IDLE_MARKERS):
        return "idle (waiting)"
    runtime = any(marker in frame for frame in frames for marker in INFERENCE_MARKERS)
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                if name.endswith("inference") and not runtime:
                    continue
                return name
    return "other"


def summarize_collapsed(path: Path) -> list[dict[str, Any]]:
    """A py-spy raw profile's samples by category, busiest first (idle samples apart)."""
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[categorize(stack)] += int(count)
    busy = sum(n for name, n in counts.items() if not name.startswith("idle"))
    return [
        {
            "category": name,
            "samples": n,
            "share_of_busy": n / busy if busy and not name.startswith("idle") else 0.0,
        }
        for name, n in counts.most_common()
    ]


@contextmanager
def _server(base_url: str | None, index_dir: Path) -> Iterator[str]:
    if base_url is not None:
        yield base_url
        return
    import subprocess

    from ranker.demo import running_server
    from ranker.settings import Settings

    env = {"TOKENIZERS_PARALLELISM": "false"}
    settings = Settings(index_dir=index_dir)
    with running_server(settings, port=0, env=env, output=subprocess.DEVNULL) as url:
        yield url


def render_stages(result: dict[str, Any]) -> str:
    """The stage table as text."""
    lines = [
        f"POST /search (rerank {result['depth']}), {result['clients']} clients, "
        f"{result['seconds']:g} s: {result['req_per_s']:.1f} answered req/s, statuses "
        f"{result['statuses']}",
        f"{'stage':<14}{'mean ms':>10}{'p50 ms':>10}{'of total':>10}",
    ]
    for row in result["stages"]:
        lines.append(
            f"{row['stage']:<14}{row['mean_ms']:>10.2f}{row['p50_ms']:>10.2f}"
            f"{100 * row['share']:>9.1f}%"
        )
    return "\n".join(lines)


def render_categories(rows: Sequence[dict[str, Any]]) -> str:
    """The py-spy category table as text."""
    lines = [f"{'where the server CPU went':<30}{'samples':>9}{'of busy':>9}"]
    for row in rows:
        share = f"{100 * row['share_of_busy']:.1f}%" if row["share_of_busy"] else ""
        lines.append(f"{row['category']:<30}{row['samples']:>9}{share:>9}")
    return "\n".join(lines)


def main() -> None:
    """Command line: the stage table (load) or the category table (``--collapsed``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--index-dir", type=Path, default=Path("var/index"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--depth", type=int, default=DEPTH)
    parser.add_argument("--no-rerank", action="store_true", help="search without the rerank")
    parser.add_argument("--collapsed", type=Path, default=None, help="a py-spy raw profile")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.collapsed is not None:
        rows = summarize_collapsed(args.collapsed)
        print(json.dumps(rows, indent=2) if args.json else render_categories(rows))
        return
    bodies = search_bodies(args.depth, rerank=not args.no_rerank)
    with _server(args.base_url, args.index_dir) as base_url:
        asyncio.run(_load(base_url, bodies, clients=4, seconds=args.warmup_seconds))
        measured = asyncio.run(_load(base_url, bodies, clients=args.clients, seconds=args.seconds))
    result = {
        "depth": 0 if args.no_rerank else args.depth,
        "clients": args.clients,
        "seconds": args.seconds,
        "req_per_s": len(measured["timings"]) / measured["wall_s"],
        "statuses": measured["statuses"],
        "stages": stage_table(measured["timings"]),
    }
    print(json.dumps(result, indent=2) if args.json else render_stages(result))


if __name__ == "__main__":
    main()
