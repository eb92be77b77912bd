"""`setup_rerank` run again reuses its connector, model and pipeline (a pretend cluster)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from indexer.stores.base import StoreError
from indexer.stores.opensearch.rerank_hook import (
    PRIVATE_IP,
    TRUSTED_ENDPOINTS,
    rerank_endpoint,
    setup_rerank,
)
from ranker.cli import app
from ranker.settings import get_settings

opensearchpy = pytest.importorskip("opensearchpy")

ML = "/_plugins/_ml"
ENDPOINT = rerank_endpoint("http://127.0.0.1:8000")


class _Cluster:
    """Just enough of ML Commons, cluster settings and search pipelines."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.connectors: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, Any] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.deploying_reads: dict[str, int] = {}
        """Model id → how many reads by id still say DEPLOYING (a deployment being written)."""
        self.states_after_register: list[str] = []
        """What reads by id say of a newly registered model before DEPLOYED (its deployment
        follows the registration task)."""
        self.pending_states: dict[str, list[str]] = {}
        self.writes: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._clock = itertools.count(1000)

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    @staticmethod
    def _hits(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if not docs:
            raise opensearchpy.NotFoundError(404, "index_not_found_exception", {})
        return {"hits": {"hits": [{"_id": i, "_source": s} for i, s in docs.items()]}}

    def perform_request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        if method in ("PUT", "POST") and not path.endswith("/_search"):
            self.writes.append((method, path))
        if path == "/_cluster/settings?flat_settings=true":
            return {"persistent": dict(self.settings), "transient": {}}
        if path == "/_cluster/settings":
            for key, value in body["persistent"].items():
                self.settings[key] = "true" if value is True else value
            return {"acknowledged": True}
        if path == f"{ML}/connectors/_search":
            return self._hits(self.connectors)
        if path == f"{ML}/connectors/_create":
            connector_id = self._id("c")
            self.connectors[connector_id] = {**body, "created_time": next(self._clock)}
            return {"connector_id": connector_id}
        if path == f"{ML}/models/_search":
            return self._hits(self.models)
        if path == f"{ML}/models/_register?deploy=true":
            model_id, task_id = self._id("m"), self._id("t")
            self.models[model_id] = {
                "name": body["name"],
                "connector_id": body["connector_id"],
                "algorithm": "REMOTE",
                "model_state": "DEPLOYED",
                "created_time": next(self._clock),
            }
            self.tasks[task_id] = {"state": "COMPLETED", "model_id": model_id}
            self.pending_states[model_id] = list(self.states_after_register)
            return {"task_id": task_id, "status": "CREATED", "model_id": model_id}
        if path.startswith(f"{ML}/models/") and path.endswith("/_deploy"):
            model_id = path.split("/")[-2]
            self.models[model_id]["model_state"] = "DEPLOYED"
            task_id = self._id("t")
            self.tasks[task_id] = {"state": "COMPLETED", "model_id": model_id}
            return {"task_id": task_id, "status": "CREATED"}
        if method == "GET" and path.startswith(f"{ML}/models/"):
            model_id = path.rsplit("/", 1)[-1]
            if self.pending_states.get(model_id):
                return {
                    **self.models[model_id],
                    "model_state": self.pending_states[model_id].pop(0),
                }
            if self.deploying_reads.get(model_id, 0) > 0:
                self.deploying_reads[model_id] -= 1
                return {**self.models[model_id], "model_state": "DEPLOYING"}
            return self.models[model_id]
        if path.startswith(f"{ML}/tasks/"):
            return self.tasks[path.rsplit("/", 1)[-1]]
        if path.startswith("/_search/pipeline/"):
            name = path.rsplit("/", 1)[-1]
            if method == "PUT":
                self.pipelines[name] = body
                return {"acknowledged": True}
            if name not in self.pipelines:
                raise opensearchpy.NotFoundError(404, "resource_not_found_exception", {})
            return {name: self.pipelines[name]}
        raise AssertionError(f"unexpected {method} {path}")


class _Client:
    def __init__(self) -> None:
        self.transport = _Cluster()


def test_the_first_run_registers_everything() -> None:
    client = _Client()

    hook = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    cluster = client.transport
    assert hook.changed == ("settings", "connector", "model", "pipeline")
    assert list(cluster.connectors) == [hook.connector_id]
    assert list(cluster.models) == [hook.model_id]
    assert cluster.settings[TRUSTED_ENDPOINTS] == [r"^http://127\.0\.0\.1:8000/.*$"]
    assert cluster.settings[PRIVATE_IP] == "true"
    processor = cluster.pipelines["p"]["response_processors"][0]["rerank"]
    assert processor["ml_opensearch"]["model_id"] == hook.model_id


def test_a_second_run_reuses_and_writes_nothing() -> None:
    client = _Client()
    first = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")
    client.transport.writes.clear()

    second = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    assert (second.connector_id, second.model_id) == (first.connector_id, first.model_id)
    assert second.changed == ()
    assert client.transport.writes == []
    assert len(client.transport.connectors) == len(client.transport.models) == 1


def test_an_undeployed_model_is_deployed_not_registered_again() -> None:
    client = _Client()
    first = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")
    client.transport.models[first.model_id]["model_state"] = "UNDEPLOYED"

    second = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    assert second.model_id == first.model_id
    assert second.changed == ("model",)
    assert client.transport.models[first.model_id]["model_state"] == "DEPLOYED"


def test_a_model_still_deploying_is_waited_for_not_deployed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("indexer.stores.opensearch.rerank_hook.time.sleep", lambda _: None)
    client = _Client()
    first = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")
    client.transport.deploying_reads[first.model_id] = 2
    client.transport.writes.clear()

    second = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    assert second.model_id == first.model_id
    assert second.changed == ()
    assert client.transport.writes == []
    assert client.transport.deploying_reads[first.model_id] == 0


def test_the_first_run_returns_once_the_new_model_is_deployed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("indexer.stores.opensearch.rerank_hook.time.sleep", lambda _: None)
    client = _Client()
    client.transport.states_after_register = ["REGISTERED", "DEPLOYING", "DEPLOYING"]

    first = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")
    client.transport.writes.clear()
    second = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    assert client.transport.pending_states[first.model_id] == []
    assert second.changed == ()
    assert client.transport.writes == []


def test_a_model_that_fails_to_deploy_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("indexer.stores.opensearch.rerank_hook.time.sleep", lambda _: None)
    client = _Client()
    client.transport.states_after_register = ["REGISTERED", "DEPLOY_FAILED"]

    with pytest.raises(StoreError, match="could not deploy"):
        setup_rerank(client, endpoint=ENDPOINT, pipeline="p")


def test_another_endpoint_gets_its_own_connector_and_the_pipeline_moves() -> None:
    client = _Client()
    first = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")
    other = rerank_endpoint("http://127.0.0.1:9000")

    second = setup_rerank(client, endpoint=other, pipeline="p")

    assert second.connector_id != first.connector_id
    assert second.model_id != first.model_id
    assert second.changed == ("settings", "connector", "model", "pipeline")
    processor = client.transport.pipelines["p"]["response_processors"][0]["rerank"]
    assert processor["ml_opensearch"]["model_id"] == second.model_id
    assert len(client.transport.settings[TRUSTED_ENDPOINTS]) == 2


def test_another_document_field_only_rewrites_the_pipeline() -> None:
    client = _Client()
    first = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    second = setup_rerank(client, endpoint=ENDPOINT, pipeline="p", document_fields=["title"])

    assert second.model_id == first.model_id
    assert second.changed == ("pipeline",)


def test_an_api_key_is_sent_as_a_bearer_credential_and_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _Client()
    caplog.set_level("DEBUG")

    hook = setup_rerank(client, endpoint=ENDPOINT, pipeline="p", api_key="sk-secret-1")

    connector = client.transport.connectors[hook.connector_id]
    assert connector["credential"] == {"api_key": "sk-secret-1"}
    assert connector["actions"][0]["headers"]["Authorization"] == "Bearer ${credential.api_key}"
    assert "sk-secret-1" not in caplog.text


def test_a_connector_without_a_key_is_not_reused_once_keys_are_set() -> None:
    client = _Client()
    keyless = setup_rerank(client, endpoint=ENDPOINT, pipeline="p")

    keyed = setup_rerank(client, endpoint=ENDPOINT, pipeline="p", api_key="sk-secret-1")
    again = setup_rerank(client, endpoint=ENDPOINT, pipeline="p", api_key="sk-secret-1")

    assert keyed.connector_id != keyless.connector_id
    assert (
        "Authorization"
        not in client.transport.connectors[keyless.connector_id]["actions"][0]["headers"]
    )
    assert keyed.changed == ("connector", "model", "pipeline")
    assert (again.connector_id, again.changed) == (keyed.connector_id, ())
    processor = client.transport.pipelines["p"]["response_processors"][0]["rerank"]
    assert processor["ml_opensearch"]["model_id"] == keyed.model_id


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    client = _Client()
    monkeypatch.setattr("indexer.stores.opensearch.client.make_client", lambda settings: client)
    get_settings.cache_clear()
    yield client.transport
    get_settings.cache_clear()


def _run() -> Any:
    return CliRunner().invoke(
        app, ["opensearch", "setup-rerank", "--api-url", "http://127.0.0.1:8000"]
    )


def test_with_api_keys_the_connector_sends_the_first(
    cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPRANK_API__API_KEYS", " sk-first , sk-second")

    result = _run()

    assert result.exit_code == 0, result.output
    (connector,) = cluster.connectors.values()
    assert connector["credential"] == {"api_key": "sk-first"}
    assert connector["actions"][0]["headers"]["Authorization"] == "Bearer ${credential.api_key}"
    assert "sends the first API key" in result.output
    assert "sk-first" not in result.output


def test_without_api_keys_no_key_is_sent(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPRANK_API__API_KEYS", raising=False)

    result = _run()

    assert result.exit_code == 0, result.output
    (connector,) = cluster.connectors.values()
    assert "Authorization" not in connector["actions"][0]["headers"]
    assert "sends no API key" in result.output
