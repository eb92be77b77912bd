"""shoprank's error root. Every error shoprank raises on purpose derives from it, so the API
maps each kind to one HTTP status in one table (``ranker.api.errors``)."""

from __future__ import annotations


class ShoprankError(Exception):
    """Base of shoprank's own errors; the message is safe to show to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(ShoprankError, ValueError):
    """A shop's input (a catalog, judgments or mapping file, or a flag) that cannot be used
    as given; the message names the file, line and column where it can."""
