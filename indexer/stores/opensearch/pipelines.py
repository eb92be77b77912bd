"""Search pipelines created by name, idempotently, and the plugins they need.

:func:`ensure_search_pipeline` leaves a pipeline that already holds the wanted body alone
and writes it otherwise, so running a setup twice, or many servers opening the same index,
changes nothing on the cluster after the first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from indexer.stores.base import StoreError
from indexer.stores.opensearch.client import import_opensearch, store_error

logger = logging.getLogger(__name__)

NEURAL_SEARCH = "neural-search"
"""Part of the neural-search plugin's component name (``opensearch-neural-search``)."""


def _canonical(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def installed_plugins(client: Any, *, url: str = "the cluster") -> set[str]:
    """The plugin components any node of the cluster runs (``_cat/plugins``)."""
    opensearchpy = import_opensearch()
    try:
        rows = client.transport.perform_request("GET", "/_cat/plugins", params={"format": "json"})
    except opensearchpy.TransportError as exc:
        raise store_error(exc, url=url, what="listing plugins") from exc
    return {str(row.get("component", "")) for row in rows or []}


def has_plugin(client: Any, name: str, *, url: str = "the cluster") -> bool:
    """Whether a plugin whose component name contains ``name`` is installed."""
    return any(name in component for component in installed_plugins(client, url=url))


def get_search_pipeline(
    client: Any, name: str, *, url: str = "the cluster"
) -> dict[str, Any] | None:
    """The body of search pipeline ``name``, or None when there is none."""
    opensearchpy = import_opensearch()
    try:
        found = client.transport.perform_request("GET", f"/_search/pipeline/{name}")
    except opensearchpy.NotFoundError:
        return None
    except opensearchpy.TransportError as exc:
        raise store_error(exc, url=url, what=f"reading search pipeline {name!r}") from exc
    body = (found or {}).get(name)
    return dict(body) if isinstance(body, Mapping) else None


def ensure_search_pipeline(
    client: Any,
    name: str,
    body: Mapping[str, Any],
    *,
    requires: str | None = None,
    url: str = "the cluster",
) -> bool:
    """Make search pipeline ``name`` hold ``body``; True when it was written, False when it
    already did. ``requires``: a plugin the body needs, checked before writing so that a
    missing one is named instead of answered by a processor-type error.
    """
    current = get_search_pipeline(client, name, url=url)
    if current is not None and _canonical(current) == _canonical(body):
        logger.info("search pipeline %s is up to date", name)
        return False
    if requires is not None and not has_plugin(client, requires, url=url):
        raise StoreError(
            f"search pipeline {name!r} needs the {requires} plugin, which {url} does not run"
        )
    opensearchpy = import_opensearch()
    try:
        client.transport.perform_request("PUT", f"/_search/pipeline/{name}", body=dict(body))
    except opensearchpy.TransportError as exc:
        raise store_error(exc, url=url, what=f"writing search pipeline {name!r}") from exc
    logger.info("search pipeline %s %s", name, "created" if current is None else "updated")
    return True
