"""Reranker training steps on a CUDA GPU (bfloat16 autocast) beside the CPU, same recipe.

The prepared script for a machine with a GPU: the cross-encoder with its dense prior, from
MiniLM, on the ESCI sample judgments, ``--steps`` steps each on the CPU and on CUDA
(``device`` ``cpu`` and ``cuda`` of the training config), no early stop. Prints steps/s with
the ratio, and the validation NDCG@10 each run kept and what its cross-encoder adds over
its prior there, so a GPU run that trains worse shows. Where no CUDA GPU is present it
says so and trains nothing.

Run: ``python -m bench.gpu_training [--json] [--steps 200]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import quiet_libraries, ratio_table

BASELINE = "cpu, float32"
NO_GPU = "no CUDA GPU here: the GPU training bench was not run"


def run(*, steps: int = 200) -> dict[str, Any]:
    """Train the same recipe on each device and time it, or say why nothing ran."""
    import torch

    task = f"reranker training, {steps} steps of 16 pairs"
    if not torch.cuda.is_available():
        return {"task": task, "skipped": NO_GPU}
    quiet_libraries()
    from ranker.loading import load_embedder, uncompressed
    from ranker.settings import Settings
    from ranker.training.cross_encoder import CrossEncoderConfig, train_cross_encoder
    from ranker.training.device import TrainingDevice
    from ranker.training.jobs import load_training_data
    from ranker.training.reranker_pairs import dense_priors

    settings = uncompressed(Settings())
    data = load_training_data(settings)
    priors = dense_priors(load_embedder(settings), data.judgments, data.product_texts)
    rows: list[dict[str, Any]] = []
    devices: tuple[tuple[TrainingDevice, str], ...] = (
        ("cpu", BASELINE),
        ("cuda", "cuda, bfloat16 autocast"),
    )
    for device, label in devices:
        config = CrossEncoderConfig(device=device, patience=steps, evals_per_epoch=1)
        started = time.perf_counter()
        result = train_cross_encoder(
            data.judgments,
            data.product_texts,
            config,
            priors=priors,
            max_steps=steps,
            progress=False,
        )
        seconds = time.perf_counter() - started
        over = result.over_prior
        rows.append(
            {
                "variant": label,
                "seconds": seconds,
                "steps_per_s": steps / seconds,
                "validation_ndcg": f"{result.best_validation_ndcg:.4f}",
                "over_prior": "" if over is None else f"{over.mean:+.4f}",
            }
        )
    for row in rows:
        row["speedup"] = row["steps_per_s"] / rows[0]["steps_per_s"]
    return {"task": task, "device": torch.cuda.get_device_name(0), "rows": rows}


def render(result: dict[str, Any]) -> str:
    """The rows as a table, or the reason nothing ran."""
    if "skipped" in result:
        return f"{result['task']}: {result['skipped']}"
    table = ratio_table(
        result["rows"],
        columns=[
            ("s (incl. evaluations)", "seconds"),
            ("steps/s", "steps_per_s"),
            ("validation NDCG@10", "validation_ndcg"),
            ("CE over prior", "over_prior"),
        ],
        baseline=BASELINE,
    )
    return f"{result['task']} on {result['device']}\n{table}"


def main() -> None:
    """Command line: print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    result = run(steps=args.steps)
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
