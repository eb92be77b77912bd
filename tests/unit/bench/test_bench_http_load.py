"""bench.http_load's table: one server or both, ratios over the unbatched one when it ran."""

from __future__ import annotations

from typing import Any

from bench.http_load import BATCHED, UNBATCHED, render


def _row(variant: str, req_per_s: float, errors_5xx: int = 0) -> dict[str, Any]:
    return {
        "route": "/search",
        "clients": 16,
        "variant": variant,
        "req_per_s": req_per_s,
        "p50_ms": 100.0,
        "p99_ms": 200.0,
        "errors_5xx": errors_5xx,
        "shed_429": 0,
        "p50_429_ms": float("nan"),
        "p99_429_ms": float("nan"),
        "p50_429_server_ms": float("nan"),
        "p99_429_server_ms": float("nan"),
    }


def _result(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"task": "t", "seconds": 1.0, "cores": 2, "backoff_ms": 100.0, "rows": rows}


def test_both_servers_are_compared_to_the_unbatched_one() -> None:
    text = render(_result([_row(UNBATCHED, 50.0), _row(BATCHED, 75.0, errors_5xx=2)]))
    batched = next(line for line in text.splitlines() if line.startswith(BATCHED))
    assert "1.50x" in batched
    assert " 2 " in batched  # the 5xx column


def test_one_server_alone_is_its_own_baseline() -> None:
    text = render(_result([_row(BATCHED, 75.0)]))
    assert "1.00x (baseline)" in text
