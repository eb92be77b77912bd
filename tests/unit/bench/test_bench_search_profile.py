"""The search profile bench's arithmetic: stage means and py-spy stacks by category (no
server, no timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.search_profile import categorize, stage_table, summarize_collapsed

RERANK = (
    "_bootstrap (threading.py:1002);_run (ranker/batching.py:250);"
    "infer (ranker/reranker.py:266);run_prepared (ranker/stages.py:90);"
    "infer (ranker/backends/onnx_backend.py:140);run (onnxruntime/capi/session.py:220)"
)
EMBED = (
    "_bootstrap (threading.py:1002);_run (ranker/batching.py:250);"
    "infer (ranker/embedder.py:120);forward (torch/nn/modules/module.py:1500)"
)
TOKENIZE = (
    "run (asyncio/events.py:80);search (ranker/api/routes.py:130);"
    "prepare (ranker/reranker.py:250);encode_documents (ranker/tokenization.py:70)"
)
IDLE = (
    "_bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81);"
    "wait (threading.py:320)"
)
SERIALIZE = (
    "run (asyncio/events.py:80);serialize_response (fastapi/routing.py:150);"
    "validate_python (pydantic/type_adapter.py:100)"
)


@pytest.mark.parametrize(
    ("stack", "category"),
    [
        (RERANK, "reranker inference"),
        (EMBED, "embedder inference"),
        (TOKENIZE, "tokenization"),
        (IDLE, "idle (waiting)"),
        (SERIALIZE, "JSON and pydantic"),
        ("main (x.py:1);mystery (y.py:2)", "other"),
        (
            "run (anyio/_backends/_asyncio.py:1124);product_texts (ranker/pipeline.py:290);"
            "TextTemplate.render (indexer/catalog.py:363);sub (re/__init__.py:185)",
            "product texts (template)",
        ),
        ("main (ranker/cli.py:1);Runner.run (asyncio/runners.py:118)", "idle (waiting)"),
    ],
)
def test_a_stack_counts_for_what_its_leafmost_known_frame_does(stack: str, category: str) -> None:
    assert categorize(stack) == category


def test_the_reranker_s_own_python_without_a_runtime_is_not_inference() -> None:
    assert categorize(TOKENIZE) == "tokenization"


def test_collapsed_profiles_sum_by_category_with_idle_apart(tmp_path: Path) -> None:
    profile = tmp_path / "server.txt"
    profile.write_text(f"{RERANK} 30\n{EMBED} 10\n{RERANK} 30\n{IDLE} 500\n", encoding="utf-8")

    rows = {row["category"]: row for row in summarize_collapsed(profile)}

    assert rows["reranker inference"]["samples"] == 60
    assert rows["reranker inference"]["share_of_busy"] == pytest.approx(60 / 70)
    assert rows["embedder inference"]["share_of_busy"] == pytest.approx(10 / 70)
    assert rows["idle (waiting)"]["samples"] == 500
    assert rows["idle (waiting)"]["share_of_busy"] == 0.0


def test_stage_means_and_their_share_of_the_total() -> None:
    timings = [
        {"embed_query": 4.0, "rerank": 30.0, "total": 40.0},
        {"embed_query": 6.0, "rerank": 50.0, "total": 60.0},
    ]

    rows = {row["stage"]: row for row in stage_table(timings)}

    assert rows["rerank"]["mean_ms"] == pytest.approx(40.0)
    assert rows["rerank"]["share"] == pytest.approx(0.8)
    assert rows["embed_query"]["p50_ms"] == pytest.approx(5.0)
    assert list(rows) == ["embed_query", "rerank", "total"]
