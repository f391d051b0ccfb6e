"""Errors the admin services raise for bad input: the status an API answers with, the field
at fault, a message for a person. The CLI prints them; the API returns them as JSON."""

from __future__ import annotations

from ivr.protection.errors import ProtectionError


class AdminError(ProtectionError):
    """A ProtectionError with the HTTP status it means (422 unless said otherwise)."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 422):
        super().__init__(field or "", message)
        if not field or message.startswith(field):
            self.args = (message,)  # the message names its field already
        self.message = message
        self.field = field or None  # type: ignore[assignment]
        self.status = status


class NotFound(AdminError):
    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, field=field, status=404)


class Conflict(AdminError):
    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, field=field, status=409)
