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

Each run registers a new connector and model and points the pipeline at them.
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


@dataclass(frozen=True, slots=True)
class RerankHook:
    """What :func:`setup_rerank` registered."""

    connector_id: str
    model_id: str
    pipeline: str
    endpoint: str


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

    ML Commons refuses a connector without a credential; shoprank's API needs none, so the
    credential is a placeholder unless ``api_key`` is given (sent as ``Authorization:
    Bearer``, for a proxy in front of the API). ML Commons stores it encrypted.
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


def _trust(client: Any, endpoint: str) -> None:
    """Add the endpoint's regex to the trusted ones; allow private IPs when it needs them."""
    regex = trusted_endpoint_regex(endpoint)
    current = _request(client, "GET", "/_cluster/settings?flat_settings=true")
    found: list[str] = []
    for scope in ("persistent", "transient"):
        value = current.get(scope, {}).get(TRUSTED_ENDPOINTS)
        if isinstance(value, list):
            found.extend(str(item) for item in value)
    settings: dict[str, Any] = {TRUSTED_ENDPOINTS: list(dict.fromkeys([*found, regex]))}
    if is_private_host(endpoint):
        settings[PRIVATE_IP] = True
    _request(client, "PUT", "/_cluster/settings", {"persistent": settings})
    logger.info("trusted %s%s", regex, " (private IPs allowed)" if PRIVATE_IP in settings else "")


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
) -> RerankHook:
    """Register the connector, the model and the search pipeline (module docstring)."""
    _trust(client, endpoint)
    connector = _request(
        client,
        "POST",
        f"{ML}/connectors/_create",
        connector_body(endpoint=endpoint, name=name, timeout_s=request_timeout_s),
    )
    connector_id = str(connector["connector_id"])
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
        task = _wait_for_task(client, str(task_id), timeout_s=deploy_timeout_s)
        model_id = model_id or task.get("model_id")
    if not model_id:
        raise StoreError(f"ML Commons registered no model: {registered}")
    _request(
        client,
        "PUT",
        f"/_search/pipeline/{pipeline}",
        pipeline_body(model_id=str(model_id), document_fields=document_fields),
    )
    hook = RerankHook(
        connector_id=connector_id, model_id=str(model_id), pipeline=pipeline, endpoint=endpoint
    )
    logger.info("rerank pipeline %s: model %s, connector %s", pipeline, model_id, connector_id)
    return hook
