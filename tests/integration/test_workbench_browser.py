"""The workbench page (``GET /ui``) in a real browser, over a real ``shoprank serve``.

The server runs the tiny models on the integration subset's index, with a registry of two
tiny rerankers (v1 production, v2 a candidate with other weights) and the sample judgments
(``SHOPRANK_API__JUDGMENTS``). Debian's chromium (``/usr/bin/chromium``, which ``.ci/run``
installs) is driven by playwright through ``executable_path``: playwright's own browser
download is never used. The screenshot goes to the test's temp directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.catalog import sample_judgments_path
from ranker.demo import free_port
from ranker.evaluation.judgments import Judgments
from ranker.evaluation.metrics import ndcg_at_k
from ranker.registry import Registry
from ranker.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.browser]

START_TIMEOUT_S = 180.0
PAGE_TIMEOUT_MS = 120_000
QUERY = "adidas gym bag for women"
"""A judged query of the subset (its products are all indexed)."""
TYPED_QUERY = "1/2 inch binder"
"""Another judged query of the subset, typed into the search box."""
COLUMNS = ["lexical", "dense", "hybrid", "reranked"]


def chromium_path() -> str | None:
    """Debian's chromium, where ``.ci/run`` installs it."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def second_reranker_dir(tiny_reranker_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny reranker with perturbed weights: it orders the same products differently."""
    import torch
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("workbench-reranker") / "tiny-reranker-b"
    shutil.copytree(tiny_reranker_dir, directory)
    model = BertForSequenceClassification.from_pretrained(str(directory))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def base_url(
    built_index: dict[str, Any],
    integration_settings: Settings,
    tiny_embedder_dir: Path,
    tiny_reranker_dir: Path,
    second_reranker_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A real server process on a free port, stopped (by its PID) after the module."""
    workdir = tmp_path_factory.mktemp("workbench")
    registry = Registry(workdir / "registry")
    registry.register("reranker", tiny_reranker_dir, job="test")
    registry.register("reranker", second_reranker_dir, job="test")
    registry.promote("reranker", "v1", actor="test")
    env = {name: value for name, value in os.environ.items() if not name.startswith("SHOPRANK_")}
    env.update(
        {
            "SHOPRANK_HOME": str(workdir / "home"),
            "SHOPRANK_REGISTRY_DIR": str(registry.root),
            "SHOPRANK_EMBEDDER__MODEL": str(tiny_embedder_dir),
            "SHOPRANK_EMBEDDER__BACKEND": "torch",
            "SHOPRANK_RERANK__BACKEND": "torch",
            "SHOPRANK_RERANK__DEPTH": "20",
            "SHOPRANK_API__JUDGMENTS": str(sample_judgments_path()),
            "SHOPRANK_API__RELOAD_INTERVAL_S": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        }
    )
    port = free_port()
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "ranker", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--index-dir", str(integration_settings.index_path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            status = httpx.get(f"{url}/healthz", timeout=5.0).json()["status"]
        except httpx.TransportError:
            time.sleep(0.25)
            continue
        if status == "ok":
            return
        pytest.fail(f"the server is {status}:\n{_tail(log_path)}")
    pytest.fail(f"the server was not healthy within {START_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def _tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _search_ids(url: str, body: dict[str, Any]) -> list[str]:
    response = httpx.post(f"{url}/search", json=body, timeout=60.0)
    assert response.status_code == 200, response.text
    return [hit["id"] for hit in response.json()["results"]]


# ----------------------------------------------------------------------------- the routes


def test_search_reranks_with_a_named_registry_version(base_url: str) -> None:
    body = {"query": QUERY, "k": 10}
    serving = httpx.post(f"{base_url}/search", json=body, timeout=60.0)
    other = httpx.post(f"{base_url}/search", json={**body, "model_version": "v2"}, timeout=60.0)
    unknown = httpx.post(f"{base_url}/search", json={**body, "model_version": "v9"}, timeout=60.0)
    malformed = httpx.post(f"{base_url}/search", json={**body, "model_version": "../x"})

    assert serving.status_code == 200, serving.text
    assert other.status_code == 200, other.text
    assert serving.json()["model_version"] == "reranker/v1"
    assert other.json()["model_version"] == "reranker/v2"
    assert other.headers["x-model-version"] == "reranker/v2"
    scores = [hit["rerank_score"] for hit in serving.json()["results"]]
    other_scores = [hit["rerank_score"] for hit in other.json()["results"]]
    assert scores != other_scores  # another model scored them
    assert unknown.status_code == 404
    assert unknown.json()["error_type"] == "not_found"
    assert malformed.status_code == 422


def test_rerankers_and_judgments_routes(base_url: str, sample_judgments: Judgments) -> None:
    listing = httpx.get(f"{base_url}/rerankers").json()
    ids = _search_ids(base_url, {"query": QUERY, "k": 10})
    judged = httpx.post(
        f"{base_url}/judgments", json={"query": QUERY, "rankings": {"reranked": ids}}
    ).json()

    assert listing["production"] == "v1"
    assert listing["serving"] == "reranker/v1"
    assert [version["version"] for version in listing["versions"]] == ["v1", "v2"]
    qid = next(q for q, text in sample_judgments.queries.items() if text == QUERY)
    assert judged["judged"] is True
    assert judged["query_id"] == qid
    assert judged["labels"] == sample_judgments.labels[qid]
    expected = ndcg_at_k(ids, sample_judgments.qrels[qid], k=10)
    assert judged["ndcg"]["reranked"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser_page() -> Iterator[Any]:
    """A headless chromium page; skipped only when chromium is absent (.ci/run installs it)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _wait_for_columns(page: Any) -> None:
    """Until the page has searched and drawn four columns of results."""
    page.wait_for_function(
        "() => document.body.dataset.state === 'done' && "
        "document.querySelectorAll('#columns [data-column] li').length >= 4"
    )


def _column_ids(page: Any, column: str) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        f'#columns [data-column="{column}"] li', "items => items.map(item => item.dataset.id)"
    )
    return ids


def test_the_page_searches_the_query_in_its_address(base_url: str, browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{base_url}/ui?q={QUERY.replace(' ', '+')}")
    _wait_for_columns(page)

    names = page.eval_on_selector_all("#columns [data-column]", "c => c.map(x => x.dataset.column)")
    assert names == COLUMNS
    for column in COLUMNS:
        assert len(_column_ids(page, column)) == 10
    expected = _search_ids(base_url, {"query": QUERY, "k": 10, "mode": "hybrid", "rerank": True})
    assert _column_ids(page, "reranked") == expected


def test_a_typed_query_shows_four_columns_labels_timings_and_two_models(
    base_url: str, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    page.goto(f"{base_url}/ui")
    page.wait_for_function("() => document.getElementById('b').value === 'v2'")
    page.fill("#q", TYPED_QUERY)
    page.press("#q", "Enter")
    _wait_for_columns(page)

    expected = _search_ids(
        base_url, {"query": TYPED_QUERY, "k": 10, "mode": "hybrid", "rerank": True}
    )
    assert _column_ids(page, "reranked") == expected
    assert _column_ids(page, "lexical") == _search_ids(
        base_url, {"query": TYPED_QUERY, "k": 10, "mode": "lexical", "rerank": False}
    )
    # Judged products carry their label; every column its NDCG@10.
    judged_badges = page.locator("#columns .badge:not(.label-unjudged)").count()
    assert judged_badges > 0
    for column in COLUMNS:
        text = page.inner_text(f'#columns [data-column="{column}"] .ndcg')
        assert text.startswith("NDCG@10 "), text
    # The reranked column's stage timings.
    stages = page.eval_on_selector_all("#timing-bars li", "rows => rows.map(r => r.dataset.stage)")
    assert {"rerank", "total"} <= set(stages)
    # Production (A) beside the candidate (B): B's moves against A are marked.
    assert page.is_visible("#compare")
    a_ids = page.eval_on_selector_all(
        '#compare [data-column="a"] li', "items => items.map(i => i.dataset.id)"
    )
    b_items = page.eval_on_selector_all(
        '#compare [data-column="b"] li',
        "items => items.map(i => [i.dataset.id, i.classList.contains('moved') || "
        "i.classList.contains('new')])",
    )
    assert a_ids == expected  # A is production, which serves
    assert [moved for _, moved in b_items] == [
        identifier not in a_ids or a_ids.index(identifier) != rank
        for rank, (identifier, _) in enumerate(b_items)
    ]
    assert "q=1%2F2+inch+binder" in page.url

    screenshot = tmp_path / "workbench.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_a_corrected_query_says_what_was_searched(base_url: str, browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{base_url}/ui?q=Adidsa+gym+bag")
    _wait_for_columns(page)

    assert "showing results for “adidas gym bag”" in page.inner_text("#status")
    assert _column_ids(page, "reranked") == _search_ids(
        base_url, {"query": "adidas gym bag", "k": 10, "mode": "hybrid", "rerank": True}
    )
