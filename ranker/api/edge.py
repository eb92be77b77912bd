"""The ASGI middleware every HTTP request passes before the routes, in this order:

1. a request id: the client's ``x-request-id`` when it is sane, else a new one; echoed on
   every response and set for the logs (:mod:`ranker.api.logs`);
2. the API key, when API keys are set (not for /admin, which has its own, nor the open
   paths, nor the workbench page under /ui: static files that hold no data, whose calls
   to the data routes carry the key the user types in);
3. the body, read in full first: a declared ``Content-Length`` over ``max_body_bytes``
   answers 413 unread, a chunked body that grows past it 413, a body not sent in full
   within ``body_timeout_s`` 408 (each with ``Connection: close``);
4. a concurrency slot, 429 when none is free: checked before the body is read (a request
   that cannot get one is refused unread, at once) and again after; a request takes one
   only once its body is read, so a client that sends half a body and stalls never holds
   one;
5. the routes. An exception no handler answers becomes a JSON 500 with the request id and
   ``Connection: close`` (the traceback goes to the log only), so the client is told
   before the connection closes.

Every request is measured by route template, method and status (:mod:`ranker.api.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ranker.api.error_handlers import error_response
from ranker.api.errors import (
    ApiError,
    InputTooLargeError,
    InternalError,
    OverloadedError,
    RequestTimeoutError,
)
from ranker.api.keys import bearer_key_fingerprint
from ranker.api.logs import REQUEST_ID, REQUEST_ID_HEADER, sane_request_id
from ranker.api.metrics import UNMATCHED, Metrics
from ranker.settings import ApiSettings

logger = logging.getLogger(__name__)

UNGATED_PATHS = frozenset({"/healthz", "/health", "/metrics"})
"""Cheap routes that never wait for, nor take, a concurrency slot."""
ADMIN_PREFIX = "/admin"
UI_PREFIX = "/ui"
"""The workbench page and its static files (:mod:`ranker.api.workbench`)."""
CLIENT_GONE = 499
"""The status recorded for a request whose client left before it was answered."""


@dataclass
class _Outcome:
    status: int = CLIENT_GONE
    started: bool = False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then defers to the server's."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class EdgeMiddleware:
    """Request ids, API keys, body limits, the concurrency gate, metrics and JSON 500s."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: ApiSettings,
        metrics: Metrics,
        route_templates: Callable[[], Sequence[str]],
        secrets: Sequence[str],
    ) -> None:
        self.app = app
        self._settings = settings
        self._metrics = metrics
        self._route_templates = route_templates
        self._templates: list[tuple[re.Pattern[str], str]] | None = None
        self._secrets = tuple(secrets)
        self._api_keys = settings.api_key_list()
        self._open_paths = frozenset(settings.open_paths)
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = sane_request_id(headers.get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        route = self._route_template(scope["path"])
        start = time.perf_counter()
        outcome = _Outcome()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome.status, outcome.started = message["status"], True
                response_headers = MutableHeaders(scope=message)
                response_headers[REQUEST_ID_HEADER] = request_id
                response_headers["x-total-time"] = f"{1e3 * (time.perf_counter() - start):.1f}"
            await send(message)

        try:
            await self._serve(scope, receive, send_with_id, headers)
        except Exception as exc:
            if outcome.started:
                raise
            logger.error(
                "request %s %s failed (request id %s)",
                scope["method"],
                scope["path"],
                request_id,
                exc_info=exc,
            )
            error = InternalError(f"internal error; the server log has request id {request_id}")
            await error_response(error, self._secrets, path=scope["path"], close=True)(
                scope, receive, send_with_id
            )
        finally:
            seconds = time.perf_counter() - start
            self._metrics.observe(
                route=route, method=scope["method"], status=outcome.status, seconds=seconds
            )
            REQUEST_ID.reset(token)

    def _route_template(self, path: str) -> str:
        """The template of the first route whose path matches, else ``unmatched``."""
        if self._templates is None:  # on the first request, once every route is added
            try:
                templates = self._route_templates()
            except Exception:  # a schema that does not build must not stop the serving
                logger.exception(
                    "route templates unreadable; metrics label every route %s", UNMATCHED
                )
                templates = []
            self._templates = [(compile_path(t)[0], t) for t in templates]
        for pattern, template in self._templates:
            if pattern.match(path):
                return template
        return UNMATCHED

    async def _serve(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        refusal = self._refuse_key(scope["path"], headers)
        if refusal is not None:
            await error_response(refusal, self._secrets, path=scope["path"])(scope, receive, send)
            return
        gated = scope["path"] not in UNGATED_PATHS
        if gated and await self._refused_for_load(scope, receive, send):
            return  # before the body is read: no slot is free anyway
        body = await self._read_body(scope, receive, send, headers)
        if body is None:
            return
        if gated and await self._refused_for_load(scope, receive, send):
            return
        if gated:
            self._in_flight += 1
            self._metrics.in_flight.inc()
        try:
            await self.app(scope, _replay(body, receive), send)
        finally:
            if gated:
                self._in_flight -= 1
                self._metrics.in_flight.dec()

    async def _refused_for_load(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Whether every slot is taken; if so, the 429 was answered here."""
        limit = self._settings.max_concurrent_requests
        if self._in_flight < limit:
            return False
        error = OverloadedError(f"more than {limit} requests in flight")
        await error_response(error, self._secrets, path=scope["path"])(scope, receive, send)
        return True

    def _refuse_key(self, path: str, headers: Headers) -> ApiError | None:
        """Why the request may not pass without (or with its) API key; None when it may."""
        if not self._api_keys or path in self._open_paths:
            return None
        if path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            return None  # the admin routes check their own keys
        if path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
            return None  # static files; the page's data calls carry the key
        try:
            bearer_key_fingerprint(headers.get("authorization"), self._api_keys, what="API key")
        except ApiError as error:
            return error
        return None

    async def _read_body(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers
    ) -> bytes | None:
        """The whole body; None when it was refused (answered here) or the client left."""
        limit = self._settings.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            error: ApiError = InputTooLargeError(
                f"the request body of {int(declared)} bytes is over the limit of {limit} bytes"
            )
            await error_response(error, self._secrets, path=scope["path"], close=True)(
                scope, receive, send
            )
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk: bytes = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        error = InputTooLargeError(
                            f"the request body is over the limit of {limit} bytes"
                        )
                        break
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            error = RequestTimeoutError(
                f"the request body was not sent in full within {self._settings.body_timeout_s} s"
            )
        await error_response(error, self._secrets, path=scope["path"], close=True)(
            scope, receive, send
        )
        return None
