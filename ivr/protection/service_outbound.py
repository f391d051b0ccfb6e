"""Outbound restrictions at run time: the supervisor PIN and the audit of an unlocked call.

The PIN is kept only as a salted scrypt hash in <data_dir>/secrets.toml (mode 0600, beside
the phone passwords), not in the settings document: that document is shown by the API and
kept in every settings version, and a short numeric PIN's hash is quick to brute-force
offline, so it must not travel. `ivr outbound pin` sets it; it is read at every check, so a
new PIN applies to the next call without a restart (each node has its own secrets file: set
it on every node).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ivr import credentials
from ivr.protection.rules_outbound import OutboundDecision
from ivr.protection.store_audit import AuditStore

PIN_FORMAT = re.compile(r"^[0-9]{4,12}$")
# Guessing across calls: after this many calls refused for a wrong PIN within the window,
# the operator's phone is not offered the PIN any more (the call is denied as by its rule)
# until the window has passed. A 4-digit PIN is otherwise found by redialling.
PIN_LOCK_CALLS = 3
PIN_LOCK_WINDOW = 3600.0
# scrypt with n=2**14, r=8, p=1: about 16 MB and a few tens of ms per check.
_N, _R, _P = 1 << 14, 8, 1


class PinError(ValueError):
    """A PIN that cannot be set (wrong form)."""


def hash_pin(pin: str) -> str:
    if not PIN_FORMAT.fullmatch(pin):
        raise PinError("pin: 4-12 digits (0-9), as typed on a phone keypad")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    enc = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${enc(salt).decode()}${enc(digest).decode()}"


def verify_pin(pin: str, stored: str | None) -> bool:
    """Constant-time comparison; a missing or malformed hash never matches."""
    if not stored or not PIN_FORMAT.fullmatch(pin or ""):
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def set_pin(secrets_path: Path, pin: str) -> None:
    credentials.set_outbound_pin_hash(secrets_path, hash_pin(pin))


def stored_pin_hash(secrets_path: Path) -> str | None:
    try:
        value = (credentials.read(secrets_path).get("outbound") or {}).get("pin_hash")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


@dataclass
class OutboundService:
    secrets_path: Path
    audit: AuditStore

    def pin_is_set(self) -> bool:
        return stored_pin_hash(self.secrets_path) is not None

    def check_pin(self, pin: str) -> bool:
        return verify_pin(pin, stored_pin_hash(self.secrets_path))

    async def pin_locked(self, operator: str, now: float) -> bool:
        """Too many calls from this operator ended on a wrong PIN lately (the audit log is
        the memory: it is shared by every node)."""
        refused = await self.audit.list(since=now - PIN_LOCK_WINDOW, actor=operator,
                                        action="outbound.pin_refused", limit=PIN_LOCK_CALLS)
        return len(refused) >= PIN_LOCK_CALLS

    async def unlocked(self, *, operator: str, call_id: str, number: str,
                       decision: OutboundDecision) -> None:
        """One call opened with the supervisor PIN: who dialled, which rule, which call."""
        await self.audit.record(
            actor=operator, role="operator", action="outbound.pin_unlock",
            target=f"call:{call_id}", before={"rule": decision.rule, "allowed": False},
            after={"rule": decision.rule, "allowed": True, "number": number},
            origin="phone")

    async def pin_refused(self, *, operator: str, call_id: str, rule: str,
                          attempts: int) -> None:
        """The PIN was wrong every time: the call ended (the digits are never kept)."""
        await self.audit.record(
            actor=operator, role="operator", action="outbound.pin_refused",
            target=f"call:{call_id}", before=None,
            after={"rule": rule, "attempts": attempts}, origin="phone")
