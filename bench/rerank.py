"""Rerank-50: latency (p50, p99) and pairs/s of the cross-encoder on each path, side by side.

Each call reranks one judged query's 50 products (its judged ones, topped up with other
catalog products), as the served pipeline does after retrieval. The cross-encoder alone is
compared on every path; the served rows add the bi-encoder prior (int8 too), with product
caches cold (cleared before every call) and warm (products seen before).

Run: ``python -m bench.rerank [--json] [--repeats 20]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DEFAULT_MODELS_DIR,
    ensure_variants,
    product_texts,
    quiet_libraries,
    ratio_table,
    time_calls,
    timing_dict,
)
from ranker.backends import ModelTask, load_backend
from ranker.embedder import Embedder
from ranker.model_files import BASE_MODEL_NAME, SHIPPED_RERANKER, model_id, resolve_model_dir
from ranker.reranker import Reranker
from ranker.settings import ApiSettings, BackendSettings, RerankSettings
from ranker.tokenization import PairTokenizer

logger = logging.getLogger(__name__)

DEPTH = 50
BASELINE = "sentence-transformers torch fp32"
Case = tuple[str, list[str]]


def cycle(score: Callable[[str, Sequence[str]], Any], cases: list[Case]) -> Callable[[int], Any]:
    """Call ``i`` scores case ``i`` (cycling), so repeats see different queries."""

    def call(i: int) -> Any:
        query, documents = cases[i % len(cases)]
        return score(query, documents)

    return call


def rerank_cases(depth: int = DEPTH, *, seed: int = 13) -> list[Case]:
    """Each judged query with ``depth`` product texts: its judged products, then others."""
    from indexer.catalog import sample_judgments_path
    from ranker.evaluation.judgments import load_judgments

    texts = product_texts()
    judgments = load_judgments(sample_judgments_path())
    rng = random.Random(seed)
    all_ids = sorted(texts)
    cases = []
    for qid, query in judgments.queries.items():
        ids = [pid for pid in judgments.qrels[qid] if pid in texts][:depth]
        while len(ids) < depth:
            extra = rng.choice(all_ids)
            if extra not in ids:
                ids.append(extra)
        cases.append((query, [texts[pid] for pid in ids]))
    return cases


def cross_encoder(
    model_dir: Path,
    backend: str,
    *,
    batch_size: int | None = None,
    config: BackendSettings | None = None,
) -> Reranker:
    """The served Reranker around ``model_dir`` without its prior: the cross-encoder alone."""
    settings = RerankSettings()
    return Reranker(
        tokenizer=PairTokenizer.from_model_dir(model_dir, max_length=settings.max_length),
        backend=load_backend(
            backend, model_dir, task=ModelTask.SCORE, config=config or BackendSettings()
        ),
        model_id=model_id(model_dir),
        weights_sha256="-",
        batch_size=batch_size or settings.batch_size,
        max_query_tokens=ApiSettings().max_query_tokens,
    )


def _sentence_transformers(
    model_dir: Path, *, device: str = "cpu"
) -> Callable[[str, Sequence[str]], Any]:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(
        str(model_dir),
        device=device,
        max_length=RerankSettings().max_length,
        # The shipped weights are float16; the baseline is the fp32 teacher.
        model_kwargs={"dtype": torch.float32},
    )

    def score(query: str, documents: Sequence[str]) -> Any:
        pairs = [(query, document) for document in documents]
        return model.predict(pairs, batch_size=RerankSettings().batch_size)

    return score


def run(
    *, repeats: int = 20, models_dir: Path = DEFAULT_MODELS_DIR, sweep: bool = True
) -> dict[str, Any]:
    """Time every path on the same cases; returns rows with ratios against the baseline."""
    quiet_libraries()
    teacher = resolve_model_dir(SHIPPED_RERANKER)
    ce = ensure_variants(SHIPPED_RERANKER, "esci-minilm-ce", ModelTask.SCORE, models_dir)
    bi = ensure_variants(BASE_MODEL_NAME, "minilm", ModelTask.EMBED, models_dir)
    cases = rerank_cases()
    paths: dict[str, Callable[[str, Sequence[str]], Any]] = {
        BASELINE: _sentence_transformers(teacher),
        "shoprank torch fp32": cross_encoder(teacher, "torch").score,
        "shoprank onnx fp32": cross_encoder(ce["onnx-fp32"], "onnx").score,
        "shoprank onnx int8": cross_encoder(ce["onnx-int8"], "onnx").score,
    }
    served = Reranker.load(
        ce["onnx-int8"],
        backend="onnx",
        embedder=Embedder.load(bi["onnx-int8"], backend="onnx"),
        token_cache_size=RerankSettings().token_cache_size,
        prior_cache_size=RerankSettings().prior_cache_size,
    )

    def served_cold(query: str, documents: Sequence[str]) -> Any:
        served.tokenizer.document_cache.clear()
        if served.prior is not None:
            served.prior.cache.clear()
        return served.score(query, documents)

    warmed = False

    def served_warm(query: str, documents: Sequence[str]) -> Any:
        # The first (untimed warm-up) call scores every case once, so the timed calls find
        # every product's token ids and prior vector cached.
        nonlocal warmed
        if not warmed:
            for case_query, case_documents in cases:
                served.score(case_query, case_documents)
            warmed = True
        return served.score(query, documents)

    paths["served onnx int8 + int8 prior, caches cold"] = served_cold
    paths["served onnx int8 + int8 prior, caches warm"] = served_warm
    rows: list[dict[str, Any]] = []
    for name, score in paths.items():
        timing = time_calls(cycle(score, cases), repeats=repeats)
        rows.append(
            {"variant": name, **timing_dict(timing), "pairs_per_s": DEPTH / timing.p50_ms * 1e3}
        )
    base = rows[0]["p50_ms"]
    for row in rows:
        row["speedup"] = base / row["p50_ms"]
    tokens = cross_encoder(teacher, "torch").tokenizer
    lengths = [len(e.ids) for q, docs in cases for e in tokens.encode_pairs(q, docs)]
    result: dict[str, Any] = {
        "task": f"rerank-{DEPTH}",
        "queries": len(cases),
        "mean_tokens_per_pair": float(np.mean(lengths)),
        "max_length": RerankSettings().max_length,
        "rows": rows,
    }
    if sweep:
        result["batch_size_sweep"] = batch_size_sweep(ce["onnx-int8"], cases, repeats=repeats)
    return result


def batch_size_sweep(model_dir: Path, cases: list[Case], *, repeats: int) -> dict[str, float]:
    """Rerank-50 p50 (ms) of one path at several micro-batch sizes."""
    sweep = {}
    for size in (8, 16, 32, DEPTH):
        reranker = cross_encoder(model_dir, "onnx", batch_size=size)
        timing = time_calls(cycle(reranker.score, cases), repeats=repeats)
        sweep[str(size)] = timing.p50_ms
    return sweep


def render(result: dict[str, Any]) -> str:
    """The rows as a table, with the batch-size sweep under it."""
    table = ratio_table(
        result["rows"],
        columns=[("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("pairs/s", "pairs_per_s")],
        baseline=BASELINE,
    )
    lines = [
        f"{result['task']}: {result['queries']} queries, "
        f"{result['mean_tokens_per_pair']:.0f} tokens per pair on average "
        f"(max_length {result['max_length']})",
        table,
    ]
    if "batch_size_sweep" in result:
        sweep = ", ".join(f"{k}: {v:.1f} ms" for k, v in result["batch_size_sweep"].items())
        lines.append(f"onnx int8 p50 by micro-batch size: {sweep}")
    return "\n".join(lines)


def main() -> None:
    """Command line: print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    args = parser.parse_args()
    from ranker.hardware import describe_machine

    result = run(repeats=args.repeats, models_dir=args.models_dir)
    if args.json:
        print(json.dumps({"machine": describe_machine(), "rerank": result}, indent=2))
    else:
        print(render(result))


if __name__ == "__main__":
    main()
