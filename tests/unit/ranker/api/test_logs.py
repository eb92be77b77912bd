"""Request ids in the log, and the optional JSON log format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_fakes import FakeReranker, fake_service
from fastapi.testclient import TestClient

from ranker.api.app import create_app
from ranker.api.logs import JsonFormatter, RequestIdFilter, sane_request_id
from ranker.settings import ApiSettings, Settings


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """A handler on the root logger writing to a string; removed after the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


class _Broken(FakeReranker):
    def score(self, query: str, documents: Any) -> Any:
        raise RuntimeError("boom")


def test_json_logs_carry_the_request_id(tmp_path: Path, root_stream: io.StringIO) -> None:
    settings = Settings(home=tmp_path, api=ApiSettings(log_format="json"))
    app = create_app(settings, service=fake_service(reranker=_Broken("r")))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(
            "/v1/rerank", json={"query": "q", "documents": ["d"]}, headers={"x-request-id": "r-7"}
        )

    assert response.status_code == 500
    records = [json.loads(line) for line in root_stream.getvalue().splitlines() if line]
    failed = [r for r in records if "failed" in r["message"]]
    assert failed, records
    assert failed[0]["request_id"] == "r-7"
    assert failed[0]["level"] == "ERROR"
    assert failed[0]["logger"] == "ranker.api.edge"
    assert "RuntimeError: boom" in failed[0]["exc_info"]


def test_text_logs_stay_text_but_records_know_the_request_id() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)

    assert RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))

    assert record.request_id == "-"  # type: ignore[attr-defined]
    assert line["message"] == "hello you"
    assert line["request_id"] == "-"


@pytest.mark.parametrize(
    ("given", "sane"),
    [("abc-123", True), ("a" * 128, True), ("a" * 129, False), ("a b", False), (None, False)],
)
def test_sane_request_ids(given: str | None, sane: bool) -> None:
    assert (sane_request_id(given) is not None) is sane
