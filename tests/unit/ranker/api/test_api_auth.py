"""Admin routes: bearer keys (401 / 403), off without keys (404), keys never echoed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_fakes import FakeReranker, fake_service
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ranker.api.app import create_app
from ranker.settings import ApiSettings, Settings

KEYS = "first-admin-key-0123, second-admin-key-4567"


def _settings(tmp_path: Path, keys: str | None) -> Settings:
    return Settings(
        home=tmp_path,
        api=ApiSettings(admin_keys=SecretStr(keys) if keys is not None else None),
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(_settings(tmp_path, KEYS), service=fake_service(reranker=FakeReranker("r")))
    with TestClient(app) as test_client:
        yield test_client


def test_no_authorization_header_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = client.post("/admin/promote", json={"role": "reranker", "version": "v1"})

    assert response.status_code == 401
    assert response.json()["error_type"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Basic Zm9vOmJhcg==", "Bearer", "Bearer ", "first-admin-key-0123", "Bearer a b"]
)
def test_malformed_authorization_is_401(client: TestClient, header: str) -> None:
    response = client.get("/admin/models", headers={"Authorization": header})

    assert response.status_code == 401, response.text
    assert response.json()["error_type"] == "unauthorized"


def test_wrong_key_is_403_and_never_echoed(client: TestClient) -> None:
    response = client.post(
        "/admin/promote",
        json={"role": "reranker", "version": "v1"},
        headers={"Authorization": "Bearer not-a-key-at-all"},
    )

    assert response.status_code == 403
    assert response.json()["error_type"] == "forbidden"
    assert "not-a-key-at-all" not in response.text
    assert "admin-key" not in response.text


@pytest.mark.parametrize("key", ["first-admin-key-0123", "second-admin-key-4567"])
def test_every_configured_key_is_accepted(client: TestClient, key: str) -> None:
    response = client.get("/admin/models", headers={"Authorization": f"bearer {key}"})

    assert response.status_code == 200, response.text
    assert set(response.json()["roles"]) == {"embedder", "reranker"}
    assert key not in response.text


def test_without_keys_the_admin_routes_are_off_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(tmp_path, None), service=fake_service())
    with caplog.at_level(logging.WARNING, logger="ranker.api.app"), TestClient(app) as client:
        promote = client.post(
            "/admin/promote",
            json={"role": "reranker", "version": "v1"},
            headers={"Authorization": "Bearer anything"},
        )
        models = client.get("/admin/models")

    assert promote.status_code == 404
    assert models.status_code == 404
    off = [r for r in caplog.records if "admin routes are off" in r.getMessage()]
    assert len(off) == 1


def test_blank_keys_count_as_none(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, " , "), service=fake_service())
    with TestClient(app) as client:
        assert client.get("/admin/models").status_code == 404
