"""An opensearch-py client from settings: URL, TLS, basic auth or API key, time-outs."""

from __future__ import annotations

from typing import Any

from indexer.redaction import redact
from indexer.stores.base import StoreError, StoreUnavailableError
from indexer.stores.opensearch.config import OpenSearchConfig

INSTALL_HINT = "pip install 'shoprank[opensearch]'"
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses that mean "not now" rather than "not like this"."""


def import_opensearch() -> Any:
    """The ``opensearchpy`` module; a clear error naming the extra when it is missing."""
    try:
        import opensearchpy
    except ImportError as exc:
        raise StoreError(f"the OpenSearch backend needs opensearch-py: {INSTALL_HINT}") from exc
    return opensearchpy


def make_client(settings: OpenSearchConfig) -> Any:
    """An ``opensearchpy.OpenSearch`` client for the cluster settings describe."""
    opensearchpy = import_opensearch()
    options: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": settings.timeout_s,
        "max_retries": settings.max_retries,
        "retry_on_timeout": True,
        "verify_certs": settings.verify_certs,
        "ssl_show_warn": settings.verify_certs,
        "http_compress": True,
    }
    if settings.ca_certs is not None:
        options["ca_certs"] = str(settings.ca_certs)
    if settings.username is not None and settings.password is not None:
        options["http_auth"] = (settings.username, settings.password.get_secret_value())
    if settings.api_key is not None:
        options["headers"] = {"Authorization": f"ApiKey {settings.api_key.get_secret_value()}"}
    return opensearchpy.OpenSearch(**options)


def is_unavailable(exc: BaseException) -> bool:
    """Whether an opensearch-py error means the cluster cannot be reached or is overloaded.

    Connection failures and time-outs (``ConnectionError``, ``ConnectionTimeout``) and the
    statuses in :data:`UNAVAILABLE_STATUSES`; a 4xx about the request itself is not.
    """
    opensearchpy = import_opensearch()
    if isinstance(exc, opensearchpy.ConnectionError):
        return True
    return isinstance(exc, opensearchpy.TransportError) and exc.status_code in UNAVAILABLE_STATUSES


def store_error(exc: BaseException, *, url: str, what: str) -> StoreError:
    """The store error for a failed request: :class:`StoreUnavailableError` when retryable.

    Credentials in ``url`` (``https://user:pass@host``) or in the client's message are masked.
    """
    if is_unavailable(exc):
        return StoreUnavailableError(redact(f"OpenSearch at {url} is unreachable ({what}): {exc}"))
    return StoreError(redact(f"OpenSearch at {url}: {what} failed: {exc}"))


def unreachable_reason(client: Any, *, url: str, timeout_s: float) -> str | None:
    """None when the cluster answers within ``timeout_s``, else why it does not (credentials
    masked)."""
    opensearchpy = import_opensearch()
    try:
        client.info(request_timeout=timeout_s)
    except opensearchpy.TransportError as exc:
        return redact(f"OpenSearch at {url} is unreachable: {exc}")
    return None
