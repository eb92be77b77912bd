"""Bulk writes with a fake client: chunking, retries on 429/5xx/transport errors, the report."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from opensearchpy import ConnectionError as TransportConnectionError
from opensearchpy import TransportError
from opensearchpy.serializer import JSONSerializer

from indexer.stores.opensearch.bulk import (
    BulkFailure,
    BulkIndexingError,
    BulkOptions,
    run_bulk,
)

Responder = Callable[[int, list[tuple[dict[str, Any], dict[str, Any] | None]]], Any]


class FakeTransport:
    serializer = JSONSerializer()


class FakeClient:
    """Answers each bulk request with ``respond(call_number, [(action, source), ...])``."""

    def __init__(self, respond: Responder) -> None:
        self.transport = FakeTransport()
        self.respond = respond
        self.requests: list[list[tuple[dict[str, Any], dict[str, Any] | None]]] = []

    def bulk(self, body: str, **_: Any) -> Any:
        lines = [json.loads(line) for line in body.splitlines() if line]
        items: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        while lines:
            action = lines.pop(0)
            source = None if "delete" in action else lines.pop(0)
            items.append((action, source))
        self.requests.append(items)
        return self.respond(len(self.requests), items)


def _item(action: dict[str, Any], status: int, error: dict[str, Any] | None = None) -> Any:
    op, meta = next(iter(action.items()))
    body: dict[str, Any] = {"_index": meta["_index"], "_id": meta["_id"], "status": status}
    if error is not None:
        body["error"] = error
    return {op: body}


def _answer(items: list[Any]) -> dict[str, Any]:
    return {
        "took": 1,
        "errors": any("error" in next(iter(i.values())) for i in items),
        "items": items,
    }


def _all_ok(_: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
    return _answer([_item(action, 201) for action, _ in items])


def _actions(n: int, op: str = "index") -> list[dict[str, Any]]:
    if op == "delete":
        return [{"_op_type": "delete", "_index": "i", "_id": f"p{i}"} for i in range(n)]
    return [
        {"_op_type": op, "_index": "i", "_id": f"p{i}", "_source": {"title": "x" * 100}}
        for i in range(n)
    ]


FAST = BulkOptions(max_docs=4, max_bytes=10**6, max_retries=3, initial_backoff_s=0.0)


def test_requests_are_cut_by_documents_and_by_bytes() -> None:
    client = FakeClient(_all_ok)
    report = run_bulk(client, _actions(10), options=FAST)
    assert [len(r) for r in client.requests] == [4, 4, 2]
    assert report.succeeded == 10
    assert report.ok

    client = FakeClient(_all_ok)
    run_bulk(client, _actions(10), options=BulkOptions(max_docs=100, max_bytes=400))
    assert all(len(r) <= 2 for r in client.requests)
    assert sum(len(r) for r in client.requests) == 10


def test_5xx_items_are_retried_alone_with_backoff() -> None:
    def respond(call: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
        out = []
        for action, _ in items:
            failing = call == 1 and action["index"]["_id"] == "p1"
            error = {"type": "unavailable_shards_exception", "reason": "primary not active"}
            out.append(_item(action, 503, error) if failing else _item(action, 201))
        return _answer(out)

    client = FakeClient(respond)
    waits: list[float] = []
    options = BulkOptions(max_docs=10, max_retries=3, initial_backoff_s=0.5, max_backoff_s=4)
    report = run_bulk(client, _actions(3), options=options, sleep=waits.append)
    assert report.ok
    assert report.succeeded == 3
    assert report.retried == 1
    assert [[a["index"]["_id"] for a, _ in r] for r in client.requests] == [
        ["p0", "p1", "p2"],
        ["p1"],
    ]
    assert waits == [0.5]


def test_429_items_are_retried_by_the_helper() -> None:
    def respond(call: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
        error = {"type": "es_rejected_execution_exception", "reason": "queue full"}
        return _answer([_item(a, 429, error) if call == 1 else _item(a, 201) for a, _ in items])

    client = FakeClient(respond)
    report = run_bulk(client, _actions(2), options=FAST)
    assert report.ok
    assert report.succeeded == 2
    assert len(client.requests) == 2


def test_transport_failures_are_retried_then_reported_per_document() -> None:
    def respond(call: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
        raise TransportConnectionError("N/A", "connection refused", None)

    client = FakeClient(respond)
    waits: list[float] = []
    options = BulkOptions(max_docs=10, max_retries=2, initial_backoff_s=1.0, max_backoff_s=1.5)
    report = run_bulk(client, _actions(3), options=options, sleep=waits.append)
    assert len(client.requests) == 3
    assert waits == [1.0, 1.5]
    assert [f.product_id for f in report.failures] == ["p0", "p1", "p2"]
    assert all(f.error_type == "ConnectionError" for f in report.failures)
    assert report.succeeded == 0


def test_a_whole_request_5xx_is_retried() -> None:
    def respond(call: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
        if call == 1:
            raise TransportError(502, "bad gateway", {})
        return _all_ok(call, items)

    client = FakeClient(respond)
    report = run_bulk(client, _actions(3), options=FAST)
    assert report.ok
    assert report.succeeded == 3
    assert report.retried == 3


def test_rejections_are_final_and_name_the_field() -> None:
    def respond(call: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
        out = []
        for action, _ in items:
            if action["index"]["_id"] == "p1":
                error = {
                    "type": "mapper_parsing_exception",
                    "reason": "failed to parse field [price] of type [double] in document "
                    "with id 'p1'. Preview of field's value: 'cheap'",
                    "caused_by": {"type": "number_format_exception", "reason": "For input"},
                }
                out.append(_item(action, 400, error))
            else:
                out.append(_item(action, 201))
        return _answer(out)

    client = FakeClient(respond)
    report = run_bulk(client, _actions(3), options=FAST)
    assert len(client.requests) == 1
    assert report.succeeded == 2
    (failure,) = report.failures
    assert failure.product_id == "p1"
    assert failure.status == 400
    assert failure.field == "price"
    assert "number_format_exception" in failure.reason
    with pytest.raises(BulkIndexingError, match=r"p1: index failed \(400 mapper_parsing"):
        report.raise_for_failures("indexing")


def test_deleting_a_missing_document_is_not_a_failure() -> None:
    def respond(call: int, items: list[tuple[dict[str, Any], Any]]) -> Any:
        return _answer([_item(a, 404 if a["delete"]["_id"] == "p0" else 200) for a, _ in items])

    report = run_bulk(FakeClient(respond), _actions(2, "delete"), options=FAST)
    assert report.ok
    assert report.succeeded == 1
    assert report.not_found == 1


def test_the_error_lists_every_document_and_pickles() -> None:
    failures = [
        BulkFailure(f"p{i}", "index", 400, "mapper_parsing_exception", "bad", "price")
        for i in range(30)
    ]
    error = BulkIndexingError("indexing catalog.jsonl", failures)
    assert all(f"p{i}:" in str(error) for i in range(30))
    copy = pickle.loads(pickle.dumps(error))
    assert copy.failures == failures
    assert str(copy) == str(error)


def test_backoff_doubles_up_to_the_cap() -> None:
    options = BulkOptions(initial_backoff_s=1.0, max_backoff_s=5.0)
    assert [options.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
