"""Listen, whisper, barge: the pure part. What a request must look like, which of the call's
channels each mode spies on, and the AMI Originate that does it. No I/O here (the service,
ivr/spy/service.py, asks Asterisk and records), so every rule is testable on plain data.

Nothing a caller or an admin typed reaches an AMI header or a dialplan argument: the phone is
a configured operator endpoint matched by a strict pattern, the call id a strict pattern, the
spied channel is named by the unique id Asterisk itself reported, and the number shown on the
supervisor's phone is cut to digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

# The dialplan context the supervisor's phone runs once answered (asterisk/extensions.conf.j2,
# section "listen, whisper, barge"): no CDR row, then ChanSpy.
SPY_CONTEXT = "ivr-spy"
RING_SECONDS = 30  # how long the supervisor's phone rings before Asterisk gives up

# Endpoint names as ivr.toml allows them; call ids are Asterisk unique ids
# (`<systemname>-<epoch>.<n>`): no comma, pipe, quote, space or line break can pass.
PHONE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
# A channel Asterisk names for an endpoint: PJSIP/<endpoint>-<8 hex digits>.
PJSIP_CHANNEL = re.compile(r"^PJSIP/([A-Za-z0-9_.-]+)-[0-9a-f]{8}$")
UP = "6"  # CoreShowChannel ChannelState: answered


class Mode(StrEnum):
    LISTEN = "listen"  # the supervisor hears both sides; nobody hears the supervisor
    WHISPER = "whisper"  # ... and the operator hears the supervisor, the caller does not
    BARGE = "barge"  # ... and both hear the supervisor


# ChanSpy's options per mode, as [ivr-spy] runs them (fixed there). q: no beep or channel
# name read out; E: leave when the spied channel hangs up; S: stop when nothing is left to spy
# on; u: the target is a unique id or a full channel name, exact (no prefix match: never
# another call), and the supervisor's digits cannot choose another channel. w: whisper to the
# spied channel only; B: to both sides of its bridge.
OPTIONS = {Mode.LISTEN: "qESu", Mode.WHISPER: "qESuw", Mode.BARGE: "qESuB"}


class SpyError(Exception):
    """A refused request: the HTTP status it means, the field at fault, a message naming the
    problem (the CLI prints it, the API returns it, the audit row keeps it)."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass(frozen=True)
class SpyRequest:
    call_id: str
    phone: str
    mode: Mode


@dataclass(frozen=True)
class Target:
    """The channel ChanSpy listens on, as Asterisk reported it."""

    channel: str
    uniqueid: str


def check_request(call_id: object, phone: object, mode: object,
                  operators: Iterable[str]) -> SpyRequest:
    """The request's form: a mode, a configured operator endpoint as the phone, a call id."""
    if not isinstance(mode, str) or mode not in {m.value for m in Mode}:
        raise SpyError(400, f"mode must be one of {', '.join(m.value for m in Mode)}", "mode")
    if not isinstance(phone, str) or not phone:
        raise SpyError(400, "phone is needed: the supervisor's operator endpoint (ivr.toml)",
                       "phone")
    if not PHONE.match(phone) or phone not in set(operators):
        raise SpyError(400, f"phone {printable(phone)!r} is not an operator endpoint in "
                       "ivr.toml", "phone")
    if not isinstance(call_id, str) or not CALL_ID.match(call_id):
        raise SpyError(400, f"call id {printable(call_id)!r} is not a call id (letters, "
                       "digits, '.', '_', '-')", "call_id")
    return SpyRequest(call_id, phone, Mode(mode))


def endpoint_of(channel: str) -> str | None:
    match = PJSIP_CHANNEL.match(channel)
    return match.group(1) if match else None


def call_channels(channels: Iterable[Mapping[str, str]], call_id: str) -> list[dict[str, str]]:
    """The call's channels (CoreShowChannel events): every channel of a call carries the
    caller's unique id as its Linkedid (Queue's Local members and the phones they dial too)."""
    return [dict(c) for c in channels
            if c.get("Event", "CoreShowChannel") == "CoreShowChannel"
            and c.get("Linkedid") == call_id and c.get("Channel")]


def choose_target(request: SpyRequest, channels: list[dict[str, str]],
                  operators: Iterable[str]) -> Target:
    """Which channel to spy on. Listen and barge: the call's own channel (the caller's, whose
    unique id is the call id): ChanSpy hears what it says and what it hears, and with B its
    whole bridge hears the supervisor. Whisper: the operator's phone channel, PJSIP/<op>-…
    (what is whispered is written to it, so it goes to the operator's phone only; on the
    caller's channel the caller would hear it: ASTERISK-NOTES, announcements)."""
    own = next((c for c in channels if c.get("Uniqueid") == request.call_id), None)
    if own is None:
        raise SpyError(404, f"no live call {request.call_id!r}: Asterisk has no channel with "
                       "that id (ended, or not a call id)", "call_id")
    parties = {endpoint_of(c["Channel"]) for c in channels}
    if request.phone in parties:
        raise SpyError(409, f"{request.phone} is on this call itself", "phone")
    if request.mode is not Mode.WHISPER:
        return _target(own)
    known = set(operators)
    answered = [c for c in channels if endpoint_of(c["Channel"]) in known
                and c.get("ChannelState") == UP and c.get("BridgeId")]
    if not answered:
        raise SpyError(409, "no operator is talking on this call yet: whisper needs one "
                       "(listen works)", "call_id")
    # Several (an escalation's new operator while the old leg ends): the newest.
    return _target(max(answered, key=lambda c: _sequence(c.get("Uniqueid", ""))))


def _target(channel: Mapping[str, str]) -> Target:
    uniqueid = channel.get("Uniqueid", "")
    if not CALL_ID.match(uniqueid):  # Asterisk's own; checked all the same
        raise SpyError(502, f"Asterisk reported a channel without a usable unique id: "
                       f"{printable(uniqueid)!r}", "call_id")
    return Target(channel=channel["Channel"], uniqueid=uniqueid)


def _sequence(uniqueid: str) -> tuple[float, int]:
    """'node-1764123456.42' -> (1764123456.0, 42): creation order of unique ids."""
    stamp, _, seq = uniqueid.rpartition("-")[2].partition(".")
    try:
        return float(stamp), int(seq or 0)
    except ValueError:
        return 0.0, 0


def shown_number(caller: str | None) -> str:
    """The caller's number for the supervisor's display: digits and a leading + only."""
    digits = re.sub(r"[^0-9]", "", caller or "")[:20]
    return ("+" if (caller or "").startswith("+") else "") + digits if digits else ""


def originate_action(request: SpyRequest, target: Target, caller: str | None) -> dict:
    """Ring the supervisor's phone; once answered it runs [ivr-spy] <mode>, which spies on
    the target. Async: the answer is "queued" at once, not after the phone is picked up."""
    number = shown_number(caller)
    label = f"{request.mode.value.capitalize()} {number or 'withheld'}"
    return {
        "Action": "Originate",
        "Channel": f"PJSIP/{request.phone}",
        "Context": SPY_CONTEXT,
        "Exten": request.mode.value,
        "Priority": "1",
        "Timeout": str(RING_SECONDS * 1000),
        "CallerID": f'"{label}" <{number}>',
        # The options are fixed per mode in the dialplan (OPTIONS is what it runs): nothing
        # sent here can add a ChanSpy option such as r() (record).
        "Variable": f"IVR_SPY_TARGET={target.uniqueid}",
        "Async": "true",
    }


def printable(value: object, limit: int = 80) -> str:
    """Client text made safe for a message, a log line and an audit row (escaped, cut)."""
    text = value if isinstance(value, str) else repr(value)
    safe = text.encode("unicode_escape").decode("ascii")
    return safe if len(safe) <= limit else safe[:limit] + "..."
