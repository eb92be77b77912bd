"""Credentials never leave the process: one helper masks them in any text.

:func:`redact` masks the user-info part of URLs (``https://user:pass@host`` becomes
``https://user:***@host``, ``redis://token@host`` becomes ``redis://***@host``) and any
literal secret it is given. Logs, error bodies and ``/healthz`` all go through it;
:func:`secret_values` collects the secrets a settings object holds, and
:class:`RedactingFilter` applies the same masking to log records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_SECRET_CHARS = 4
"""Shorter literal secrets are not masked on their own (they would mask ordinary words)."""

_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:]*)(?P<password>:[^\s/?#@]*)?@"
)


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, user, password = match["scheme"], match["user"], match["password"]
    if password is None:
        # A lone user-info part is often a token (https://<token>@host): mask it whole.
        return f"{scheme}{MASK}@" if user else match.group(0)
    return f"{scheme}{user}:{MASK}@"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords (and lone URL user-info tokens) and every secret masked.

    ``secrets``: literal values to mask wherever they appear (passwords, API keys); values
    shorter than :data:`MIN_SECRET_CHARS` are ignored.
    """
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def secret_values(model: BaseModel) -> tuple[str, ...]:
    """The secrets ``model`` and its nested sections hold, to mask wherever they appear.

    Every ``SecretStr`` (each comma-separated part of a key list too), except that a secret
    URL (a broker's) contributes only its password; and the password (or lone user-info
    token) of every plain URL field.
    """
    found: list[str] = []

    def url_credentials(value: str) -> None:
        for match in _URL_USERINFO.finditer(value):
            if match["password"]:
                found.append(match["password"][1:])
            elif match["user"]:
                found.append(match["user"])

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if "://" in secret:
                url_credentials(secret)
            else:
                found.extend([secret, *(part for part in re.split(r"[,\s]+", secret) if part)])
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, str) and "://" in value:
            url_credentials(value)

    walk(model)
    return tuple(dict.fromkeys(secret for secret in found if len(secret) >= MIN_SECRET_CHARS))


class RedactingFilter(logging.Filter):
    """Masks credentials in a log record's message (rendered with its arguments)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(secrets: Iterable[str] = (), *, loggers: Iterable[str] = ("",)) -> None:
    """Add one :class:`RedactingFilter` to every handler of ``loggers`` (default: the root's).

    A handler that already has one gets its secrets updated instead, so calling this again
    (a second app in one process) adds nothing.
    """
    secrets = tuple(secrets)
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            existing = [f for f in handler.filters if isinstance(f, RedactingFilter)]
            if existing:
                existing[0].secrets = tuple(dict.fromkeys((*existing[0].secrets, *secrets)))
            else:
                handler.addFilter(RedactingFilter(secrets))
