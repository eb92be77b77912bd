"""Concurrent load over HTTP, batched vs not: N clients on ``POST /search`` (rerank 50) and
``POST /v1/rerank`` (50 documents) against a real ``shoprank serve``.

Starts ``python -m ranker serve`` (127.0.0.1, a free port, the index at ``--index-dir``:
build one with ``shoprank index``) twice: as configured, batching on, and with
``SHOPRANK_API__MAX_BATCH_TOKENS=0``, where each request runs its models in its own worker
thread. For each route and client count, every client sends requests back to back for
``--seconds`` (after a warm-up), and waits ``--backoff-ms`` after a 429. Reported: answered
requests per second, p50 and p99 of the answered (200) requests, how many were shed (429)
and how fast the 429s came back: as the clients timed them, and as the server did (its
``x-total-time`` header, from the request reaching the app to its answer starting). The
clients run in this process (asyncio) on the same cores as the server, so the figures
compare the two servers side by side; they are not capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import quiet_libraries, ratio_table
from bench.rerank import DEPTH, rerank_cases

UNBATCHED = "not batched (MAX_BATCH_TOKENS=0)"
BATCHED = "batched (as configured)"
SERVERS: dict[str, dict[str, str]] = {
    UNBATCHED: {"SHOPRANK_API__MAX_BATCH_TOKENS": "0"},
    BATCHED: {},
}
SERVER_NAMES = {"unbatched": UNBATCHED, "batched": BATCHED}
"""The command line's names for the servers."""
ROUTES = ("/search", "/v1/rerank")


@contextmanager
def served(index_dir: Path, env_overrides: Mapping[str, str]) -> Iterator[str]:
    """A ``shoprank serve`` process on ``index_dir`` with these settings (its log
    discarded), stopped by PID; yields its base URL."""
    from ranker.demo import running_server
    from ranker.settings import Settings

    env = {"TOKENIZERS_PARALLELISM": "false", **env_overrides}
    settings = Settings(index_dir=index_dir)
    with running_server(settings, port=0, env=env, output=subprocess.DEVNULL) as base_url:
        yield base_url


def request_bodies(route: str, cases: Sequence[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """One body per judged query: a search reranking ``DEPTH``, or a rerank of ``DEPTH``."""
    if route == "/search":
        return [{"query": query, "k": 10, "rerank_depth": DEPTH} for query, _ in cases]
    return [{"query": query, "documents": documents} for query, documents in cases]


async def _load(
    base_url: str,
    route: str,
    bodies: Sequence[dict[str, Any]],
    *,
    clients: int,
    seconds: float,
    backoff_s: float,
) -> dict[str, Any]:
    """``clients`` clients, each posting back to back for ``seconds``; ``other_errors``
    counts other statuses by code (0: the connection failed)."""
    answered: list[float] = []
    shed: list[float] = []
    shed_server: list[float] = []
    failed: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=300.0, limits=limits) as client:
        stop_at = time.perf_counter() + seconds

        async def one_client(first: int) -> None:
            i = first
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                try:
                    response = await client.post(route, json=bodies[i % len(bodies)])
                except httpx.TransportError:  # a keep-alive connection closed under us
                    failed[0] = failed.get(0, 0) + 1
                    continue
                finally:
                    i += clients
                elapsed_ms = 1e3 * (time.perf_counter() - start)
                if response.status_code == 200:
                    answered.append(elapsed_ms)
                elif response.status_code == 429:
                    shed.append(elapsed_ms)
                    shed_server.append(float(response.headers.get("x-total-time", "nan")))
                    await asyncio.sleep(backoff_s)
                else:
                    failed[response.status_code] = failed.get(response.status_code, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        wall_s = time.perf_counter() - began
    return {
        "req_per_s": len(answered) / wall_s,
        "p50_ms": _percentile(answered, 50),
        "p99_ms": _percentile(answered, 99),
        "answered": len(answered),
        "shed_429": len(shed),
        "p50_429_ms": _percentile(shed, 50),
        "p99_429_ms": _percentile(shed, 99),
        "p50_429_server_ms": _percentile(shed_server, 50),
        "p99_429_server_ms": _percentile(shed_server, 99),
        "other_errors": failed,
        "errors_5xx": sum(n for status, n in failed.items() if status >= 500),
        "wall_s": wall_s,
    }


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(
    *,
    index_dir: Path,
    clients: Sequence[int] = (16, 64),
    seconds: float = 20.0,
    warmup_s: float = 5.0,
    backoff_ms: float = 100.0,
    routes: Sequence[str] = ROUTES,
    servers: Sequence[str] = tuple(SERVERS),
) -> dict[str, Any]:
    """Every route at every client count, on each server; rows grouped by (route, clients)."""
    cases = rerank_cases()
    rows: list[dict[str, Any]] = []
    for server in servers:
        with served(index_dir, SERVERS[server]) as base_url:
            for route in routes:
                bodies = request_bodies(route, cases)
                asyncio.run(
                    _load(
                        base_url,
                        route,
                        bodies,
                        clients=4,
                        seconds=warmup_s,
                        backoff_s=backoff_ms / 1e3,
                    )
                )
                for count in clients:
                    measured = asyncio.run(
                        _load(
                            base_url,
                            route,
                            bodies,
                            clients=count,
                            seconds=seconds,
                            backoff_s=backoff_ms / 1e3,
                        )
                    )
                    rows.append({"route": route, "clients": count, "variant": server, **measured})
    return {
        "task": f"rerank-{DEPTH} under concurrent load over HTTP",
        "seconds": seconds,
        "backoff_ms": backoff_ms,
        "cores": os.cpu_count(),
        "rows": rows,
    }


def render(result: dict[str, Any]) -> str:
    """One table per route and client count; the ratio is answered req/s over the
    unbatched server's (higher: more throughput)."""
    columns = [
        ("req/s", "req_per_s"),
        ("p50 ms", "p50_ms"),
        ("p99 ms", "p99_ms"),
        ("5xx", "errors_5xx"),
        ("429s", "shed_429"),
        ("429 p50 ms", "p50_429_ms"),
        ("429 p99 ms", "p99_429_ms"),
        ("429 p50 ms server", "p50_429_server_ms"),
        ("429 p99 ms server", "p99_429_server_ms"),
    ]
    tables = []
    groups = sorted({(row["route"], row["clients"]) for row in result["rows"]})
    for route, clients in groups:
        rows = [r for r in result["rows"] if (r["route"], r["clients"]) == (route, clients)]
        base = next((r for r in rows if r["variant"] == UNBATCHED), rows[0])
        for row in rows:
            row["speedup"] = row["req_per_s"] / base["req_per_s"] if base["req_per_s"] else 0.0
        table = ratio_table(rows, columns=columns, baseline=base["variant"])
        tables.append(f"POST {route}, {clients} clients\n{table}")
    head = (
        f"{result['task']}: {result['seconds']:g} s per row, {result['cores']} cores shared "
        f"by the server and the clients, {result['backoff_ms']:g} ms back-off after a 429; "
        "speed-up = answered req/s over the unbatched server's"
    )
    return "\n\n".join([head, *tables])


def main() -> None:
    """Command line: print the tables, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--index-dir", type=Path, default=Path("var/index"))
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--backoff-ms", type=float, default=100.0)
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=list(SERVER_NAMES),
        default=list(SERVER_NAMES),
        help="which servers to start: unbatched, batched (default both)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    quiet_libraries()
    result = run(
        index_dir=args.index_dir,
        clients=args.clients,
        seconds=args.seconds,
        warmup_s=args.warmup_seconds,
        backoff_ms=args.backoff_ms,
        routes=args.routes,
        servers=[SERVER_NAMES[name] for name in args.servers],
    )
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
