"""shoprank's reranker inside OpenSearch: an ML Commons connector, a model, a search pipeline.

:func:`setup_rerank` registers, on a cluster with the ml-commons and neural-search plugins:

1. the cluster settings the connector needs: the trusted-endpoint regex matching the
   endpoint (added to those already set), and ``plugins.ml_commons.connector.
   private_ip_enabled`` when the endpoint's host is a private or loopback address;
2. an HTTP connector to shoprank's ``POST /v1/rerank?format=array`` with ML Commons' default
   rerank functions (2.19): ``connector.pre_process.default.rerank`` turns the rerank
   processor's query and document texts into the parameters ``query``, ``documents`` (a
   JSON array) and ``top_n`` (all of them), which :data:`REQUEST_BODY` sends as the Cohere
   shape; ``connector.post_process.default.rerank`` reads the answer, a bare JSON array of
   ``{index, relevance_score}`` (float), and puts each score at its index;
3. a remote model on that connector, registered and deployed;
4. a search pipeline with the ``rerank`` response processor (``ml_opensearch`` with that
   model; ``context.document_fields`` configurable, by default ``model_text``, the text the
   models read). A search with ``?search_pipeline=<name>`` and
   ``"ext": {"rerank": {"query_context": {"query_text": "..."}}}`` comes back ordered by
   shoprank's reranker, ``_score`` its relevance score.

Running it again changes nothing: a connector of the same name posting to the same endpoint
with the same functions and body is reused, so is a model of that name on it (deployed if it
is not), the pipeline is written only when it differs, and the cluster settings only when
they lack the endpoint. A new endpoint gets a new connector and model, and the pipeline
moves to them.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from indexer.stores.base import StoreError
from indexer.stores.opensearch.client import import_opensearch
from indexer.stores.opensearch.mapping import MODEL_TEXT_FIELD
from indexer.stores.opensearch.pipelines import ensure_search_pipeline

logger = logging.getLogger(__name__)

PRE_PROCESS_FUNCTION = "connector.pre_process.default.rerank"
POST_PROCESS_FUNCTION = "connector.post_process.default.rerank"
REQUEST_BODY = (
    '{"query": "${parameters.query}", "documents": ${parameters.documents}, '
    '"top_n": ${parameters.top_n}}'
)
"""The connector's request body: the pre-process function's parameters in the Cohere shape
(``query`` is a plain string, the others JSON)."""
TRUSTED_ENDPOINTS = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
DEFAULT_PIPELINE = "shoprank-rerank"
DEFAULT_DOCUMENT_FIELDS: tuple[str, ...] = (MODEL_TEXT_FIELD,)
ML = "/_plugins/_ml"
SEARCH_SIZE = 100
"""Connectors or models of one name read back when looking for one to reuse."""


@dataclass(frozen=True, slots=True)
class RerankHook:
    """What :func:`setup_rerank` registered."""

    connector_id: str
    model_id: str
    pipeline: str
    endpoint: str
    changed: tuple[str, ...] = ()
    """What this run created or changed, of ``settings``, ``connector``, ``model``
    (registered or deployed) and ``pipeline``; empty when everything was there already."""


def rerank_endpoint(api_url: str) -> str:
    """The URL the connector posts to: shoprank's ``/v1/rerank`` answering a bare array."""
    return f"{api_url.rstrip('/')}/v1/rerank?format=array"


def trusted_endpoint_regex(endpoint: str) -> str:
    """A regex that trusts exactly the endpoint's scheme, host and port."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the rerank endpoint must be an http(s) URL, got {endpoint!r}")
    return f"^{re.escape(f'{parts.scheme}://{parts.netloc}')}/.*$"


def is_private_host(endpoint: str) -> bool:
    """Whether the endpoint's host resolves to a private, loopback or link-local address."""
    host = urlsplit(endpoint).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local:
            return True
    return False


def connector_body(
    *, endpoint: str, name: str, timeout_s: float, api_key: str | None = None
) -> dict[str, Any]:
    """The ``_plugins/_ml/connectors/_create`` body for shoprank's rerank endpoint.

    ML Commons refuses a connector without a credential; shoprank's API needs none unless
    API keys are set, so the credential is a placeholder unless ``api_key`` is given (sent
    as ``Authorization: Bearer``: a key of the API's, or of a proxy in front of it). ML
    Commons stores it encrypted.
    """
    headers = {"content-type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = "Bearer ${credential.api_key}"
    return {
        "name": name,
        "description": "shoprank cross-encoder: POST /v1/rerank?format=array",
        "version": 1,
        "protocol": "http",
        "parameters": {},
        "credential": {"api_key": api_key if api_key is not None else "unused"},
        "client_config": {
            "connection_timeout": int(timeout_s * 1000),
            "read_timeout": int(timeout_s * 1000),
            "max_connection": 32,
        },
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": endpoint,
                "headers": headers,
                "request_body": REQUEST_BODY,
                "pre_process_function": PRE_PROCESS_FUNCTION,
                "post_process_function": POST_PROCESS_FUNCTION,
            }
        ],
    }


def pipeline_body(*, model_id: str, document_fields: Sequence[str]) -> dict[str, Any]:
    """A search pipeline whose ``rerank`` response processor calls the model."""
    if not document_fields:
        raise ValueError("document_fields must name at least one field")
    return {
        "description": "shoprank: rerank hits with shoprank's cross-encoder",
        "response_processors": [
            {
                "rerank": {
                    "ml_opensearch": {"model_id": model_id},
                    "context": {"document_fields": list(document_fields)},
                }
            }
        ],
    }


def rerank_search_body(
    query: str, *, match: dict[str, Any] | None = None, size: int = 10
) -> dict[str, Any]:
    """A search body for the rerank pipeline: ``match`` (default: BM25 on the text fields)
    retrieves, the processor reranks with ``query`` as the query text."""
    from indexer.stores.opensearch.mapping import bm25_query

    body = bm25_query(query, k=size, search_filter=None) if match is None else dict(match)
    body = {k: v for k, v in body.items() if k not in ("sort", "track_scores", "_source")}
    body["size"] = size
    body["ext"] = {"rerank": {"query_context": {"query_text": query}}}
    return body


def _request(client: Any, method: str, path: str, body: Any | None = None) -> dict[str, Any]:
    opensearchpy = import_opensearch()
    try:
        response: dict[str, Any] = client.transport.perform_request(method, path, body=body)
    except opensearchpy.TransportError as exc:
        raise StoreError(f"OpenSearch {method} {path} failed: {exc}") from exc
    return response


def _trust(client: Any, endpoint: str) -> bool:
    """Add the endpoint's regex to the trusted ones; allow private IPs when it needs them.

    Returns whether the cluster settings changed (False when they already allowed it).
    """
    regex = trusted_endpoint_regex(endpoint)
    current = _request(client, "GET", "/_cluster/settings?flat_settings=true")
    found: list[str] = []
    private_ip = False
    for scope in ("persistent", "transient"):
        values = current.get(scope, {})
        value = values.get(TRUSTED_ENDPOINTS)
        if isinstance(value, list):
            found.extend(str(item) for item in value)
        private_ip = private_ip or str(values.get(PRIVATE_IP, "")).lower() == "true"
    needs_private = is_private_host(endpoint)
    if regex in found and (private_ip or not needs_private):
        logger.info("%s is trusted already", regex)
        return False
    settings: dict[str, Any] = {TRUSTED_ENDPOINTS: list(dict.fromkeys([*found, regex]))}
    if needs_private:
        settings[PRIVATE_IP] = True
    _request(client, "PUT", "/_cluster/settings", {"persistent": settings})
    logger.info("trusted %s%s", regex, " (private IPs allowed)" if needs_private else "")
    return True


def _search(client: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The hits of an ML Commons ``_search``; none when its system index does not exist yet."""
    opensearchpy = import_opensearch()
    try:
        response = client.transport.perform_request("POST", path, body=body)
    except opensearchpy.NotFoundError:
        return []
    except opensearchpy.TransportError as exc:
        raise StoreError(f"OpenSearch POST {path} failed: {exc}") from exc
    hits: list[dict[str, Any]] = (response or {}).get("hits", {}).get("hits", [])
    return hits


def _newest(hits: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    def updated(hit: dict[str, Any]) -> int:
        source = hit.get("_source", {})
        return int(source.get("last_updated_time") or source.get("created_time") or 0)

    return max(hits, key=updated, default=None)


def _same_connector(
    source: dict[str, Any], *, name: str, endpoint: str, with_key: bool = False
) -> bool:
    """Whether a stored connector is ours: same name, and one predict action posting to
    ``endpoint`` with our request body and rerank functions, and an ``Authorization``
    header exactly when ``with_key``."""
    if source.get("name") != name:
        return False
    return any(
        action.get("action_type", "").lower() == "predict"
        and action.get("url") == endpoint
        and ("Authorization" in (action.get("headers") or {})) == with_key
        and action.get("request_body") == REQUEST_BODY
        and action.get("pre_process_function") == PRE_PROCESS_FUNCTION
        and action.get("post_process_function") == POST_PROCESS_FUNCTION
        for action in source.get("actions", [])
    )


def find_connector(client: Any, *, name: str, endpoint: str, with_key: bool = False) -> str | None:
    """The id of the newest connector :func:`setup_rerank` would create for ``endpoint``
    (sending an API key or not, as ``with_key`` says)."""
    hits = _search(
        client,
        f"{ML}/connectors/_search",
        {"query": {"match": {"name": name}}, "size": SEARCH_SIZE},
    )
    ours = [
        h
        for h in hits
        if _same_connector(h.get("_source", {}), name=name, endpoint=endpoint, with_key=with_key)
    ]
    newest = _newest(ours)
    return None if newest is None else str(newest["_id"])


def find_model(client: Any, *, name: str, connector_id: str) -> str | None:
    """The id of the newest model named ``name`` on ``connector_id``."""
    hits = _search(
        client,
        f"{ML}/models/_search",
        {"query": {"match": {"connector_id": connector_id}}, "size": SEARCH_SIZE},
    )
    ours = [
        h
        for h in hits
        if h.get("_source", {}).get("connector_id") == connector_id
        and h.get("_source", {}).get("name") == name
    ]
    newest = _newest(ours)
    return None if newest is None else str(newest["_id"])


def _settled_model_state(
    client: Any,
    model_id: str,
    *,
    timeout_s: float,
    passing: frozenset[str] = frozenset({"DEPLOYING"}),
) -> str:
    """A model's state read by id (real time, unlike ``_search``), waited for while it is in
    a ``passing`` state (by default ``DEPLOYING``: a deployment still being written is not a
    reason to deploy again); what it reads at ``timeout_s`` if it is still passing."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = str(_request(client, "GET", f"{ML}/models/{model_id}").get("model_state", ""))
        if state not in passing or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _wait_for_task(client: Any, task_id: str, *, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task = _request(client, "GET", f"{ML}/tasks/{task_id}")
        state = task.get("state")
        if state == "COMPLETED":
            return task
        if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
            raise StoreError(f"ML Commons task {task_id} {state}: {task.get('error', task)}")
        if time.monotonic() > deadline:
            raise StoreError(f"ML Commons task {task_id} not done in {timeout_s:.0f} s: {task}")
        time.sleep(0.5)


def setup_rerank(
    client: Any,
    *,
    endpoint: str,
    pipeline: str = DEFAULT_PIPELINE,
    document_fields: Sequence[str] = DEFAULT_DOCUMENT_FIELDS,
    name: str = "shoprank-reranker",
    request_timeout_s: float = 30.0,
    deploy_timeout_s: float = 120.0,
    api_key: str | None = None,
) -> RerankHook:
    """Register the connector, the model and the search pipeline, reusing what is there
    already (module docstring).

    ``api_key``: one of the API's keys (``SHOPRANK_API__API_KEYS``), which the connector
    sends as ``Authorization: Bearer`` (ML Commons keeps it encrypted; it is never logged).
    A connector made without a key is not reused with one, nor the other way round. A key
    changed since the connector was made is not seen: register under another ``name``.
    """
    changed: list[str] = []
    if _trust(client, endpoint):
        changed.append("settings")
    connector_id = find_connector(
        client, name=name, endpoint=endpoint, with_key=api_key is not None
    )
    if connector_id is None:
        connector = _request(
            client,
            "POST",
            f"{ML}/connectors/_create",
            connector_body(
                endpoint=endpoint, name=name, timeout_s=request_timeout_s, api_key=api_key
            ),
        )
        connector_id = str(connector["connector_id"])
        changed.append("connector")
    else:
        logger.info("reusing connector %s to %s", connector_id, endpoint)
    found = find_model(client, name=name, connector_id=connector_id)
    if found is None:
        model_id = _register_model(
            client,
            name=name,
            endpoint=endpoint,
            connector_id=connector_id,
            timeout_s=deploy_timeout_s,
        )
        changed.append("model")
    else:
        model_id = found
        state = _settled_model_state(client, model_id, timeout_s=deploy_timeout_s)
        if state != "DEPLOYED":
            logger.info("deploying model %s (%s)", model_id, state or "no state")
            deployed = _request(client, "POST", f"{ML}/models/{model_id}/_deploy")
            if deployed.get("task_id") is not None:
                _wait_for_task(client, str(deployed["task_id"]), timeout_s=deploy_timeout_s)
            changed.append("model")
        else:
            logger.info("reusing model %s", model_id)
    if ensure_search_pipeline(
        client, pipeline, pipeline_body(model_id=model_id, document_fields=document_fields)
    ):
        changed.append("pipeline")
    hook = RerankHook(
        connector_id=connector_id,
        model_id=model_id,
        pipeline=pipeline,
        endpoint=endpoint,
        changed=tuple(changed),
    )
    logger.info(
        "rerank pipeline %s: model %s, connector %s (%s)",
        pipeline,
        model_id,
        connector_id,
        ", ".join(changed) + " changed" if changed else "nothing changed",
    )
    return hook


def _register_model(
    client: Any, *, name: str, endpoint: str, connector_id: str, timeout_s: float
) -> str:
    """Register and deploy a remote model on the connector; its id."""
    registered = _request(
        client,
        "POST",
        f"{ML}/models/_register?deploy=true",
        {
            "name": name,
            "function_name": "remote",
            "description": f"shoprank reranker at {endpoint}",
            "connector_id": connector_id,
        },
    )
    model_id = registered.get("model_id")
    task_id = registered.get("task_id")
    if task_id is not None:
        task = _wait_for_task(client, str(task_id), timeout_s=timeout_s)
        model_id = model_id or task.get("model_id")
    if not model_id:
        raise StoreError(f"ML Commons registered no model: {registered}")
    # `_register?deploy=true` completes its task on registration and deploys after it, so
    # the model reads REGISTERED, then DEPLOYING, for a moment. Returning then would hand
    # back a pipeline that cannot rerank yet, and a second run would deploy it again.
    state = _settled_model_state(
        client,
        str(model_id),
        timeout_s=timeout_s,
        passing=frozenset({"REGISTERED", "DEPLOYING"}),
    )
    if state == "DEPLOY_FAILED":
        raise StoreError(f"ML Commons could not deploy model {model_id}")
    if state != "DEPLOYED":
        raise StoreError(f"model {model_id} not deployed in {timeout_s:.0f} s: {state}")
    return str(model_id)
