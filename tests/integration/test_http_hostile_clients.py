"""Hostile clients against a real uvicorn server on 127.0.0.1, over raw sockets.

Stalled half-sent bodies, bodies over the size limit (declared and chunked), and a 500 on a
keep-alive connection. The app runs in-process on weight-free fakes, so the server starts in
well under a second.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from ranker.api.app import create_app
from ranker.api.service import Service
from ranker.reranker import PreparedPairs
from ranker.settings import ApiSettings, Settings
from ranker.stages import PreparedTokens

pytestmark = pytest.mark.integration

SLOTS = 2
BODY_TIMEOUT_S = 1.0
MAX_BODY_BYTES = 4096
START_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 10.0


class _Tokenizer:
    max_length = 64

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) + 2 for text in texts]

    def truncate_text(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])


class _Backend:
    name = "fake"
    device = "cpu"

    def warmup(self, *, batch_size: int, seq_len: int) -> float:
        return 0.0


class _Reranker:
    """Scores 0.5 everywhere; the query ``boom`` raises an unexpected error."""

    model_id = "fake-reranker"
    prior = None
    has_cross_encoder = True

    def __init__(self) -> None:
        self.tokenizer = _Tokenizer()
        self.backend = _Backend()

    def prepare(self, query: str, documents: Sequence[str], **_: Any) -> PreparedPairs:
        if query == "boom":
            raise RuntimeError("an unexpected bug")
        rows = tuple(np.zeros(len(d.split()) + 2, dtype=np.int64) for d in documents)
        tokens = PreparedTokens(ids=rows, type_ids=rows, pad_id=0)
        return PreparedPairs(query, False, tuple(documents), tokens)

    def infer(self, inputs: Sequence[PreparedTokens]) -> list[np.ndarray]:
        return [np.full(tokens.rows, 0.5, dtype=np.float32) for tokens in inputs]

    def finish(
        self, prepared: PreparedPairs, logits: np.ndarray, **_: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        return logits, np.zeros_like(logits)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(host, port) of a uvicorn server running the app; stopped after the module."""
    settings = Settings(
        home=tmp_path_factory.mktemp("hostile-clients"),
        api=ApiSettings(
            max_concurrent_requests=SLOTS,
            body_timeout_s=BODY_TIMEOUT_S,
            max_body_bytes=MAX_BODY_BYTES,
        ),
    )
    service = Service(embedder=None, reranker=_Reranker(), pipeline=None, problems=[])  # type: ignore[arg-type]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings, service=service), host="127.0.0.1", port=port, log_level="warning"
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not uvicorn_server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield "127.0.0.1", port
    finally:
        uvicorn_server.should_exit = True
        thread.join(START_TIMEOUT_S)


def _connect(server: tuple[str, int]) -> socket.socket:
    return socket.create_connection(server, timeout=READ_TIMEOUT_S)


def _request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names) and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def _closed_by_server(connection: socket.socket) -> bool:
    """True when the server closed its side (an orderly end of stream, or a reset)."""
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


RERANK = b'{"query": "usb cable", "texts": ["usb c cable", "garden hose"]}'


def test_stalled_half_bodies_hold_no_slot_and_time_out_with_408(
    server: tuple[str, int],
) -> None:
    stalled = []
    for _ in range(SLOTS * 2):
        connection = _connect(server)
        connection.sendall(_request_head("/rerank", {"Content-Length": str(len(RERANK))}))
        connection.sendall(RERANK[: len(RERANK) // 2])
        stalled.append(connection)
    try:
        with httpx.Client(base_url=f"http://{server[0]}:{server[1]}") as client:
            served = client.post(
                "/rerank", content=RERANK, headers={"content-type": "application/json"}
            )
        answers = [_read_response(connection) for connection in stalled]
        closed = [_closed_by_server(connection) for connection in stalled]
    finally:
        for connection in stalled:
            connection.close()

    assert served.status_code == 200, served.text
    assert [status for status, _, _ in answers] == [408] * len(stalled)
    assert all(headers["connection"] == "close" for _, headers, _ in answers)
    assert all(b'"error_type":"timeout"' in body for _, _, body in answers)
    assert all(closed)


def test_a_declared_10_gb_body_is_413_before_it_is_sent(server: tuple[str, int]) -> None:
    with _connect(server) as connection:
        connection.sendall(_request_head("/rerank", {"Content-Length": str(10 * 2**30)}))
        status, headers, body = _read_response(connection)

    assert status == 413
    assert headers["connection"] == "close"
    assert b'"error_type":"too_large"' in body


def test_a_chunked_body_past_the_limit_is_413_while_it_streams(server: tuple[str, int]) -> None:
    chunk = b"x" * 1024
    with _connect(server) as connection:
        connection.sendall(_request_head("/rerank", {"Transfer-Encoding": "chunked"}))
        sent = 0
        while sent <= MAX_BODY_BYTES:  # never the terminating chunk: the server must not wait
            connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
        status, headers, body = _read_response(connection)

    assert status == 413
    assert headers["connection"] == "close"
    assert b"over the limit of 4096 bytes" in body


def test_a_500_on_a_keep_alive_connection_says_connection_close(server: tuple[str, int]) -> None:
    boom = b'{"query": "boom", "texts": ["a"]}'
    with _connect(server) as connection:
        connection.sendall(_request_head("/rerank", {"Content-Length": str(len(RERANK))}) + RERANK)
        first_status, first_headers, _ = _read_response(connection)
        connection.sendall(_request_head("/rerank", {"Content-Length": str(len(boom))}) + boom)
        status, headers, body = _read_response(connection)
        closed = _closed_by_server(connection)

    assert first_status == 200
    assert "close" not in first_headers.get("connection", "")
    assert status == 500
    assert headers["connection"] == "close"
    assert headers["x-request-id"] in body.decode()
    assert b"an unexpected bug" not in body
    assert closed
