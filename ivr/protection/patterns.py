"""Block values: exact numbers, prefixes and Asterisk-style patterns, matched safely.

A pattern is written in the notation dialplan writers know (`_0990XXXXXX`, `_0120.`):
X = 0-9, Z = 1-9, N = 2-9, [1-5] / [137] = one of these digits, `.` = one or more
characters, `!` = zero or more, digits, `*`, `#` and a leading `+` stand for themselves, `-`
is only for readability. It is translated, symbol by symbol, into a regular expression we
write ourselves: the admin's text is never used as a regex. Patterns match the number's
national form (ivr/policy/callerid.py), the same form exact numbers and prefixes are kept in.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_LENGTH = 64
_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}
_LITERALS = set("0123456789*#")


class PatternError(ValueError):
    """Why a pattern is not acceptable (the service adds the field name)."""


def canonical_pattern(text: str) -> str:
    """The stored form: leading `_`, upper-case letters, no `-`; PatternError if malformed."""
    value = text.strip()
    if value.startswith("_"):
        value = value[1:]
    value = re.sub(r"-(?![^\[]*\])", "", value).upper()  # '-' outside [] is decoration
    compile_pattern(value)
    return "_" + value


def compile_pattern(text: str) -> re.Pattern[str]:
    """The regex for a pattern (with or without its leading `_`)."""
    return _compile(text[1:] if text.startswith("_") else text)


@lru_cache(maxsize=1024)  # pure function of the text: caching it caches no block state
def _compile(body: str) -> re.Pattern[str]:
    if not body:
        raise PatternError("empty pattern")
    if len(body) > MAX_LENGTH:
        raise PatternError(f"longer than {MAX_LENGTH} characters")
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch in _CLASSES:
            out.append(_CLASSES[ch])
        elif ch in _LITERALS:
            out.append(re.escape(ch))
        elif ch == "+" and i == 0:
            out.append(r"\+")
        elif ch in ".!":
            if i != len(body) - 1:
                raise PatternError(f"{ch!r} is allowed only at the end (position {i + 1})")
            # Numbers are digits, * and # (normalised): nothing else can follow.
            out.append("[0-9*#]+" if ch == "." else "[0-9*#]*")
        elif ch == "[":
            end = body.find("]", i)
            if end < 0:
                raise PatternError(f"'[' at position {i + 1} is not closed")
            out.append(_digit_class(body[i + 1:end], i + 1))
            i = end
        else:
            raise PatternError(f"{ch!r} at position {i + 1} is not allowed "
                               "(digits, * # X Z N [..] . ! only)")
        i += 1
    return re.compile("".join(out))


def _digit_class(inside: str, position: int) -> str:
    """[1-5], [137], [0-35-9]: digits and ascending digit ranges only."""
    if not inside:
        raise PatternError(f"empty [] at position {position}")
    digits: set[str] = set()
    j = 0
    while j < len(inside):
        ch = inside[j]
        if not ch.isascii() or not ch.isdigit():
            raise PatternError(f"[{inside}] at position {position}: only digits and ranges")
        if j + 2 < len(inside) and inside[j + 1] == "-":
            last = inside[j + 2]
            if not last.isascii() or not last.isdigit() or last < ch:
                raise PatternError(f"[{inside}] at position {position}: bad range {ch}-{last}")
            digits.update(str(d) for d in range(int(ch), int(last) + 1))
            j += 3
        else:
            digits.add(ch)
            j += 1
    return "[" + "".join(sorted(digits)) + "]"


def matches(kind: str, value: str, number: str) -> bool:
    """Whether a block's value covers a normalised number."""
    if kind == "exact":
        return number == value
    if kind == "prefix":
        return number.startswith(value)
    if kind == "pattern":
        try:
            return compile_pattern(value).fullmatch(number) is not None
        except PatternError:
            return False  # a stored value was validated when added; never crash a call on it
    return False


def specificity(kind: str, value: str) -> tuple[int, int]:
    """How narrowly a block value picks numbers, for choosing among several that match:
    an exact number first, then the longer prefix, then the pattern with more fixed
    characters."""
    if kind == "exact":
        return (3, len(value))
    if kind == "prefix":
        return (2, len(value))
    fixed = sum(1 for ch in value.lstrip("_") if ch in _LITERALS)
    return (1, fixed)
