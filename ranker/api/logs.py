"""Request ids in logs: the id of the request being served, and an optional JSON log format.

The edge middleware sets :data:`REQUEST_ID` for each request; sync routes run in a thread
that copies the context, so every record logged while serving it can carry the id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

REQUEST_ID: ContextVar[str | None] = ContextVar("shoprank_request_id", default=None)
"""The id of the request this code serves; None outside a request."""

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

LogFormat = Literal["text", "json"]


def sane_request_id(value: str | None) -> str | None:
    """``value`` when it is a usable id (1-128 letters, digits, ``.``, ``_``, ``:``, ``-``)."""
    if value is None or _SANE_REQUEST_ID.fullmatch(value) is None:
        return None
    return value


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the current request's id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a record: time, level, logger, message, request_id, and the
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


def install_log_format(log_format: LogFormat, *, loggers: Iterable[str] = ("",)) -> None:
    """Give every handler of ``loggers`` a :class:`RequestIdFilter`, and with ``json`` a
    :class:`JsonFormatter`; calling it again adds nothing."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())
            if log_format == "json":
                handler.setFormatter(JsonFormatter())
