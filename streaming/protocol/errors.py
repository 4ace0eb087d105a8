"""The error a client mistake becomes: an `error` event, and the session goes on.

Kept in its own module so the parsing and validation modules can raise it
without importing the event definitions (which import them).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A client mistake, reported as an `error` event; the session goes on."""

    def __init__(self, code: str, message: str, param: str | None = None, event_id: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.event_id, self.type = code, message, param, event_id, type
