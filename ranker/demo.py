"""The main job: index the sample catalog, serve it, query it over HTTP, show the evaluation."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from indexer.catalog import sample_catalog_path
from indexer.jobs import read_index_manifest
from indexer.stores.base import StoreError
from ranker.compress.job import CompressConfig
from ranker.compress.records import outcome_line
from ranker.evaluation.report import text_table
from ranker.evaluation.suite import run_evaluation
from ranker.loading import build_default_index, teacher_dir
from ranker.model_files import model_id, read_manifest
from ranker.serving_models import serving_source
from ranker.settings import Settings

logger = logging.getLogger(__name__)

EXAMPLE_QUERIES = ("wireless mouse for laptop", "%100 silicone not clear", "kindle paperwhite")
STARTUP_TIMEOUT_SECONDS = 300.0
DEMO_COMPRESSION = CompressConfig(layers=(0, 1), max_lengths=(40,))
"""The student shapes the main job distils when none is gated: the prior alone with a miss
embedder (0 layers), and the fastest transformer shape that passed the gate in the full
`shoprank compress` run (docs/compression.md); the gate serves the faster that passes."""


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_server(
    settings: Settings,
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    output: int | IO[bytes] | None = None,
) -> Iterator[str]:
    """Start ``shoprank serve`` in a child process; stop it (by its PID) on exit.

    ``env`` adds environment variables (settings) for the child; ``output`` takes its
    stdout and stderr (default: this process's).
    """
    host = "127.0.0.1"
    port = port or free_port(host)
    command = [
        sys.executable,
        "-m",
        "ranker",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--index-dir",
        str(settings.index_path),
    ]
    if settings.rerank.model is not None:
        command += ["--reranker", str(settings.rerank.model)]
    child = subprocess.Popen(
        command,
        env={**os.environ, **env} if env else None,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )
    base_url = f"http://{host}:{port}"
    try:
        _wait_healthy(base_url, child)
        yield base_url
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_healthy(base_url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the server exited with code {child.returncode} while starting")
        try:
            health = httpx.get(f"{base_url}/healthz", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            time.sleep(0.5)
            continue
        if health.get("status") == "ok":
            return
        raise RuntimeError(f"the server started without everything it needs: {health}")
    raise RuntimeError(f"the server did not answer within {STARTUP_TIMEOUT_SECONDS:.0f} s")


def _ensure_index(settings: Settings) -> None:
    try:
        manifest = read_index_manifest(settings.index_path)
        _say(
            f"index: {settings.index_path} "
            f"({manifest['count']} products, built {manifest['built_at']})"
        )
        return
    except StoreError:
        pass
    _say(f"index: building {settings.index_path} from the sample catalog ...")
    start = time.perf_counter()
    manifest = build_default_index(settings, sample_catalog_path())
    _say(
        f"index: {manifest['count']} products, {manifest['dense_index']} + BM25, "
        f"{time.perf_counter() - start:.0f} s"
    )


def _ensure_compressed(settings: Settings) -> None:
    """Run `shoprank compress` with :data:`DEMO_COMPRESSION` when no student is gated for
    the served teacher (or no bi-encoder variant), so the served defaults are compressed."""
    from ranker.compress.job import compress_models

    if not settings.rerank.compressed or settings.rerank.model is not None:
        return
    student_gated = _serves_derived(settings, "reranker")
    embedder_gated = _serves_derived(settings, "embedder")
    if student_gated and (embedder_gated or not settings.embedder.compressed):
        return
    work = settings.home / "compress"
    if _compressed_before(work / "report.json", teacher_dir(settings)):
        _say(f"compress: ran before for this teacher, nothing more passed its gates ({work})")
        return
    _say(
        "compress: no gated student yet; distilling, exporting, quantizing and gating "
        f"({_shapes(DEMO_COMPRESSION)}; about 20 min on 2 cores, once; report in {work})"
    )
    start = time.perf_counter()
    embedder_report, report = compress_models(settings, DEMO_COMPRESSION, work_dir=work)
    outcomes = [
        outcome_line(
            chosen.served,
            registered=chosen.registered,
            promoted=chosen.promoted,
            note=chosen.promotion_note,
            nothing=nothing,
        )
        for chosen, nothing in (
            (report, "no student passed; the teacher serves"),
            (embedder_report, "no variant passed; the source serves"),
        )
    ]
    _say(
        f"compress: {time.perf_counter() - start:.0f} s; reranker: {outcomes[0]} "
        f"bi-encoder: {outcomes[1]}"
    )


def _serves_derived(settings: Settings, role: str) -> bool:
    """Whether production serves a compressed version (one derived from another)."""
    version = serving_source(settings, role).version
    return version is not None and version.lineage.get("derived_from") is not None


def _compressed_before(report_json: Path, teacher: Path) -> bool:
    """Whether a compression report of this teacher exists (so its gates already ruled)."""
    try:
        report = json.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and report.get("teacher") == model_id(teacher)


def _shapes(config: CompressConfig) -> str:
    shapes = [
        f"{layers} layer(s) at {length} tokens"
        for layers in config.layers
        if layers > 0
        for length in config.max_lengths
    ]
    if 0 in config.layers:
        shapes.append("the prior alone (0 layers) with a miss embedder")
    return ", ".join(shapes)


def _describe_embedder(settings: Settings) -> None:
    source = serving_source(settings, "embedder")
    path = source.path
    gate = (read_manifest(path) or {}).get("gate")
    if isinstance(gate, dict):
        _say(
            f"bi-encoder: {source.label}, {gate.get('variant')}: "
            f"Recall@100 {gate.get('recall@100', 0):.4f}"
            f" against the source's {gate.get('source_recall@100', 0):.4f}, mean cosine "
            f"{gate.get('mean_cosine', 0):.4f} (`shoprank compress`)"
        )
    else:
        _say(f"bi-encoder: {source.label} ({path})")


def _describe_reranker(settings: Settings) -> None:
    source = serving_source(settings, "reranker")
    path = source.path
    manifest = read_manifest(path) or {}
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 2**20
    _say(f"reranker: {source.label} ({manifest.get('model_id', 'untracked')}, {size:.0f} MiB)")
    gate = manifest.get("gate")
    if isinstance(gate, dict):
        _say(
            f"  the gated student of {gate.get('teacher')}: {gate.get('variant')}, "
            f"cross-validated NDCG@10 {gate.get('cv_ndcg@10', 0):.4f} against the teacher's "
            f"{gate.get('teacher_ndcg@10', 0):.4f} (`shoprank compress`)"
        )


def _print_search(base_url: str, query: str, *, filters: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"query": query, "k": 5}
    if filters:
        body["filters"] = filters
    response = httpx.post(f"{base_url}/search", json=body, timeout=60.0)
    response.raise_for_status()
    payload = response.json()
    label = f"{query!r}" + (f" with {filters}" if filters else "")
    _say(f"\nPOST /search {label}")
    for rank, hit in enumerate(payload["results"], start=1):
        price = f"  ${hit['price']:.2f}" if hit["price"] is not None else ""
        _say(f"  {rank}. {hit['score']:7.3f}  {hit['id']}  {hit['title'][:80]}{price}")
    timings = ", ".join(f"{k} {v:.0f}" for k, v in payload["timings_ms"].items())
    _say(f"  ms: {timings}")


def _print_rerank(base_url: str) -> None:
    body = {
        "query": "usb c charger",
        "documents": [
            "Anker 65W USB C Charger, foldable GaN wall charger for laptops and phones",
            "Wooden cutting board with juice groove, large",
            {"text": "USB-A to Micro USB cable, 6 ft, braided"},
        ],
        "top_n": 3,
    }
    response = httpx.post(f"{base_url}/v1/rerank", json=body, timeout=60.0)
    response.raise_for_status()
    _say(f"\nPOST /v1/rerank {body['query']!r}")
    for result in response.json()["results"]:
        _say(f"  index {result['index']}: {result['relevance_score']:.3f}")


def run_demo(settings: Settings, *, port: int = 0, folds: int = 0, compress: bool = True) -> None:
    """Index, compress (once), serve, query over HTTP, evaluate, stop; prints as it goes."""
    started = time.perf_counter()
    _ensure_index(settings)
    if compress:
        _ensure_compressed(settings)
    _describe_embedder(settings)
    _describe_reranker(settings)
    _say("server: starting on 127.0.0.1 ...")
    with running_server(settings, port=port) as base_url:
        _say(f"server: {base_url} is healthy")
        for query in EXAMPLE_QUERIES:
            _print_search(base_url, query)
        _print_search(base_url, "laptop backpack", filters={"price_max": 40.0})
        _print_rerank(base_url)
    _say("\nserver: stopped")
    _say("\nevaluation on the 100 example queries:")
    evaluation = run_evaluation(
        settings, judgments_path=None, folds=folds, out=settings.home / "report"
    )
    _say(text_table(evaluation.results))
    for comparison in evaluation.comparisons:
        _say(comparison.describe())
    _say(f"report: {evaluation.report}  chart: {evaluation.chart}")
    _say(f"\nmain job wall time: {time.perf_counter() - started:.0f} s")
