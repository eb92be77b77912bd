"""How an error is rendered, per route family: one error table, two body shapes.

The status and ``error_type`` of an error always come from the one table
(:mod:`ranker.api.errors`); only the body's shape depends on the route family the request
path belongs to:

- shoprank's own shape, for every route but OpenAI's: ``{"error": message, "error_type":
  type, "request_id": id}`` (TEI and Cohere clients read this one);
- OpenAI's, for the routes the openai SDK calls (``/v1/embeddings``, ``/v1/models``):
  ``{"error": {"message", "type", "param", "code"}, "request_id"}``, with ``type`` and
  ``code`` both the table's ``error_type``, so ``openai.BadRequestError`` and its kin carry
  our message, type and code instead of only a status.
"""

from __future__ import annotations

from typing import Any, Literal

from ranker.api.compat.openai_schemas import OPENAI_PATHS
from ranker.api.errors import ApiError

ErrorShape = Literal["shoprank", "openai"]


def error_shape(path: str) -> ErrorShape:
    """The body shape of errors answered for a request to ``path``."""
    if any(path == route or path.startswith(route + "/") for route in OPENAI_PATHS):
        return "openai"
    return "shoprank"


def error_body(
    error: ApiError, message: str, *, path: str, request_id: str | None
) -> dict[str, Any]:
    """``error``'s JSON body in the shape of ``path``'s route family; ``message`` is the
    client-safe message (secrets masked)."""
    if error_shape(path) == "openai":
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": error.error_type,
                "param": None,
                "code": error.error_type,
                **error.details,
            }
        }
    else:
        body = {**error.body(), "error": message}
    if request_id is not None:
        body["request_id"] = request_id
    return body
