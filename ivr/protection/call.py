"""What the inbound decision found about one caller, carried through the rest of the call.

The FastAGI handler decides it once per call (ivr/protection/rules_inbound.py) and hands it on
when the caller is queued (ivr/agi/desk.py): flags and the repeat count become the operator
phone's ring display, a tighter talk-time limit replaces the desk's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallProtection:
    flags: frozenset[str] = frozenset()  # e.g. {"repeat", "withheld", "harassment"}
    repeat_count: int | None = None  # calls from this number in the deciding window
    ring_prefix: str = ""  # put before the caller name on the ringing phone: "[R3]", "[!]"
    alert_info: str = ""  # Alert-Info header value for a distinct ring ("" = none)
    talk_limit: float | None = None  # seconds; a repeat step's tighter limit, else the desk's


NONE = CallProtection()
