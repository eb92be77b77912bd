"""Contract test of the rerank hook's HTTP shape (no OpenSearch node; in-process API).

What ML Commons 2.19 does around our endpoint, checked against its jars
(``opensearch-ml-common-2.19.1.0``): ``connector.pre_process.default.rerank`` (the Cohere
rerank pre-process) makes the parameters ``query`` (a plain string), ``documents`` (the
texts as a JSON array) and ``top_n`` (their number); the connector's request body
substitutes them; ``connector.post_process.default.rerank`` filters the answer with ``$[*]``
and reads each element's ``index`` as an Integer and ``relevance_score`` as a Double,
placing the score at its index. The end-to-end test with a real node is
``tests/integration/opensearch/test_rerank_hook.py`` (marker ``opensearch_ml``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.stores.opensearch.rerank_hook import (
    POST_PROCESS_FUNCTION,
    PRE_PROCESS_FUNCTION,
    REQUEST_BODY,
    connector_body,
    pipeline_body,
    rerank_endpoint,
    trusted_endpoint_regex,
)
from ranker.api.app import create_app
from ranker.api.service_loading import load_service
from ranker.settings import Settings

QUERY = "adidas gym bag for women"
DOCUMENTS = ["adidas duffel bag, black", "ring binder, A4", "women's gym bag with shoe pocket"]


@pytest.fixture(scope="module")
def client(integration_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(integration_settings, loader=load_service)) as test_client:
        yield test_client


def _connector_request(query: str, documents: list[str]) -> str:
    """The body the connector sends: the pre-process parameters substituted into the template."""
    parameters = {"query": query, "documents": json.dumps(documents), "top_n": str(len(documents))}
    return re.sub(r"\$\{parameters\.(\w+)\}", lambda m: parameters[m.group(1)], REQUEST_BODY)


def _post_process(answer: Any) -> list[float]:
    """What connector.post_process.default.rerank does with our answer (2.19)."""
    elements = answer  # the response filter $[*]: the top-level array itself
    assert isinstance(elements, list)
    scores: list[float | None] = [None] * len(elements)
    for element in elements:
        assert set(element) >= {"index", "relevance_score"}
        assert isinstance(element["index"], int)  # cast to Integer
        assert isinstance(element["relevance_score"], float)  # cast to Double
        scores[element["index"]] = element["relevance_score"]
    assert all(score is not None for score in scores), "every document needs a score"
    return [float(score) for score in scores if score is not None]


def test_contract_the_connector_request_is_accepted_and_the_answer_is_a_bare_array(
    client: TestClient,
) -> None:
    body = _connector_request(QUERY, DOCUMENTS)

    response = client.post(
        "/v1/rerank?format=array", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 200, response.text
    raw = response.text
    assert raw.startswith("[")
    assert raw.endswith("]")
    assert re.search(r'"relevance_score":-?\d+\.\d', raw), "scores must be JSON floats"
    scores = _post_process(response.json())
    assert len(scores) == len(DOCUMENTS)
    assert [r["index"] for r in response.json()] == sorted(
        range(len(DOCUMENTS)), key=lambda i: (-scores[i], i)
    )


def test_contract_array_scores_equal_the_cohere_shape(client: TestClient) -> None:
    request = {"query": QUERY, "documents": DOCUMENTS, "top_n": len(DOCUMENTS)}

    array = client.post("/v1/rerank", params={"format": "array"}, json=request).json()
    cohere = client.post("/v1/rerank", json=request).json()

    assert isinstance(cohere, dict)
    assert set(cohere) >= {"id", "results"}
    assert array == [
        {"index": r["index"], "relevance_score": r["relevance_score"]} for r in cohere["results"]
    ]


def test_contract_an_unknown_format_is_422(client: TestClient) -> None:
    response = client.post("/v1/rerank?format=xml", json={"query": QUERY, "documents": ["a"]})

    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"


def test_contract_the_connector_uses_the_default_rerank_functions() -> None:
    endpoint = rerank_endpoint("http://127.0.0.1:8000/")
    body = connector_body(endpoint=endpoint, name="shoprank", timeout_s=10)
    action = body["actions"][0]

    assert endpoint == "http://127.0.0.1:8000/v1/rerank?format=array"
    assert action["url"] == endpoint
    assert action["pre_process_function"] == PRE_PROCESS_FUNCTION
    assert PRE_PROCESS_FUNCTION == "connector.pre_process.default.rerank"
    assert action["post_process_function"] == POST_PROCESS_FUNCTION
    assert POST_PROCESS_FUNCTION == "connector.post_process.default.rerank"
    assert json.loads(_connector_request(QUERY, DOCUMENTS)) == {
        "query": QUERY,
        "documents": DOCUMENTS,
        "top_n": len(DOCUMENTS),
    }
    regex = trusted_endpoint_regex(endpoint)
    assert re.match(regex, endpoint)
    assert not re.match(regex, "http://127.0.0.1:8001/v1/rerank")
    processor = pipeline_body(model_id="m1", document_fields=["model_text"])
    assert processor["response_processors"][0]["rerank"] == {
        "ml_opensearch": {"model_id": "m1"},
        "context": {"document_fields": ["model_text"]},
    }
