"""Schemathesis over /openapi.json with the tiny models and a real index: no generated
request may answer 5xx, and every status answered is one the route documents."""

from __future__ import annotations

from typing import Any

import pytest

from ranker.api.app import create_app
from ranker.api.service_loading import load_service
from ranker.settings import Settings

schemathesis = pytest.importorskip("schemathesis", reason="pip install 'shoprank[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402 (after the optional import)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import status_code_conformance  # noqa: E402

pytestmark = pytest.mark.integration

EXAMPLES = 25
"""Generated requests per route; the whole run stays well under a minute."""


@pytest.fixture(scope="module")
def api_schema(built_index: dict[str, Any], integration_settings: Settings) -> Any:
    """The schema of an app serving the shared index (loaded here: no lifespan runs)."""
    app = create_app(integration_settings, service=load_service(integration_settings))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_generated_request_answers_5xx(api_schema: Any) -> None:
    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance])

        call()
        checked.append(operation.label)

    assert {
        "POST /search",
        "POST /v1/rerank",
        "POST /rerank",
        "POST /embed",
        "POST /judgments",
        "GET /rerankers",
        "GET /ui",
    } <= set(checked)
