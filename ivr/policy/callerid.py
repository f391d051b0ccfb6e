"""What a caller number from the network is worth: carriers send all sorts.

Every number the system compares (block list, repeat counts, outbound rules, the call record)
goes through `normalise_number` once, so `+81 3-1234-5678`, `0312345678` and `81312345678`
are one number: the national form `0312345678`. Numbers of other countries keep `+<cc>...`.
"""

from __future__ import annotations

import re

ANONYMOUS = frozenset({"", "anonymous", "unknown", "unavailable", "private", "restricted",
                       "withheld"})
_ALLOWED = re.compile(r"^\+?[0-9*#]{1,32}$")
_SEPARATORS = re.compile(r"[\s().\-\u2010-\u2015\u2212\u30fc\uff0d]")
DEFAULT_COUNTRY = "81"  # Japan; national numbers start with the trunk prefix 0
TRUNK_PREFIX = "0"
# A Japanese national significant number (without the 0) has 9 or 10 digits.
_NATIONAL_LENGTHS = (9, 10)


def normalise_number(raw: str | None, country: str = DEFAULT_COUNTRY) -> str | None:
    """A dialable number in one canonical form, or None when withheld or unusable.

    Separators are dropped (full-width digits become ASCII); anything else that is not a
    digit makes the number unusable rather than guessed at. `+<country>` and `00<country>`
    (and `<country>` followed by a national number's length) become the national form.
    """
    if raw is None:
        return None
    value = raw.strip().strip('"').strip()
    if value.lower() in ANONYMOUS:
        return None
    value = _SEPARATORS.sub("", value).translate(_FULLWIDTH)
    if not _ALLOWED.match(value):
        return None
    return _national(value, country)


def _national(value: str, country: str) -> str:
    if value.startswith("+"):
        digits = value[1:]
        if digits.startswith(country) and len(digits) > len(country):
            return TRUNK_PREFIX + digits[len(country):]
        return value
    if value.startswith("00" + country) and len(value) - 2 - len(country) in _NATIONAL_LENGTHS:
        return TRUNK_PREFIX + value[2 + len(country):]
    if (value.startswith(country) and not value.startswith(TRUNK_PREFIX)
            and len(value) - len(country) in _NATIONAL_LENGTHS):
        return TRUNK_PREFIX + value[len(country):]
    return value


_FULLWIDTH = str.maketrans("０１２３４５６７８９＋＊＃", "0123456789+*#")
