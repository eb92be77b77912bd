"""The HTTP rerank bench's any-text requests (no server, no timing)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from bench.http_rerank import _unindexed_caller

CASES = [("gym bag", ["Adidas Gym Bag", "Paper Bag"]), ("water bottle", ["Steel Bottle"])]


def test_every_any_text_request_sends_texts_no_other_request_sent() -> None:
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"results": []})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://bench") as client:
        call = _unindexed_caller(client, CASES)
        for i in range(4):
            call(i)

    assert [body["query"] for body in sent] == ["gym bag", "water bottle"] * 2
    texts = [text for body in sent for text in body["documents"]]
    assert len(texts) == len(set(texts)) == 6
    assert all(text not in {t for _, ts in CASES for t in ts} for text in texts)
    assert sent[2]["documents"][0].startswith("Adidas Gym Bag")
