"""End to end over a socket: the real ``python -m ranker serve`` process, tiny models, an index.

One server runs for the whole module; it is started with ``SHOPRANK_API__MAX_DOCUMENTS=20``
so the too-many-documents check needs 21 documents, not 1,001.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from indexer.catalog import Product
from ranker.embedder import Embedder
from ranker.settings import Settings

pytestmark = pytest.mark.integration

MAX_DOCUMENTS = 20
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 60.0
QUERY = "adidas gym bag for women"
"""A judged query of the subset, with many lexical matches."""
DEFAULT_RERANK_DEPTH = MAX_DOCUMENTS  # the server runs with SHOPRANK_RERANK__DEPTH=20
ALL_STAGES = {"embed_query", "dense", "lexical", "fusion", "rerank", "total"}


# ----------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server by its PID; kill it when it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _wait_until_healthy(
    client: httpx.Client, process: subprocess.Popen[bytes], log_path: Path
) -> dict[str, Any]:
    """Poll /healthz until the server answers ``ok``; fail fast when it exits or degrades."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"server exited with code {process.returncode} before it was healthy:\n"
                + _log_tail(log_path)
            )
        try:
            response = client.get("/healthz", timeout=5.0)
        except httpx.TransportError:
            time.sleep(0.25)
            continue
        health: dict[str, Any] = response.json()
        if health["status"] == "ok":
            return health
        # The app loads everything before it serves, so any other status is final.
        pytest.fail(f"server is {health['status']}: {health['detail']}\n" + _log_tail(log_path))
    pytest.fail(f"server not healthy after {START_TIMEOUT_S:.0f} s:\n" + _log_tail(log_path))


@pytest.fixture(scope="module")
def server(
    built_index: dict[str, Any],
    integration_settings: Settings,
    tiny_embedder_dir: Path,
    tiny_reranker_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    """A client for a real server process on a free port; the process is stopped after."""
    workdir = tmp_path_factory.mktemp("server")
    log_path = workdir / "server.log"
    env = {name: value for name, value in os.environ.items() if not name.startswith("SHOPRANK_")}
    env.update(
        {
            "SHOPRANK_HOME": str(workdir / "home"),
            "SHOPRANK_EMBEDDER__MODEL": str(tiny_embedder_dir),
            "SHOPRANK_API__MAX_DOCUMENTS": str(MAX_DOCUMENTS),
            "SHOPRANK_RERANK__DEPTH": str(MAX_DOCUMENTS),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",  # tiny models; no thread contention
        }
    )
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "ranker",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--index-dir",
        str(integration_settings.index_path),
        "--reranker",
        str(tiny_reranker_dir),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT_S) as client:
            _wait_until_healthy(client, process, log_path)
            yield client
    finally:
        _stop(process)


def _error(response: httpx.Response, status: int, error_type: str, fragment: str) -> None:
    """Assert an error response's status, error_type and a helpful message fragment."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type", "request_id"}
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["error_type"] == error_type
    assert fragment in body["error"], body["error"]


def _assert_descending(scores: list[float]) -> None:
    assert all(a >= b for a, b in pairwise(scores)), scores


# ----------------------------------------------------------------------------- health, metrics


def test_healthz_names_the_loaded_models(
    server: httpx.Client,
    catalog_subset: list[Product],
    tiny_embedder_dir: Path,
    tiny_reranker_dir: Path,
) -> None:
    response = server.get("/healthz")

    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["detail"] == ""
    assert health["products"] == len(catalog_subset)
    assert health["embedder"] == tiny_embedder_dir.name
    assert health["reranker"] == tiny_reranker_dir.name
    assert set(health["backend"]) == {"embedder", "reranker"}
    assert all(value.startswith("torch:") for value in health["backend"].values())
    # Models named outright (not from the registry) are named by their model id.
    assert health["versions"] == {
        "embedder": tiny_embedder_dir.name,
        "reranker": tiny_reranker_dir.name,
    }


def test_metrics_count_requests_by_route_and_status(server: httpx.Client) -> None:
    server.post("/search", json={"query": QUERY, "k": 2})
    server.post("/search", json={"query": ""})
    server.get('/no/such/"path')

    response = server.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE shoprank_request_duration_seconds histogram" in text
    search = 'shoprank_request_duration_seconds_count{method="POST",route="/search",status='
    assert search + '"200"}' in text
    assert search + '"400"}' in text
    assert 'route="unmatched",status="404"}' in text
    assert "no/such" not in text
    assert 'shoprank_stage_duration_seconds_count{stage="rerank"}' in text
    assert 'shoprank_model_info{backend="torch",device="cpu",role="reranker"' in text


# ----------------------------------------------------------------------------- search


def test_search_returns_k_reranked_results_with_stage_timings(server: httpx.Client) -> None:
    response = server.post("/search", json={"query": QUERY, "k": 7})

    assert response.status_code == 200, response.text
    assert float(response.headers["x-total-time"]) > 0
    body = response.json()
    assert body["query"] == QUERY
    assert response.headers["x-model-version"] == body["model_version"]
    assert response.headers["x-embedder-version"] == body["embedder_version"]
    results = body["results"]
    assert len(results) == 7
    assert len({r["id"] for r in results}) == 7
    _assert_descending([r["score"] for r in results])
    assert all(r["rerank_score"] is not None for r in results)  # fused score by default
    assert body["reranked"] == DEFAULT_RERANK_DEPTH
    timings = body["timings_ms"]
    assert timings.keys() >= ALL_STAGES
    assert all(ms >= 0 for ms in timings.values())
    assert timings["total"] >= max(ms for stage, ms in timings.items() if stage != "total")


def test_a_misspelled_query_is_searched_as_corrected(server: httpx.Client) -> None:
    def search(query: str, **fields: Any) -> dict[str, Any]:
        response = server.post("/search", json={"query": query, "k": 5, **fields})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    typo = search("Adidsa gym bag")  # two letters swapped
    right = search("adidas gym bag")
    as_typed = search("Adidsa gym bag", correct_spelling=False)

    assert typo["query"] == "Adidsa gym bag"
    assert typo["corrected_query"] == "adidas gym bag"
    assert [r["id"] for r in typo["results"]] == [r["id"] for r in right["results"]]
    assert right["corrected_query"] is None
    assert as_typed["corrected_query"] is None
    assert [r["id"] for r in as_typed["results"]] != [r["id"] for r in right["results"]]


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("dense", {"embed_query", "dense"}, {"lexical", "fusion"}),
        ("lexical", {"lexical"}, {"embed_query", "dense", "fusion"}),
        ("hybrid", {"embed_query", "dense", "lexical", "fusion"}, set()),
    ],
)
def test_search_modes_run_only_their_retrievers(
    server: httpx.Client, mode: str, present: set[str], absent: set[str]
) -> None:
    response = server.post("/search", json={"query": QUERY, "k": 5, "mode": mode, "rerank": False})

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 5
    _assert_descending([r["score"] for r in body["results"]])
    assert body["timings_ms"].keys() >= present
    assert not body["timings_ms"].keys() & absent


def test_dense_and_lexical_modes_rank_differently(server: httpx.Client) -> None:
    def ids(mode: str) -> list[str]:
        body = server.post(
            "/search", json={"query": QUERY, "k": 10, "mode": mode, "rerank": False}
        ).json()
        return [r["id"] for r in body["results"]]

    # Random tiny weights rank unlike BM25; equal lists would mean the mode is ignored.
    assert ids("dense") != ids("lexical")


def test_search_without_rerank_keeps_retrieval_scores(server: httpx.Client) -> None:
    response = server.post("/search", json={"query": QUERY, "k": 6, "rerank": False})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reranked"] == 0
    assert "rerank" not in body["timings_ms"]
    assert len(body["results"]) == 6
    assert all(r["rerank_score"] is None for r in body["results"])
    assert all(r["score"] == r["retrieval_score"] for r in body["results"])


def test_rerank_depth_limits_the_reranked_head(server: httpx.Client) -> None:
    response = server.post("/search", json={"query": QUERY, "k": 10, "rerank_depth": 3})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reranked"] == 3
    results = body["results"]
    assert len(results) == 10
    assert all(r["rerank_score"] is not None for r in results[:3])
    assert all(r["rerank_score"] is None for r in results[3:])
    _assert_descending([r["score"] for r in results])


def test_over_long_query_is_cut_when_truncating(server: httpx.Client) -> None:
    query = "waterproof " * 100

    response = server.post("/search", json={"query": query, "k": 3})

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 3
    assert len(body["query"]) < len(query.strip())
    assert query.startswith(body["query"])


# ----------------------------------------------------------------------------- filters


Predicate = Callable[[Product], bool]


def _pick_filter(
    kind: str, products: list[Product], low: int = 4, high: int = 20
) -> tuple[dict[str, Any], Predicate]:
    """A filter of ``kind`` matched by between ``low`` and ``high`` products of the subset.

    Matching is computed here independently of the stores: case-insensitive brand, any
    level of the category path, an inclusive price range that excludes unpriced products.
    """
    if kind == "brand":
        counts = Counter(p.brand.casefold() for p in products if p.brand)
        brand = max(
            (name for name, count in counts.items() if low <= count <= high),
            key=lambda name: (counts[name], name),
        )
        return {"brands": [brand.upper()]}, lambda p: p.brand.casefold() == brand
    if kind == "category":
        counts = Counter(c.casefold() for p in products for c in set(p.category))
        category = max(
            (name for name, count in counts.items() if low <= count <= high),
            key=lambda name: (counts[name], name),
        )
        return {"categories": [category]}, lambda p: category in {c.casefold() for c in p.category}
    prices = sorted({p.price for p in products if p.price is not None})
    middle = len(prices) // 2
    for width in range(1, len(prices)):
        price_min, price_max = prices[middle], prices[min(middle + width, len(prices) - 1)]

        def in_range(p: Product, lo: float = price_min, hi: float = price_max) -> bool:
            return p.price is not None and lo <= p.price <= hi

        if low <= sum(map(in_range, products)) <= high:
            return {"price_min": price_min, "price_max": price_max}, in_range
    raise AssertionError("no price range with a suitable number of products")


@pytest.mark.parametrize("kind", ["brand", "category", "price"])
@pytest.mark.parametrize("k", [3, 25])
def test_filters_apply_inside_retrieval(
    server: httpx.Client, catalog_subset: list[Product], kind: str, k: int
) -> None:
    filters, matches = _pick_filter(kind, catalog_subset)
    matching = {p.id for p in catalog_subset if matches(p)}
    assert 4 <= len(matching) <= 20

    response = server.post("/search", json={"query": QUERY, "k": k, "filters": filters})

    assert response.status_code == 200, response.text
    returned = [r["id"] for r in response.json()["results"]]
    # A filter applied after a top-k cut would return fewer; inside retrieval it fills k.
    assert len(returned) == min(k, len(matching))
    assert set(returned) <= matching


# ----------------------------------------------------------------------------- rerank, embed


def test_cohere_rerank_mixes_strings_and_objects(
    server: httpx.Client, tiny_reranker_dir: Path
) -> None:
    documents: list[Any] = [
        "adidas gym bag for women, black",
        {"text": "clear silicone sealant, 100% silicone"},
        "1/2 inch three ring binder",
        {"text": "half gallon water bottle without straw"},
        "kindle paperwhite",
    ]
    texts = [d["text"] if isinstance(d, dict) else d for d in documents]

    response = server.post(
        "/v1/rerank",
        json={"query": QUERY, "documents": documents, "top_n": 3, "return_documents": True},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"]
    assert body["meta"]["model"] == tiny_reranker_dir.name
    assert body["meta"]["model_version"] == tiny_reranker_dir.name
    assert response.headers["x-model-version"] == tiny_reranker_dir.name
    results = body["results"]
    assert len(results) == 3
    assert len({r["index"] for r in results}) == 3
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in results)
    _assert_descending([r["relevance_score"] for r in results])
    assert all(r["document"] == {"text": texts[r["index"]]} for r in results)

    everything = server.post("/v1/rerank", json={"query": QUERY, "documents": documents})

    assert everything.status_code == 200, everything.text
    all_results = everything.json()["results"]
    assert sorted(r["index"] for r in all_results) == list(range(len(documents)))
    assert all("document" not in r for r in all_results)  # left out, never null
    assert all_results[:3] == [
        {key: value for key, value in r.items() if key != "document"} for r in results
    ]


def test_tei_rerank_agrees_with_cohere_rerank(server: httpx.Client) -> None:
    texts = ["adidas duffel bag", "silicone caulk", "ring binder", "water bottle"]

    tei = server.post("/rerank", json={"query": QUERY, "texts": texts})
    raw = server.post("/rerank", json={"query": QUERY, "texts": texts, "raw_scores": True})
    cohere = server.post("/v1/rerank", json={"query": QUERY, "documents": texts})

    assert tei.status_code == raw.status_code == cohere.status_code == 200
    ranks = tei.json()
    assert all(set(rank) == {"index", "score"} for rank in ranks)  # text only when asked
    assert sorted(rank["index"] for rank in ranks) == list(range(len(texts)))
    _assert_descending([rank["score"] for rank in ranks])
    sigmoid = {r["index"]: 1 / (1 + math.exp(-r["score"])) for r in raw.json()}
    relevance = {r["index"]: r["relevance_score"] for r in cohere.json()["results"]}
    for rank in ranks:
        assert rank["score"] == pytest.approx(sigmoid[rank["index"]], abs=1e-6)
        assert rank["score"] == pytest.approx(relevance[rank["index"]], abs=1e-6)


def test_tei_embed_returns_unit_vectors_of_the_served_model(
    server: httpx.Client, tiny_embedder: Embedder
) -> None:
    inputs = ["adidas gym bag", "silicone sealant", "ring binder"]

    response = server.post("/embed", json={"inputs": inputs})
    single = server.post("/embed", json={"inputs": "adidas gym bag"})

    assert response.status_code == single.status_code == 200
    vectors = np.asarray(response.json(), dtype=np.float32)
    assert vectors.shape == (3, tiny_embedder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, tiny_embedder.embed(inputs), atol=1e-5)
    assert np.asarray(single.json()).shape == (1, tiny_embedder.dimension)


# ----------------------------------------------------------------------------- errors


LONG_TEXT = "waterproof " * 100
"""1,100 characters and 200 word pieces: over the query limits (512, 48)."""


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type", "fragment"),
    [
        pytest.param("/search", {"query": ""}, 400, "empty", "query is empty", id="empty-query"),
        pytest.param(
            "/search", {"query": " \t\n "}, 400, "empty", "query is empty", id="blank-query"
        ),
        pytest.param(
            "/search",
            {"query": LONG_TEXT, "truncate": False},
            413,
            "too_large",
            "the limit is 512 (send truncate=true",
            id="query-over-chars",
        ),
        pytest.param(
            "/search",
            {"query": "waterproof " * 40, "truncate": False},
            413,
            "too_large",
            "tokens; the limit is 48",
            id="query-over-tokens",
        ),
        pytest.param(
            "/v1/rerank",
            {"query": "bag", "documents": ["x" * 9000], "truncate": False},
            413,
            "too_large",
            "documents[0] has 9000 characters; the limit is 8192",
            id="document-over-chars",
        ),
        pytest.param(
            "/v1/rerank",
            {"query": "bag", "documents": ["ok", LONG_TEXT], "truncate": False},
            413,
            "too_large",
            "documents[1] has 202 tokens; the model reads at most",
            id="document-over-tokens",
        ),
        pytest.param(
            "/rerank",
            {"query": "bag", "texts": ["x" * 9000], "truncate": False},
            413,
            "too_large",
            "texts[0] has 9000 characters",
            id="tei-text-over-chars",
        ),
        pytest.param(
            "/v1/rerank",
            {"query": "bag", "documents": ["bag"] * (MAX_DOCUMENTS + 1)},
            413,
            "too_large",
            f"{MAX_DOCUMENTS + 1} documents; the limit per call is {MAX_DOCUMENTS}",
            id="too-many-documents",
        ),
        pytest.param(
            "/v1/rerank",
            {"query": "bag", "documents": []},
            400,
            "empty",
            "documents is empty",
            id="no-documents",
        ),
        pytest.param(
            "/v1/rerank",
            {"query": "bag", "documents": ["bag", "  "]},
            400,
            "empty",
            "documents[1] is empty",
            id="blank-document",
        ),
        pytest.param(
            "/v1/rerank",
            {"query": "", "documents": ["bag"]},
            400,
            "empty",
            "query is empty",
            id="rerank-empty-query",
        ),
        pytest.param(
            "/search",
            {"query": "bag", "kk": 3},
            422,
            "validation",
            "unknown field 'kk'",
            id="unknown-field",
        ),
        pytest.param(
            "/search",
            {"query": "bag", "filters": {"brand": ["adidas"]}},
            422,
            "validation",
            "unknown field 'filters.brand'",
            id="unknown-nested-field",
        ),
        pytest.param(
            "/search", {"k": 3}, 422, "validation", "missing field 'query'", id="missing-field"
        ),
        pytest.param(
            "/search",
            {"query": "bag", "k": "ten"},
            422,
            "validation",
            "k: Input should be a valid integer",
            id="wrong-type",
        ),
        pytest.param(
            "/search",
            {"query": "bag", "k": 0},
            422,
            "validation",
            "k: Input should be greater than or equal to 1",
            id="k-zero",
        ),
        pytest.param(
            "/search",
            {"query": "bag", "filters": {"price_min": 50, "price_max": 10}},
            422,
            "validation",
            "price_min 50.0 is above price_max 10.0",
            id="price-range-inverted",
        ),
        pytest.param(
            "/search",
            {"query": "bag", "k": 1001},
            422,
            "validation",
            "k 1001 is above the limit 1000",
            id="k-above-max",
        ),
        pytest.param(
            "/search",
            {"query": "bag", "rerank_depth": MAX_DOCUMENTS + 1},
            422,
            "validation",
            f"rerank_depth {MAX_DOCUMENTS + 1} is above the limit {MAX_DOCUMENTS}",
            id="rerank-depth-above-max",
        ),
        pytest.param(
            "/embed",
            {"inputs": ["bag", ""]},
            400,
            "empty",
            "inputs[1] is empty",
            id="embed-empty-input",
        ),
    ],
)
def test_bad_requests_get_typed_errors(
    server: httpx.Client,
    path: str,
    body: dict[str, Any],
    status: int,
    error_type: str,
    fragment: str,
) -> None:
    _error(server.post(path, json=body), status, error_type, fragment)


def test_malformed_json_is_400(server: httpx.Client) -> None:
    response = server.post(
        "/search", content=b'{"query": "bag",', headers={"content-type": "application/json"}
    )

    _error(response, 400, "malformed", "malformed JSON")
