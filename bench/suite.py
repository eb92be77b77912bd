"""Both benchmarks in one process, as the summary ``shoprank bench`` prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import embed, rerank
from bench.common import DEFAULT_MODELS_DIR


def run_all(
    *, repeats: int = 20, docs: int = 1024, models_dir: Path = DEFAULT_MODELS_DIR
) -> dict[str, Any]:
    """Rerank-50 and embedding results, with the machine, its load and library versions."""
    from ranker.hardware import describe_machine

    return {
        "machine": {**describe_machine(), "load_average_before": os.getloadavg()},
        "rerank": rerank.run(repeats=repeats, models_dir=models_dir),
        "embed": embed.run(docs=docs, repeats=max(repeats, 20), models_dir=models_dir),
        "load_average_after": os.getloadavg(),
    }


def render_all(result: dict[str, Any]) -> str:
    """Both tables, headed by the machine they ran on."""
    machine = result["machine"]
    load = ", ".join(f"{x:.2f}" for x in machine["load_average_before"])
    head = (
        f"{machine['physical_cores']} physical cores ({machine['int8_preset']}), "
        f"CUDA: {machine['cuda']}, load average before: {load}"
    )
    return "\n\n".join([head, rerank.render(result["rerank"]), embed.render(result["embed"])])
