"""Rerank-50 over HTTP: ``POST /v1/rerank`` on the served models, beside the torch teacher.

Starts ``python -m ranker serve`` once per served reranker (127.0.0.1, a free port, the
index the main job built), sends each judged query with 50 product texts, and times the
round trips with one keep-alive client. The first pass over the queries meets cold caches
(product token ids; the dense prior reads the products' vectors from the index, as the
texts are the catalog's), the second warm ones, since a catalog's products recur between
queries; a third sends texts the index does not hold, each request a set no other request
sent (every text gets the request's number), so neither the index nor a cache holds them.
The baseline is sentence-transformers' CrossEncoder, torch fp32, on the teacher's weights,
called in this process (no HTTP), as the issue measures it.

``--reranker NAME=DIR`` adds a server whose reranker is that model directory (e.g. the
current student and a prior-only student side by side); ``SHOPRANK_HOME`` picks the index
and registry as for ``shoprank serve``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from bench.common import ratio_table, timing_dict
from bench.rerank import DEPTH, _sentence_transformers, cycle, rerank_cases
from ranker.compress.timing import time_calls

BASELINE = "sentence-transformers torch fp32 teacher (in process)"


@contextmanager
def served(env_overrides: Mapping[str, str]) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """A ``shoprank serve`` process with these settings (its log discarded), stopped by PID."""
    from ranker.demo import running_server
    from ranker.settings import Settings

    env = {"TOKENIZERS_PARALLELISM": "false", **env_overrides}
    with (
        running_server(Settings(), port=0, env=env, output=subprocess.DEVNULL) as base_url,
        httpx.Client(base_url=base_url, timeout=60.0) as client,
    ):
        yield client, client.get("/healthz").json()


def _http_passes(client: httpx.Client, cases: list[tuple[str, list[str]]]) -> dict[str, Any]:
    """Time one cold pass over every case, then one warm pass; then one pass over texts the
    index does not hold (each product text with a suffix), which the prior must embed."""

    def caller(texts: list[tuple[str, list[str]]]) -> Callable[[int], None]:
        def call(i: int) -> None:
            query, documents = texts[i % len(texts)]
            response = client.post("/v1/rerank", json={"query": query, "documents": documents})
            response.raise_for_status()

        return call

    cold = time_calls(caller(cases), repeats=len(cases), warmup=0)
    warm = time_calls(caller(cases), repeats=len(cases), warmup=0)
    new_texts = time_calls(_unindexed_caller(client, cases), repeats=len(cases), warmup=0)
    return {
        "cold": timing_dict(cold),
        "warm": timing_dict(warm),
        "texts not in the index": timing_dict(new_texts),
    }


def _unindexed_caller(
    client: httpx.Client, cases: list[tuple[str, list[str]]]
) -> Callable[[int], None]:
    """Call ``i`` sends case ``i``'s texts, each marked with ``i``: texts the index does not
    hold and no earlier request sent."""

    def call(i: int) -> None:
        query, texts = cases[i % len(cases)]
        documents = [f"{text} (listing {i})" for text in texts]
        response = client.post("/v1/rerank", json={"query": query, "documents": documents})
        response.raise_for_status()

    return call


def run(
    *,
    baseline_repeats: int = 10,
    rerankers: Mapping[str, str] | None = None,
    defaults: bool = True,
) -> dict[str, Any]:
    """The baseline in process, then the served default and the served teacher (unless not
    ``defaults``) and each of ``rerankers`` (name -> model directory) over HTTP."""
    from ranker.loading import reranker_dir
    from ranker.settings import Settings

    cases = rerank_cases()
    settings = Settings()
    teacher_settings = settings.model_copy(
        update={"rerank": settings.rerank.model_copy(update={"compressed": False})}
    )
    teacher = reranker_dir(teacher_settings)
    baseline = time_calls(
        cycle(_sentence_transformers(teacher), cases), repeats=baseline_repeats, warmup=1
    )
    rows: list[dict[str, Any]] = [
        {"variant": BASELINE, **timing_dict(baseline), "pairs_per_s": DEPTH / baseline.p50_ms * 1e3}
    ]
    paths: dict[str, dict[str, str]] = (
        {
            "served default over HTTP": {},
            "served teacher over HTTP": {"SHOPRANK_RERANK__COMPRESSED": "false"},
        }
        if defaults
        else {}
    )
    for name, model_dir in (rerankers or {}).items():
        paths[f"{name} over HTTP"] = {"SHOPRANK_RERANK__MODEL": model_dir}
    models: dict[str, str] = {}
    for name, overrides in paths.items():
        with served(overrides) as (client, health):
            models[name] = f"{health['reranker']} on {health['backend'].get('reranker')}"
            passes = _http_passes(client, cases)
        for phase, timing in passes.items():
            label = f"caches {phase}" if phase in ("cold", "warm") else phase
            rows.append(
                {
                    "variant": f"{name}, {label}",
                    **timing,
                    "pairs_per_s": DEPTH / timing["p50_ms"] * 1e3,
                }
            )
    for row in rows:
        row["speedup"] = rows[0]["p50_ms"] / row["p50_ms"]
    return {
        "task": f"rerank-{DEPTH} over HTTP",
        "queries": len(cases),
        "rows": rows,
        "models": models,
    }


def render(result: dict[str, Any]) -> str:
    """The rows as a table with ratios against the baseline."""
    table = ratio_table(
        result["rows"],
        columns=[("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("pairs/s", "pairs_per_s")],
        baseline=BASELINE,
    )
    served = "; ".join(f"{name}: {model}" for name, model in result["models"].items())
    return (
        f"{result['task']}: {result['queries']} queries, one pass cold, one warm, one over "
        f"texts the index does not hold\n{table}\n{served}"
    )


def main() -> None:
    """Command line: print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--baseline-repeats", type=int, default=10)
    parser.add_argument(
        "--reranker",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also serve this reranker model directory (repeatable)",
    )
    parser.add_argument(
        "--only-given",
        action="store_true",
        help="serve only the --reranker directories, not the default and the teacher",
    )
    args = parser.parse_args()
    rerankers = dict(item.split("=", 1) for item in args.reranker)
    result = run(
        baseline_repeats=args.baseline_repeats,
        rerankers=rerankers,
        defaults=not args.only_given,
    )
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
