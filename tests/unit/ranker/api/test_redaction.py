"""Credentials never echoed: URLs, settings' secrets, logs, /healthz and 503 bodies."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeEmbedder, FakeReranker
from fastapi.testclient import TestClient
from pydantic import SecretStr

from indexer.redaction import MASK, RedactingFilter, redact, secret_values
from indexer.stores.base import StoreUnavailableError
from ranker.api.app import create_app
from ranker.api.service import Service
from ranker.settings import ApiSettings, IndexSettings, OpenSearchSettings, Settings, WorkerSettings

SECRET_URL = "https://shop-user:s3cr3t-pass@search.example.com:9200"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SECRET_URL, f"https://shop-user:{MASK}@search.example.com:9200"),
        ("redis://:redis-pw-123@10.0.0.5:6379/0", f"redis://:{MASK}@10.0.0.5:6379/0"),
        ("https://ghp_token12345@git.example.com/x", f"https://{MASK}@git.example.com/x"),
        (
            f"OpenSearch at {SECRET_URL} is unreachable: refused",
            f"OpenSearch at https://shop-user:{MASK}@search.example.com:9200 is unreachable: "
            "refused",
        ),
        ("http://127.0.0.1:9200 is fine", "http://127.0.0.1:9200 is fine"),
        ("mail me at someone@example.com", "mail me at someone@example.com"),
    ],
)
def test_redact_masks_url_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_literal_secrets_but_not_short_ones() -> None:
    assert redact("key abcdef123 and ab", ["abcdef123", "ab"]) == f"key {MASK} and ab"


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        ({"username": "basic-user", "password": SecretStr("basic-auth-pw")}, "basic-auth-pw"),
        ({"api_key": SecretStr("os-api-key")}, "os-api-key"),
    ],
)
def test_secret_values_finds_every_secret_in_settings(auth: dict[str, Any], secret: str) -> None:
    settings = Settings(
        opensearch=OpenSearchSettings(url=SECRET_URL, **auth),
        api=ApiSettings(admin_keys=SecretStr("admin-one,admin-two")),
        workers=WorkerSettings(broker_url=SecretStr("redis://:broker-pw@redis:6379/0")),
    )

    found = set(secret_values(settings))

    assert {"s3cr3t-pass", secret, "admin-one", "admin-two"} <= found
    assert "broker-pw" in found
    assert "redis://:broker-pw@redis:6379/0" not in found  # only the password of a secret URL


def test_the_log_filter_masks_rendered_messages() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "at %s with %s", (SECRET_URL, "k3y-value"), None
    )

    RedactingFilter(["k3y-value"]).filter(record)

    assert "s3cr3t-pass" not in record.getMessage()
    assert "k3y-value" not in record.getMessage()
    assert "search.example.com" in record.getMessage()


def _opensearch_settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path,
        index=IndexSettings(backend="opensearch"),
        opensearch=OpenSearchSettings(
            url=SECRET_URL, username="basic-user", password=SecretStr("basic-auth-pw")
        ),
    )


def test_healthz_and_503_bodies_never_show_the_cluster_credentials(tmp_path: Path) -> None:
    reason = f"OpenSearch at {SECRET_URL} is unreachable: basic-auth-pw refused"

    def reopen() -> object:
        raise StoreUnavailableError(reason)

    service = Service(
        embedder=FakeEmbedder("e"),  # type: ignore[arg-type]
        reranker=FakeReranker("r"),  # type: ignore[arg-type]
        pipeline=None,
        problems=[f"index: {reason}"],
        backend="opensearch",
        reopen=reopen,  # type: ignore[arg-type]
        probe=lambda: reason,
    )
    with TestClient(create_app(_opensearch_settings(tmp_path), service=service)) as client:
        health = client.get("/healthz")
        search = client.post("/search", json={"query": "bag"})

    assert health.status_code == 503
    assert search.status_code == 503
    assert search.json()["error_type"] == "index_unavailable"
    for response in (health, search):
        assert "s3cr3t-pass" not in response.text
        assert "basic-auth-pw" not in response.text
        assert "search.example.com:9200" in response.text


def test_the_opensearch_client_messages_mask_credentials() -> None:
    pytest.importorskip("opensearchpy")
    from indexer.stores.opensearch.client import store_error

    error = store_error(RuntimeError("bad"), url=SECRET_URL, what="search")

    assert "s3cr3t-pass" not in str(error)
    assert "shop-user" in str(error)
