"""Errors the admin services raise for bad input: the status an API answers with, the field
at fault, a message for a person. The CLI prints them; the API returns them as JSON."""

from __future__ import annotations


class AdminError(ValueError):
    def __init__(self, message: str, *, field: str | None = None, status: int = 422):
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


class NotFound(AdminError):
    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, field=field, status=404)


class Conflict(AdminError):
    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, field=field, status=409)
