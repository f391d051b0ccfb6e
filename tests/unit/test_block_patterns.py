"""Block values: Asterisk-style patterns compiled by us, never the admin's text as a regex."""

from __future__ import annotations

import time

import pytest

from ivr.protection.errors import ProtectionError
from ivr.protection.patterns import (
    PatternError,
    canonical_pattern,
    compile_pattern,
    matches,
    specificity,
)
from ivr.protection.service_blocks import parse_expiry


@pytest.mark.parametrize(("pattern", "number", "hit"), [
    ("_0990XXXXXX", "0990123456", True),
    ("_0990XXXXXX", "09901234567", False),
    ("_0990XXXXXX", "0991123456", False),
    ("_0120.", "0120123456", True),
    ("_0120.", "0120", False),
    ("_0120!", "0120", True),
    ("_0[3-6]NXXXXXXX", "0332345678", True),
    ("_0[3-6]NXXXXXXX", "0311345678", False),
    ("_0[37]ZXXXXXXX", "0712345678", True),
    ("_0[37]ZXXXXXXX", "0512345678", False),
    ("_+1NXX.", "+12125550100", True),
    ("_X.", "a123", False),
])
def test_patterns(pattern, number, hit):
    assert (compile_pattern(pattern).fullmatch(number) is not None) is hit
    assert matches("pattern", pattern, number) is hit


@pytest.mark.parametrize("bad", ["", "_", "_.*", "_(0)+", "_0[", "_0[]", "_0[a-z]",
                                 "_0[5-1]", "_09.9", "_0\\d", "_０１２０", "_0" * 40,
                                 "_0120|0990", "_0120$", "_0\n1"])
def test_bad_patterns_refused(bad):
    with pytest.raises(PatternError):
        canonical_pattern(bad)


def test_canonical_form_and_catastrophic_input():
    assert canonical_pattern("0120-xxx-xxx") == "_0120XXXXXX"
    # A stored value that is somehow malformed matches nothing instead of raising.
    assert matches("pattern", "_((", "0312345678") is False
    started = time.monotonic()
    assert not matches("pattern", "_" + "X" * 30 + "!", "0" * 1000 + "a")
    assert time.monotonic() - started < 0.5


def test_exact_and_prefix_and_specificity():
    assert matches("exact", "0312345678", "0312345678")
    assert not matches("exact", "0312345678", "03123456789")
    assert matches("prefix", "0120", "0120444444") and not matches("prefix", "0120", "0312")
    ranked = sorted([("pattern", "_0120XXXXXX"), ("exact", "0120444444"),
                     ("prefix", "0120"), ("prefix", "01204")],
                    key=lambda kv: specificity(*kv), reverse=True)
    assert ranked == [("exact", "0120444444"), ("prefix", "01204"), ("prefix", "0120"),
                      ("pattern", "_0120XXXXXX")]


def test_parse_expiry():
    now = 1_700_000_000.0
    assert parse_expiry("30d", now) == now + 30 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry(None, now) is None and parse_expiry(" ", now) is None
    end = parse_expiry("2026-12-31", now, "Asia/Tokyo")
    assert end == 1798729200.0  # 2027-01-01 00:00 JST: through the whole day
    for bad in ("soon", "30x", "2026-13-01"):
        with pytest.raises(ProtectionError, match=r"^expires: "):
            parse_expiry(bad, now)
