"""The API's closed error set: each error maps to exactly one HTTP status and error_type.

:class:`ApiError` derives from :class:`~ranker.errors.ShoprankError`. Errors raised below the
API (the registry's, the gate's, the backends', the workers client's) are turned into their
row by :func:`api_error_for`; anything else is a JSON 500 with a request id. The routes
document their rows with :func:`error_responses`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from ranker.api.schemas import ErrorResponse
from ranker.errors import InputError, ShoprankError


class ApiError(ShoprankError):
    """Base of every error the API answers with; subclasses fix status and type."""

    status_code = 500
    error_type = "internal"
    headers: ClassVar[Mapping[str, str]] = {}
    """Response headers the error adds (``WWW-Authenticate`` for 401)."""

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details: Mapping[str, Any] = dict(details or {})
        """Extra body fields beside ``error`` and ``error_type`` (a refused gate's reasons)."""

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error", "error_type", **details}``."""
        return {"error": self.message, "error_type": self.error_type, **self.details}

    def response_headers(self) -> dict[str, str]:
        """The response's headers: the class's, and the error's own (``Retry-After``)."""
        return dict(self.headers)


class EmptyInputError(ApiError):
    """A query or input that is empty or only whitespace."""

    status_code = 400
    error_type = "empty"


class MalformedRequestError(ApiError):
    """A body that is not valid JSON."""

    status_code = 400
    error_type = "malformed"


class UnauthorizedError(ApiError):
    """A request that needs a key (/admin; every route with API keys set) without a
    well-formed ``Authorization: Bearer <key>`` header."""

    status_code = 401
    error_type = "unauthorized"
    headers: ClassVar[Mapping[str, str]] = {"WWW-Authenticate": 'Bearer realm="shoprank"'}


class ForbiddenError(ApiError):
    """A bearer key that is not one of the configured keys (admin keys for /admin, else API
    keys)."""

    status_code = 403
    error_type = "forbidden"


class NotFoundError(ApiError):
    """No such route, model version, role or job."""

    status_code = 404
    error_type = "not_found"


class MethodNotAllowedError(ApiError):
    """A route asked with a method it does not take; ``Allow`` lists the ones it does."""

    status_code = 405
    error_type = "method_not_allowed"


class RequestTimeoutError(ApiError):
    """A body not sent in full within the body time-out; the connection is closed."""

    status_code = 408
    error_type = "timeout"


class GateRefusedError(ApiError):
    """The gate refused the candidate; the body's ``reasons`` say why (``force`` overrides)."""

    status_code = 409
    error_type = "promotion_refused"


class InputTooLargeError(ApiError):
    """An over-long text (with truncation off), too many documents or filter values, or a
    body over the size limit."""

    status_code = 413
    error_type = "too_large"


class RequestValidationFailedError(ApiError):
    """A body whose shape or values are wrong: unknown fields, bad types, out of range."""

    status_code = 422
    error_type = "validation"


class BadRequestError(ApiError):
    """A well-formed request the registry or the workers cannot do (an unknown role or job
    kind, nothing to roll back to)."""

    status_code = 422
    error_type = "bad_request"


class IntegrityFailedError(ApiError):
    """A model version whose files do not match its manifest's hashes; it never serves."""

    status_code = 422
    error_type = "integrity"


class BackendFailedError(ApiError):
    """The model backend failed to run (out of memory, a runtime's error); retry later."""

    status_code = 424
    error_type = "backend"


class OverloadedError(ApiError):
    """More requests in flight, or more work queued for a model, than the server takes;
    retry after ``Retry-After`` seconds."""

    status_code = 429
    error_type = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def response_headers(self) -> dict[str, str]:
        """With ``Retry-After``."""
        return {**super().response_headers(), "Retry-After": str(self.retry_after_s)}


class NotReadyError(ApiError):
    """The model or index the route needs is not loaded."""

    status_code = 503
    error_type = "unhealthy"


class IndexUnavailableError(ApiError):
    """The search index's cluster (OpenSearch) cannot be reached now; retry later."""

    status_code = 503
    error_type = "index_unavailable"


class JobBrokerUnavailableError(ApiError):
    """The job broker (Redis) cannot be reached now, so no job can be submitted or read."""

    status_code = 503
    error_type = "broker_unavailable"


class DeadlineExceededError(ApiError):
    """The request's deadline (header ``x-request-timeout-ms``) passed before its model ran
    it."""

    status_code = 504
    error_type = "deadline_exceeded"


class InternalError(ApiError):
    """Anything unexpected; the body carries a request id to find it in the log."""


@dataclass(frozen=True)
class ErrorRow:
    """One row of the documented error table."""

    status_code: int
    error_type: str
    meaning: str


ERROR_TABLE: tuple[ErrorRow, ...] = tuple(
    ErrorRow(cls.status_code, cls.error_type, (cls.__doc__ or "").strip())
    for cls in (
        EmptyInputError,
        MalformedRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        MethodNotAllowedError,
        RequestTimeoutError,
        GateRefusedError,
        InputTooLargeError,
        RequestValidationFailedError,
        BadRequestError,
        IntegrityFailedError,
        BackendFailedError,
        OverloadedError,
        InternalError,
        NotReadyError,
        IndexUnavailableError,
        JobBrokerUnavailableError,
        DeadlineExceededError,
    )
)
"""Status, error_type and meaning of every error, for the route docs and the README."""


def error_responses(
    *statuses: int, model: type[BaseModel] = ErrorResponse
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for ``statuses``: the error body (``model``: its shape for the
    route family), and each error_type of the table that a status carries with its
    meaning."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        rows = [row for row in ERROR_TABLE if row.status_code == status]
        if not rows:
            raise ValueError(f"no error of the table answers {status}")
        description = "; ".join(f"`{row.error_type}`: {row.meaning}" for row in rows)
        responses[status] = {"model": model, "description": description}
    return responses


ROUTE_ERROR_STATUSES = (400, 401, 403, 408, 413, 422, 424, 429, 500, 503, 504)
"""What a search, rerank or embed route can answer besides 200 (401 and 403 only with API
keys set)."""
ROUTE_ERROR_RESPONSES = error_responses(*ROUTE_ERROR_STATUSES)
"""Those statuses with shoprank's error body."""
ADMIN_ERROR_RESPONSES = error_responses(401, 403, 404, 408, 409, 413, 422, 429, 500, 503)
"""What an /admin route can answer besides its success."""


def api_error_for(exc: ShoprankError) -> ApiError:
    """The API error a shoprank error answers as: its own row, or the row of its kind.

    The scheduler's: overloaded → 429 with ``Retry-After``, past the deadline → 504,
    stopped → 503. A backend that fails (a failed batch too) → 424 ``backend``. Registry
    errors: no such version → 404, a version whose files changed → 422 ``integrity``, any
    other registry refusal, and a shop's input that cannot be read (``InputError``) → 422
    ``bad_request``. A refused gate → 409 with its reasons. The workers' broker errors →
    503, unknown job kinds → 422, unknown jobs → 404. Anything else is 500 ``internal`` with
    the (client-safe) message.
    """
    if isinstance(exc, ApiError):
        return exc
    from ranker import batching, promotion, registry
    from ranker.backends.base import BackendError

    if isinstance(exc, batching.SchedulerOverloadedError):
        return OverloadedError(exc.message, retry_after_s=exc.retry_after_s)
    if isinstance(exc, batching.DeadlineExceededError):
        return DeadlineExceededError(exc.message)
    if isinstance(exc, batching.SchedulerStoppedError):
        return NotReadyError(exc.message)
    if isinstance(exc, BackendError):
        return BackendFailedError(exc.message)

    if isinstance(exc, promotion.PromotionRefusedError):
        decision = exc.decision
        return GateRefusedError(
            exc.message,
            details={
                "reasons": list(decision.reasons),
                "failures": list(decision.failures),
                "gate": decision.as_dict(),
            },
        )
    if isinstance(exc, registry.VersionNotFoundError):
        return NotFoundError(exc.message)
    if isinstance(exc, registry.IntegrityError):
        return IntegrityFailedError(exc.message)
    if isinstance(exc, registry.RegistryError):
        return BadRequestError(exc.message)
    if isinstance(exc, InputError):
        return BadRequestError(exc.message)
    workers = sys.modules.get("workers.errors")  # its errors exist only once it is imported
    if workers is not None:
        for name, api_error in (
            ("BrokerUnavailableError", JobBrokerUnavailableError),
            ("UnknownJobKindError", BadRequestError),
            ("JobNotFoundError", NotFoundError),
        ):
            kind = getattr(workers, name, None)
            if isinstance(kind, type) and isinstance(exc, kind):
                return api_error(exc.message)
    return InternalError(exc.message)
