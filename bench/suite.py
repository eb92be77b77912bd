"""The benchmarks in one process, as the summary ``shoprank bench`` prints.

Rerank-50 and embedding always; indexing throughput (``bench.index``: the embedded build
against OpenSearch bulk, which needs a dev node or a cluster) only when asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import embed, rerank
from bench import index as index_bench
from bench.common import DEFAULT_MODELS_DIR


def run_all(
    *,
    repeats: int = 20,
    docs: int = 1024,
    models_dir: Path = DEFAULT_MODELS_DIR,
    index: bool = False,
    index_docs: int | None = index_bench.DEFAULT_DOCS,
    opensearch_url: str | None = None,
) -> dict[str, Any]:
    """Rerank-50 and embedding results, with the machine, its load and library versions.

    ``index``: also indexing throughput on ``index_docs`` products (None: all), into a dev
    node the bench starts, or the cluster at ``opensearch_url``.
    """
    from ranker.hardware import describe_machine

    result: dict[str, Any] = {
        "machine": {**describe_machine(), "load_average_before": os.getloadavg()},
        "rerank": rerank.run(repeats=repeats, models_dir=models_dir),
        "embed": embed.run(docs=docs, repeats=max(repeats, 20), models_dir=models_dir),
    }
    if index:
        result["index"] = index_bench.run(docs=index_docs, opensearch_url=opensearch_url)
    result["load_average_after"] = os.getloadavg()
    return result


def render_all(result: dict[str, Any]) -> str:
    """Both tables, headed by the machine they ran on."""
    machine = result["machine"]
    load = ", ".join(f"{x:.2f}" for x in machine["load_average_before"])
    head = (
        f"{machine['physical_cores']} physical cores ({machine['int8_preset']}), "
        f"CUDA: {machine['cuda']}, load average before: {load}"
    )
    parts = [head, rerank.render(result["rerank"]), embed.render(result["embed"])]
    if "index" in result:
        parts.append(index_bench.render(result["index"]))
    return "\n\n".join(parts)
