"""Bearer keys: one parser of ``Authorization: Bearer <key>`` and one constant-time check,
for the admin keys and the API keys alike.

Keys are compared by their sha256 digests, against every configured key, so the time taken
says neither whether nor which key matched; a key is never echoed, only its fingerprint
(8 hex digits of its sha256) is ever recorded.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ranker.api.errors import ForbiddenError, UnauthorizedError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def bearer_key_fingerprint(header: str | None, keys: Sequence[str], *, what: str) -> str:
    """The fingerprint of the bearer key in ``header``, when it is one of ``keys``.

    No header or a malformed one raises UnauthorizedError (401), a key that is not one of
    ``keys`` ForbiddenError (403). ``what`` names the key in the messages ("admin key").
    """
    if header is None:
        raise UnauthorizedError(f"this route needs 'Authorization: Bearer <{what}>'")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        raise UnauthorizedError(f"malformed Authorization header; send 'Bearer <{what}>'")
    given = _digest(key)
    matched = False
    for candidate in keys:  # every key, so the time taken does not say which one matched
        matched |= hmac.compare_digest(given, _digest(candidate))
    if not matched:
        raise ForbiddenError(f"that {what} is not valid")
    return given.hex()[:8]
