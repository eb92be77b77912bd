"""The API's closed error set: each error maps to exactly one HTTP status and error_type."""

from __future__ import annotations

from dataclasses import dataclass


class ApiError(Exception):
    """Base of every error the API answers with; subclasses fix status and type."""

    status_code = 500
    error_type = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmptyInputError(ApiError):
    """A query or input that is empty or only whitespace."""

    status_code = 400
    error_type = "empty"


class MalformedRequestError(ApiError):
    """A body that is not valid JSON."""

    status_code = 400
    error_type = "malformed"


class InputTooLargeError(ApiError):
    """An over-long text (with truncation off) or too many documents."""

    status_code = 413
    error_type = "too_large"


class RequestValidationFailedError(ApiError):
    """A body whose shape or values are wrong: unknown fields, bad types, out of range."""

    status_code = 422
    error_type = "validation"


class OverloadedError(ApiError):
    """More requests in flight than the server takes; retry later."""

    status_code = 429
    error_type = "overloaded"


class NotReadyError(ApiError):
    """The model or index the route needs is not loaded."""

    status_code = 503
    error_type = "unhealthy"


class IndexUnavailableError(ApiError):
    """The search index's cluster (OpenSearch) cannot be reached now; retry later."""

    status_code = 503
    error_type = "index_unavailable"


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
        InputTooLargeError,
        RequestValidationFailedError,
        OverloadedError,
        NotReadyError,
        IndexUnavailableError,
    )
)
"""Status, error_type and meaning of every error, for the route docs and the README."""
