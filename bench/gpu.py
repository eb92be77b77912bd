"""Rerank-50 on a CUDA GPU with torch: fp32, fp16 and bf16, each eager and through CUDA graphs.

The prepared script for a machine with a GPU: the shipped cross-encoder (the teacher) scores
each judged query with 50 product texts, at the served max length and micro-batch size,
beside sentence-transformers' CrossEncoder on the same GPU in fp32. Prints p50, p99 and
pairs/s with ratios. Where no CUDA GPU is present it says so and times nothing.

Run: ``python -m bench.gpu [--json] [--repeats 50]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from bench.common import quiet_libraries, ratio_table, time_calls, timing_dict
from bench.rerank import DEPTH, _sentence_transformers, cross_encoder, cycle, rerank_cases
from ranker.model_files import SHIPPED_RERANKER, resolve_model_dir
from ranker.settings import BackendSettings

BASELINE = "sentence-transformers torch fp32 on CUDA"
DTYPES: tuple[Literal["float32", "float16", "bfloat16"], ...] = ("float32", "float16", "bfloat16")
NO_GPU = "no CUDA GPU here: the GPU bench was not run"


def run(*, repeats: int = 50) -> dict[str, Any]:
    """Time every CUDA path on the same cases, or say why nothing was timed."""
    import torch

    if not torch.cuda.is_available():
        return {"task": "rerank-50 on CUDA", "skipped": NO_GPU}
    quiet_libraries()
    teacher = resolve_model_dir(SHIPPED_RERANKER)
    cases = rerank_cases()
    paths: dict[str, Callable[[str, Sequence[str]], Any]] = {
        BASELINE: _sentence_transformers(teacher, device="cuda"),
    }
    for dtype in DTYPES:
        for graphs in (False, True):
            config = BackendSettings(torch_cuda_dtype=dtype, torch_cuda_graphs=graphs)
            name = f"shoprank torch {dtype}" + (" + CUDA graphs" if graphs else "")
            paths[name] = cross_encoder(teacher, "torch", config=config).score
    rows: list[dict[str, Any]] = []
    for name, score in paths.items():
        timing = time_calls(cycle(score, cases), repeats=repeats)
        rows.append(
            {
                "variant": name,
                "p50_ms": timing.p50_ms,
                "p99_ms": timing.p99_ms,
                "pairs_per_s": DEPTH / (timing.p50_ms / 1e3),
                "timing": timing_dict(timing),
            }
        )
    for row in rows:
        row["speedup"] = rows[0]["p50_ms"] / row["p50_ms"]
    return {
        "task": "rerank-50 on CUDA",
        "device": torch.cuda.get_device_name(0),
        "queries": len(cases),
        "rows": rows,
    }


def render(result: dict[str, Any]) -> str:
    """The rows as a table, or the reason nothing was timed."""
    if "skipped" in result:
        return f"{result['task']}: {result['skipped']}"
    table = ratio_table(
        result["rows"],
        columns=[("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("pairs/s", "pairs_per_s")],
        baseline=BASELINE,
    )
    return f"{result['task']} on {result['device']}, {result['queries']} queries\n{table}"


def main() -> None:
    """Command line: print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    result = run(repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
