"""The one error type protection services raise for bad input (CLI, API, settings)."""

from __future__ import annotations


class ProtectionError(ValueError):
    """Bad input to a protection service; the message names the field (`reason: empty`).

    Raised before anything changes: a refused request leaves the store as it was.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")
