"""The OpenAI routes' errors in OpenAI's body, read by the real openai SDK (over the app
in-process: the SDK's ``http_client`` is the TestClient), and every other route's in ours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from api_fakes import FakeEmbedder, FakeReranker, fake_service
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ranker.api.app import create_app
from ranker.api.error_shapes import error_shape
from ranker.settings import ApiSettings, Settings

KEY = "sk-shoprank-test"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    service = fake_service(reranker=FakeReranker("rr"), embedder=FakeEmbedder("emb"))
    settings = Settings(home=tmp_path, api=ApiSettings(api_keys=SecretStr(KEY)))
    with TestClient(create_app(settings, service=service)) as test_client:
        yield test_client


def sdk(client: TestClient, key: str = KEY) -> openai.OpenAI:
    """The openai SDK talking to the app in-process, no retries."""
    return openai.OpenAI(
        api_key=key, base_url=f"{client.base_url}/v1", http_client=client, max_retries=0
    )


def test_a_422_is_an_unprocessable_entity_error_with_our_message(client: TestClient) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        sdk(client).embeddings.create(model="x", input=[[101, 2054, 102]])

    error = refused.value
    assert error.status_code == 422
    assert error.type == "validation"
    assert error.code == "validation"
    assert isinstance(error.body, dict)
    assert "token-id arrays are not accepted" in error.body["message"]
    assert "token-id arrays are not accepted" in str(error)
    assert error.request_id == error.response.headers["x-request-id"]
    assert error.response.json()["request_id"] == error.request_id


def test_a_400_is_a_bad_request_error(client: TestClient) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(client).embeddings.create(model="x", input=[])

    assert refused.value.type == "empty"
    assert isinstance(refused.value.body, dict)
    assert "input is empty" in refused.value.body["message"]


def test_a_413_carries_its_status_and_message(client: TestClient) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(client).embeddings.create(
            model="x", input="word " * 100, extra_body={"truncate": False}
        )

    assert refused.value.status_code == 413
    assert refused.value.type == "too_large"
    assert isinstance(refused.value.body, dict)
    assert "the model reads at most 64" in refused.value.body["message"]


def test_a_wrong_key_is_a_permission_error_from_the_edge(client: TestClient) -> None:
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk(client, key="sk-wrong").models.list()

    assert refused.value.type == "forbidden"


def test_an_unknown_model_path_is_a_not_found_error(client: TestClient) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        sdk(client).models.retrieve("no-such-model")

    assert refused.value.type == "not_found"
    assert isinstance(refused.value.body, dict)
    assert "/v1/models/no-such-model" in refused.value.body["message"]


def test_a_missing_model_is_an_internal_server_error_with_our_reason(tmp_path: Path) -> None:
    service = fake_service(reranker=FakeReranker("rr"), embedder=None)
    app = create_app(Settings(home=tmp_path), service=service)
    with TestClient(app) as client, pytest.raises(openai.InternalServerError) as refused:
        sdk(client).embeddings.create(model="x", input="usb cable")

    assert refused.value.status_code == 503
    assert refused.value.type == "unhealthy"


def test_other_routes_keep_shoprank_s_error_body(client: TestClient) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    rerank = client.post("/v1/rerank", json={"query": "", "documents": ["a"]}, headers=headers)
    unknown = client.post("/v1/chat/completions", json={}, headers=headers)

    for response in (rerank, unknown):
        body = response.json()
        assert set(body) == {"error", "error_type", "request_id"}, body
        assert isinstance(body["error"], str)


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/embeddings", "openai"),
        ("/v1/models", "openai"),
        ("/v1/models/embedder/v1", "openai"),
        ("/v1/embeddingsX", "shoprank"),
        ("/v1/embed", "shoprank"),
        ("/v1/rerank", "shoprank"),
        ("/search", "shoprank"),
    ],
)
def test_the_shape_follows_the_route_family(path: str, shape: str) -> None:
    assert error_shape(path) == shape


def test_openapi_documents_openai_s_error_body_on_its_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers={"authorization": f"Bearer {KEY}"}).json()

    for path, method in (("/v1/embeddings", "post"), ("/v1/models", "get")):
        responses = spec["paths"][path][method]["responses"]
        schema = responses["422"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OpenAIErrorResponse"}
    search = spec["paths"]["/search"]["post"]["responses"]["422"]
    assert search["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    detail = spec["components"]["schemas"]["OpenAIErrorDetail"]
    assert set(detail["properties"]) == {"message", "type", "param", "code"}
