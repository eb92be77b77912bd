"""Benchmarks that print side-by-side ratios (not tests; nothing here gates on a time).

- ``python -m bench.rerank``: rerank-50 latency (p50, p99) and pairs/s.
- ``python -m bench.embed``: catalog embedding throughput (docs/s) and query latency.
- ``python -m bench.index``: indexing throughput (docs/s), the embedded build against
  OpenSearch bulk (a dev node, or ``--opensearch-url``).
- ``shoprank bench [--json] [--index]``: rerank and embed (and indexing), as one summary.

Each compares sentence-transformers torch fp32 (the baseline), shoprank's torch backend, and
ONNX Runtime fp32 and int8 exports, in one process on the same inputs, after warm-up. The
exports are made once into ``var/bench-models`` (export and quantization with their parity
checks) and reused.
"""
