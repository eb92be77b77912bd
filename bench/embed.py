"""Bi-encoder speed: catalog embedding throughput (docs/s) and one-query latency, side by side.

The catalog run embeds the first ``--docs`` products of the sample catalog with the served
text template. The baseline is sentence-transformers at the served batch size and at the
source model's served input length (128 word pieces), so that it reads the same tokens as
shoprank's torch and ONNX rows. Two more rows: sentence-transformers as it ships
(all-MiniLM-L6-v2's own 256 word pieces, batch 32), and the bi-encoder serving loads (the
variant `shoprank compress` gated, at the input length it was gated at; see the compression
report for what that length costs in retrieval). Query latency embeds one judged query per
call.

Run: ``python -m bench.embed [--json] [--docs 1024] [--repeats 50]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_MODELS_DIR,
    ensure_variants,
    product_texts,
    quiet_libraries,
    ratio_table,
    time_calls,
    timing_dict,
)
from ranker.backends import ModelTask
from ranker.embedder import Embedder
from ranker.model_files import BASE_MODEL_NAME, resolve_model_dir
from ranker.settings import EmbedderSettings

BASELINE = "sentence-transformers torch fp32, 128 word pieces"
EmbedFn = Callable[[Sequence[str]], Any]


ST_DEFAULTS = "sentence-transformers torch fp32, as shipped (256 word pieces, batch 32)"


def _sentence_transformers(model_dir: Path, *, served_length: bool = True) -> EmbedFn:
    """sentence-transformers at the served length and batch size, or at its own defaults."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    batch_size = 32
    if served_length:
        model.max_seq_length = EmbedderSettings().max_length
        batch_size = EmbedderSettings().batch_size

    def embed(texts: Sequence[str]) -> Any:
        return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True)

    return embed


def _served() -> tuple[str, EmbedFn] | None:
    """The bi-encoder serving loads, when it is not the source model itself."""
    from ranker.loading import load_embedder
    from ranker.settings import Settings

    embedder = load_embedder(Settings())
    if embedder.backend.name == "torch":
        return None
    pieces = embedder.tokenizer.max_length
    return f"shoprank served ({embedder.identity.model_id}, {pieces} word pieces)", embedder.embed


def _ours(model_dir: Path, backend: str) -> EmbedFn:
    settings = EmbedderSettings()
    embedder = Embedder.load(
        model_dir, backend=backend, max_length=settings.max_length, batch_size=settings.batch_size
    )
    return embedder.embed


def run(
    *, docs: int = 1024, repeats: int = 50, models_dir: Path = DEFAULT_MODELS_DIR
) -> dict[str, Any]:
    """Catalog docs/s (one timed pass after a warm-up batch) and query latency per path."""
    from indexer.catalog import sample_judgments_path
    from ranker.evaluation.judgments import load_judgments

    quiet_libraries()
    base = resolve_model_dir(BASE_MODEL_NAME)
    variants = ensure_variants(BASE_MODEL_NAME, "minilm", ModelTask.EMBED, models_dir)
    texts = list(product_texts().values())[:docs]
    queries = list(load_judgments(sample_judgments_path()).queries.values())
    paths: dict[str, EmbedFn] = {
        BASELINE: _sentence_transformers(base),
        ST_DEFAULTS: _sentence_transformers(base, served_length=False),
        "shoprank torch fp32": _ours(base, "torch"),
        "shoprank onnx fp32": _ours(variants["onnx-fp32"], "onnx"),
        "shoprank onnx int8": _ours(variants["onnx-int8"], "onnx"),
    }
    served = _served()
    if served is not None:
        paths[served[0]] = served[1]
    rows: list[dict[str, Any]] = []
    for name, embed in paths.items():
        embed(texts[:64])
        start = time.perf_counter()
        embed(texts)
        seconds = time.perf_counter() - start

        def one_query(i: int, embed: EmbedFn = embed) -> Any:
            return embed([queries[i % len(queries)]])

        query = time_calls(one_query, repeats=repeats)
        rows.append(
            {
                "variant": name,
                "docs_per_s": len(texts) / seconds,
                "query_p50_ms": query.p50_ms,
                "query_p99_ms": query.p99_ms,
                "query": timing_dict(query),
            }
        )
    shipped = next(row for row in rows if row["variant"] == ST_DEFAULTS)
    for row in rows:
        row["speedup"] = row["docs_per_s"] / rows[0]["docs_per_s"]
        row["speedup_vs_shipped_st"] = row["docs_per_s"] / shipped["docs_per_s"]
    return {"task": "embed", "docs": len(texts), "rows": rows}


def render(result: dict[str, Any]) -> str:
    """The rows as a table; the speed-up column is docs/s against the baseline."""
    table = ratio_table(
        result["rows"],
        columns=[
            ("docs/s", "docs_per_s"),
            ("query p50 ms", "query_p50_ms"),
            ("query p99 ms", "query_p99_ms"),
            ("x vs ST as shipped", "speedup_vs_shipped_st"),
        ],
        baseline=BASELINE,
    )
    return f"catalog embedding: {result['docs']} product texts\n{table}"


def main() -> None:
    """Command line: print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--docs", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    args = parser.parse_args()
    from ranker.hardware import describe_machine

    result = run(docs=args.docs, repeats=args.repeats, models_dir=args.models_dir)
    if args.json:
        print(json.dumps({"machine": describe_machine(), "embed": result}, indent=2))
    else:
        print(render(result))


if __name__ == "__main__":
    main()
