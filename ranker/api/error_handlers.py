"""Every error answer is one row of the error table as JSON, with the request's id.

:func:`error_response` builds it; :func:`install_error_handlers` makes shoprank's errors,
pydantic's validation errors and Starlette's own (404, 405, a body it cannot parse) answer
through it. Unexpected exceptions are answered by the edge middleware (:mod:`ranker.api.edge`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexer.redaction import redact
from ranker.api.error_shapes import error_body
from ranker.api.errors import (
    ApiError,
    ForbiddenError,
    InputTooLargeError,
    InternalError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OverloadedError,
    RequestTimeoutError,
    RequestValidationFailedError,
    UnauthorizedError,
    api_error_for,
)
from ranker.api.logs import REQUEST_ID, REQUEST_ID_HEADER
from ranker.errors import ShoprankError

MAX_ECHOED_PATH = 200
"""Characters of a request path a 404 or 405 message repeats."""

_BY_STATUS: dict[int, type[ApiError]] = {
    400: MalformedRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    408: RequestTimeoutError,
    413: InputTooLargeError,
    422: RequestValidationFailedError,
    429: OverloadedError,
}
"""The row a Starlette HTTPException of that status answers as (404 and 405 have their own)."""


def _printable(text: str) -> str:
    """``text`` that encodes as UTF-8: a lone surrogate a client sent is escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(
    error: ApiError,
    secrets: Sequence[str] = (),
    *,
    path: str,
    headers: Mapping[str, str] | None = None,
    close: bool = False,
) -> JSONResponse:
    """The error's JSON body (in the shape of ``path``'s route family, see
    :mod:`ranker.api.error_shapes`) and status, with the request id (body and
    ``x-request-id``).

    ``close``: add ``Connection: close`` (a body left unread, an unexpected failure).
    """
    request_id = REQUEST_ID.get()
    message = _printable(redact(error.message, secrets))
    body = error_body(error, message, path=path, request_id=request_id)
    all_headers = {**error.response_headers(), **(headers or {})}
    if request_id is not None:
        all_headers[REQUEST_ID_HEADER] = request_id
    if close:
        all_headers["connection"] = "close"
    return JSONResponse(status_code=error.status_code, content=body, headers=all_headers)


def describe_validation(exc: RequestValidationError) -> ApiError:
    """Turn pydantic's error list into one clear message of the right class."""
    messages = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        kind = error.get("type", "")
        if kind == "json_invalid":
            detail = error.get("ctx", {}).get("error", "invalid JSON")
            return MalformedRequestError(f"malformed JSON: {detail}")
        if kind == "extra_forbidden":
            messages.append(f"unknown field {location!r}")
        elif kind == "missing":
            messages.append(f"missing field {location!r}")
        else:
            messages.append(f"{location or 'body'}: {error.get('msg', kind)}")
    return RequestValidationFailedError("; ".join(messages) or "invalid request")


def http_error(status: int, request: Request) -> ApiError:
    """The table's row for a Starlette HTTPException of ``status`` on ``request``."""
    path = request.url.path[:MAX_ECHOED_PATH]
    if status == 404:
        return NotFoundError(f"no route matches {path!r}")
    if status == 405:
        return MethodNotAllowedError(f"{path!r} does not take {request.method}")
    if status >= 500:
        return InternalError("internal error")
    return _BY_STATUS.get(status, MalformedRequestError)(f"the request was refused ({status})")


def install_error_handlers(app: FastAPI, secrets: Sequence[str]) -> None:
    """Answer shoprank's, validation's and Starlette's errors with :func:`error_response`."""

    @app.exception_handler(ShoprankError)
    async def _shoprank_error(request: Request, exc: ShoprankError) -> JSONResponse:
        return error_response(api_error_for(exc), secrets, path=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(describe_validation(exc), secrets, path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = http_error(exc.status_code, request)
        return error_response(error, secrets, path=request.url.path, headers=exc.headers)
