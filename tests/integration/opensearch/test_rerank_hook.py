"""The rerank hook end to end: a real node with ML Commons and neural-search calls our API.

A node with the ml plugins indexes the catalog subset; ``python -m ranker serve`` runs on
127.0.0.1 against that index (the opensearch backend, tiny models); ``setup_rerank``
registers a connector to its ``/v1/rerank?format=array``, a model and a search pipeline.
A search through the pipeline must come back in the order our service gives the same
texts, with our scores.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.catalog import Product, TextTemplate
from indexer.stores.opensearch.client import make_client
from indexer.stores.opensearch.devnode import RunningNode
from indexer.stores.opensearch.jobs import ReindexResult, reindex_catalog
from indexer.stores.opensearch.mapping import MODEL_TEXT_FIELD
from indexer.stores.opensearch.rerank_hook import (
    RerankHook,
    rerank_endpoint,
    rerank_search_body,
    setup_rerank,
)
from ranker.embedder import Embedder
from ranker.settings import OpenSearchSettings, Settings

pytestmark = [pytest.mark.opensearch_ml, pytest.mark.integration]

ALIAS = "it-rerank"
PIPELINE = "it-rerank-pipeline"
QUERY = "adidas gym bag for women"
SIZE = 10
START_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def ml_config(opensearch_ml_node: RunningNode) -> OpenSearchSettings:
    return OpenSearchSettings(
        url=opensearch_ml_node.url, index_alias=ALIAS, replicas=0, reindex_grace_s=0, timeout_s=60
    )


@pytest.fixture(scope="module")
def ml_index(
    ml_config: OpenSearchSettings,
    catalog_subset: list[Product],
    tiny_embedder: Embedder,
    integration_settings: Settings,
) -> ReindexResult:
    return reindex_catalog(
        catalog_subset,
        config=ml_config,
        embedder=tiny_embedder,
        template=TextTemplate(integration_settings.index.text_template),
        source="catalog subset",
        progress=False,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def api(
    ml_index: ReindexResult,
    ml_config: OpenSearchSettings,
    tiny_embedder_dir: Path,
    tiny_reranker_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    """Our API in a child process on 127.0.0.1, searching the node's index; stopped by PID."""
    workdir = tmp_path_factory.mktemp("rerank-api")
    log_path = workdir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPRANK_")}
    env.update(
        {
            "SHOPRANK_HOME": str(workdir / "home"),
            "SHOPRANK_EMBEDDER__MODEL": str(tiny_embedder_dir),
            "SHOPRANK_INDEX__BACKEND": "opensearch",
            "SHOPRANK_OPENSEARCH__URL": ml_config.url,
            "SHOPRANK_OPENSEARCH__INDEX_ALIAS": ALIAS,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
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
        "--reranker",
        str(tiny_reranker_dir),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    pytest.fail(f"server exited {process.returncode}: {log_path.read_text()}")
                try:
                    health = client.get("/healthz").json()
                except httpx.TransportError:
                    health = None
                if health is not None:
                    assert health["status"] == "ok", health
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"server not up in {START_TIMEOUT_S:.0f} s: {log_path.read_text()}")
                time.sleep(0.25)
            yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def hook(api: httpx.Client, ml_config: OpenSearchSettings) -> RerankHook:
    return setup_rerank(
        make_client(ml_config),
        endpoint=rerank_endpoint(str(api.base_url)),
        pipeline=PIPELINE,
        document_fields=[MODEL_TEXT_FIELD],
    )


def test_the_api_searches_the_node(api: httpx.Client) -> None:
    response = api.post("/search", json={"query": QUERY, "k": 5})

    assert response.status_code == 200, response.text
    assert response.json()["index"] == "opensearch"
    assert len(response.json()["results"]) == 5


def test_a_search_through_the_pipeline_comes_back_in_our_rerank_order(
    hook: RerankHook, api: httpx.Client, ml_config: OpenSearchSettings
) -> None:
    client = make_client(ml_config)
    body = rerank_search_body(QUERY, size=SIZE)
    plain = client.search(index=ALIAS, body=body)["hits"]["hits"]
    texts = [hit["_source"][MODEL_TEXT_FIELD] for hit in plain]
    ours = api.post("/v1/rerank", json={"query": QUERY, "documents": texts}).json()["results"]
    expected_ids = [plain[r["index"]]["_id"] for r in ours]
    expected_scores = [r["relevance_score"] for r in ours]

    reranked = client.search(index=ALIAS, body=body, params={"search_pipeline": hook.pipeline})
    hits = reranked["hits"]["hits"]

    assert len(plain) == SIZE
    assert [hit["_id"] for hit in plain] != expected_ids, "our order must differ from BM25's"
    assert [hit["_id"] for hit in hits] == expected_ids
    assert [hit["_score"] for hit in hits] == pytest.approx(expected_scores, rel=1e-5)


def test_the_pipeline_runs_the_rerank_processor_on_our_model(
    hook: RerankHook, ml_config: OpenSearchSettings
) -> None:
    client = make_client(ml_config)
    pipeline: dict[str, Any] = client.transport.perform_request(
        "GET", f"/_search/pipeline/{hook.pipeline}"
    )
    processor = pipeline[hook.pipeline]["response_processors"][0]["rerank"]

    assert processor["ml_opensearch"]["model_id"] == hook.model_id
    assert processor["context"]["document_fields"] == [MODEL_TEXT_FIELD]


def test_setup_rerank_run_again_reuses_the_connector_model_and_pipeline(
    hook: RerankHook, api: httpx.Client, ml_config: OpenSearchSettings
) -> None:
    client = make_client(ml_config)
    time.sleep(1.5)  # ML Commons' system indexes refresh every second: searchable by now

    again = setup_rerank(
        client,
        endpoint=rerank_endpoint(str(api.base_url)),
        pipeline=PIPELINE,
        document_fields=[MODEL_TEXT_FIELD],
    )

    assert (again.connector_id, again.model_id) == (hook.connector_id, hook.model_id)
    assert again.changed == ()
