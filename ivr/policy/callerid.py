"""What a caller number from the network is worth: carriers send all sorts."""

from __future__ import annotations

import re

ANONYMOUS = frozenset({"", "anonymous", "unknown", "unavailable", "private", "restricted",
                       "withheld"})
_ALLOWED = re.compile(r"^\+?[0-9*#]{1,32}$")


def normalise_number(raw: str | None) -> str | None:
    """A dialable number ('+81312345678', '0312345678'), or None when withheld or unusable.

    Separators are dropped; anything else that is not a digit makes the number unusable
    rather than guessed at.
    """
    if raw is None:
        return None
    value = raw.strip().strip('"').strip()
    if value.lower() in ANONYMOUS:
        return None
    value = re.sub(r"[\s().-]", "", value)
    return value if _ALLOWED.match(value) else None
