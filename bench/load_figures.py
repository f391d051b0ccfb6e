"""Turning one load run's raw material into figures: SIPp's message trace (what each call did,
on SIPp's clock), the RTP the callers received (bench/load_probe.py) and the recording files.
Every figure comes from these independent references, never from the controller's records
of itself (the server's records are used only to find a call's archive file)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.load_probe import Packet
from ivr.recordings.archive import coverage, read_mono, read_sides
from tests.e2e.rtp_capture import alaw_decode
from tests.e2e.stack import parse_message_trace
from tests.e2e.xcorr import find

RATE = 8000
LENGTH_TOLERANCE = 0.5  # s: a recording within this of the call (the target)
SIDE_COVERAGE = 0.5  # share of 20 ms frames with sound for a side to count as present


@dataclass
class Call:
    call_id: str
    caller: str = ""
    media_port: int = 0
    invite: float = 0.0
    ok: float | None = None  # the 200 OK to the INVITE, as SIPp received it
    bye: float | None = None  # the caller's BYE
    bye_ok: bool = False
    failure: str = ""  # a final error response, the server's BYE, ...

    @property
    def completed(self) -> bool:
        return self.ok is not None and self.bye is not None and self.bye_ok and not self.failure

    @property
    def seconds(self) -> float:
        return (self.bye or 0.0) - (self.ok or 0.0)


_CALL_ID = re.compile(r"^(?:Call-ID|i):\s*(\S+)", re.M | re.I)
_FROM_USER = re.compile(r"^(?:From|f):.*?sip:([^@;>]+)@", re.M | re.I)
_CSEQ = re.compile(r"^CSeq:\s*\d+\s+(\w+)", re.M | re.I)
_M_AUDIO = re.compile(r"^\s*m=audio (\d+) ", re.M)


def sipp_calls(messages: Path) -> dict[str, Call]:
    """Every call in a caller SIPp's -trace_msg file, by Call-ID."""
    calls: dict[str, Call] = {}
    for at, what, body in parse_message_trace(messages):
        cid = _CALL_ID.search(body)
        if cid is None:
            continue
        call = calls.setdefault(cid.group(1), Call(cid.group(1)))
        first = what.split("| ", 1)[-1]
        cseq = _CSEQ.search(body)
        method = cseq.group(1).upper() if cseq else ""
        sent = "sent" in what.split("|", 1)[0]
        if sent and first.startswith("INVITE "):
            call.invite = call.invite or at
            user = _FROM_USER.search(body)
            call.caller = user.group(1) if user else ""
            port = _M_AUDIO.search(body)
            call.media_port = int(port.group(1)) if port else 0
        elif not sent and first.startswith("SIP/2.0 ") and method == "INVITE":
            code = int(first.split()[1])
            if code == 200 and call.ok is None:
                call.ok = at
            elif code >= 300 and not call.failure:
                call.failure = f"INVITE answered {code}"
        elif sent and first.startswith("BYE "):
            call.bye = call.bye or at
        elif not sent and first.startswith("SIP/2.0 200") and method == "BYE":
            call.bye_ok = True
        elif not sent and first.startswith("BYE ") and not call.failure:
            call.failure = "the server hung up"
    for call in calls.values():
        if not call.completed and not call.failure:
            call.failure = ("no answer" if call.ok is None else
                            "no BYE sent" if call.bye is None else "BYE not answered")
    return calls


def operator_answered(messages: Path, since: float) -> set[str]:
    """The callers (From user) whose call the operators' SIPp phone answered with a 200 OK at
    or after `since`: the far end's own count of calls that reached an operator, for the
    baseline and the server alike (a caller still in the menu at their scripted hang-up
    completes on SIPp's side but never reached anyone)."""
    callers: dict[str, str] = {}
    answered: set[str] = set()
    for at, what, body in parse_message_trace(messages):
        cid = _CALL_ID.search(body)
        if at < since or cid is None:
            continue
        first = what.split("| ", 1)[-1]
        sent = "sent" in what.split("|", 1)[0]
        if not sent and first.startswith("INVITE "):
            user = _FROM_USER.search(body)
            callers.setdefault(cid.group(1), user.group(1) if user else "")
        elif sent and first.startswith("SIP/2.0 200"):
            cseq = _CSEQ.search(body)
            if cseq and cseq.group(1).upper() == "INVITE" and cid.group(1) in callers:
                answered.add(callers[cid.group(1)])
    return answered


def peak_concurrent(calls: dict[str, Call]) -> int:
    """The most calls answered and not yet hung up at one moment, on SIPp's clock: the load
    actually carried, which the rate and the call length may keep below --concurrency."""
    edges = sorted([(c.ok, 1) for c in calls.values() if c.ok is not None]
                   + [(c.bye, -1) for c in calls.values() if c.ok is not None and c.bye])
    level = peak = 0
    for _at, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def quantiles(values: list[float], scale: float = 1.0, digits: int = 1) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64) * scale
    return {"n": len(values), "p50": round(float(np.percentile(arr, 50)), digits),
            "p95": round(float(np.percentile(arr, 95)), digits),
            "p99": round(float(np.percentile(arr, 99)), digits),
            "max": round(float(arr.max()), digits)}


def _audio_packets(packets: list[Packet], start: float, end: float) -> list[Packet]:
    return [p for p in packets if p.pt == 8 and start <= p.at <= end]


@dataclass
class RtpFigures:
    gaps: list[float] = field(default_factory=list)
    expected: int = 0
    received: int = 0
    # s after the 200 OK: the greeting's first sound, found by correlation (a silence
    # generator's packets before it are no audio), and the first RTP packet of any kind.
    first_audio: list[float] = field(default_factory=list)
    first_packet: list[float] = field(default_factory=list)
    notice_at: list[float] = field(default_factory=list)  # s after the 200 OK
    notice_missed: int = 0
    no_rtp: int = 0


def _notice_template(path: Path) -> tuple[np.ndarray, float]:
    """A prompt's first second of sound (its leading silence would match any silence), and
    where that sound starts in the prompt (s)."""
    samples = read_mono(path).astype(np.float64) / 32768.0
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    start = int(loud[0]) if loud.size else 0
    return samples[start:start + RATE], start / RATE


def _sound_at(window: list[Packet], template: np.ndarray, lead: float) -> Packet | None:
    """The packet that carried the first sample of the prompt whose first second of sound
    is `template` (`lead` s into the prompt), found by correlation; None if not there."""
    pcm = np.concatenate([alaw_decode(p.payload) for p in window]) if window else []
    if len(pcm) < len(template):
        return None
    match = find(pcm, template)
    if match.peak < 0.6:
        return None
    sample = max(0, round((match.start - lead) * RATE))
    return window[min(len(window) - 1, sample // 160)]


def rtp_figures(calls: dict[str, Call], packets: dict[int, list[Packet]],
                notice_wav: Path, notice_due: float,
                greeting_wav: Path | None = None) -> RtpFigures:
    """notice_due: seconds after the answer the notice is expected (the greeting's length):
    the search for it covers the audio up to 10 s past that (under load the server was
    measured seconds late: a narrower window loses exactly the slowest calls).
    greeting_wav: the first prompt; its first sound is the first audio (without it, the
    first packet is)."""
    out = RtpFigures()
    template, lead = _notice_template(notice_wav)
    greeting = _notice_template(greeting_wav) if greeting_wav is not None else None
    for call in calls.values():
        if call.ok is None:
            continue
        audio = _audio_packets(packets.get(call.media_port, []), call.ok - 1.0,
                               (call.bye or call.ok + 3600) + 0.5)
        if not audio:
            out.no_rtp += 1
            continue
        times = np.array([p.at for p in audio])
        out.gaps.extend(np.diff(times).tolist())
        by_ssrc: dict[int, list[int]] = {}
        for p in audio:
            by_ssrc.setdefault(p.ssrc, []).append(p.seq)
        for seqs in by_ssrc.values():
            # Unwrap the 16-bit sequence numbers before counting what should have come.
            unwrapped = np.cumsum(np.concatenate(([0], (np.diff(seqs) + 32768) % 65536 - 32768)))
            out.expected += int(unwrapped.max() - unwrapped.min() + 1)
            out.received += len(seqs)
        out.first_packet.append(audio[0].at - call.ok)
        if greeting is None:
            out.first_audio.append(audio[0].at - call.ok)
        else:
            early = [p for p in audio if p.at <= call.ok + 10.0]
            found = _sound_at(early, *greeting)
            if found is not None:
                out.first_audio.append(found.at - call.ok)
        # Payloads in arrival order: where the notice's first second of sound is, in packets.
        # No audio by then (the first packet came seconds late): counted as not found.
        window = [p for p in audio if p.at <= call.ok + notice_due + 10.0]
        at = _sound_at(window, template, lead)
        if at is None:
            out.notice_missed += 1
            continue
        out.notice_at.append(at.at - call.ok)
    return out


@dataclass
class RecordingCheck:
    present: int = 0
    missing: list[str] = field(default_factory=list)
    length_ok: int = 0
    length_off: list[float] = field(default_factory=list)  # recording - call, s
    both_sides: int = 0
    problems: list[str] = field(default_factory=list)

    def check(self, caller: str, call: Call, left: np.ndarray, right: np.ndarray) -> None:
        self.present += 1
        off = len(left) / RATE - call.seconds
        self.length_off.append(off)
        if abs(off) <= LENGTH_TOLERANCE:
            self.length_ok += 1
        else:
            self.problems.append(f"{caller}: recording {off:+.2f} s from the call")
        sides = coverage(left), coverage(right)
        if min(sides) >= SIDE_COVERAGE:
            self.both_sides += 1
        else:
            self.problems.append(f"{caller}: side coverage {sides[0]:.2f} | {sides[1]:.2f}")


def check_archives(calls: dict[str, Call], archive_of: dict[str, Path]) -> RecordingCheck:
    """The server's calls: its stereo archive (left caller, right what the caller heard)."""
    out = RecordingCheck()
    for call in calls.values():
        path = archive_of.get(call.caller)
        if call.ok is None:
            continue
        if path is None or not path.exists():
            out.missing.append(call.caller)
            continue
        left, right, _rate = read_sides(path)
        out.check(call.caller, call, left, right)
    return out


def check_baseline(calls: dict[str, Call], folder: Path, how: str = "legs") -> RecordingCheck:
    """The plain dialplan's calls. how: "legs" (MixMonitor's -rx (caller) and -tx (heard)),
    "stereo" (MixMonitor's interleaved <caller>.raw), "spy" (ChanSpy's <caller>-timeline.raw,
    the same layout), "none" (no recording: nothing is checked)."""
    out = RecordingCheck()
    if how == "none":
        return out
    for call in calls.values():
        if call.ok is None:
            continue
        if how == "legs":
            rx, tx = folder / f"{call.caller}-rx.wav", folder / f"{call.caller}-tx.wav"
            if not (rx.exists() and tx.exists()):
                out.missing.append(call.caller)
                continue
            out.check(call.caller, call, read_mono(rx), read_mono(tx))
            continue
        raw = folder / (f"{call.caller}.raw" if how == "stereo" else
                        f"{call.caller}-timeline.raw")
        if not raw.exists():
            out.missing.append(call.caller)
            continue
        data = raw.read_bytes()
        stereo = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i2").reshape(-1, 2)
        out.check(call.caller, call, stereo[:, 0].copy(), stereo[:, 1].copy())
    return out


def _histogram_buckets(text: str, name: str) -> dict[str, dict[float, float]]:
    """A /metrics histogram's cumulative buckets by its label set (one label or none),
    whatever order the labels come in."""
    out: dict[str, dict[float, float]] = {}
    for m in re.finditer(rf'^{name}_bucket\{{([^}}]*)\}} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        bound = float(labels.pop("le"))
        key = next(iter(labels.values()), "")
        out.setdefault(key, {})[bound] = float(m.group(2))
    return out


def _ms(bound: float) -> float:
    """A bucket bound in ms; -1 for +Inf (above the last bound)."""
    return bound * 1000 if bound != float("inf") else -1


def histogram_quantiles(before: str, after: str, name: str,
                        qs: tuple[float, ...] = (0.5, 0.99)) -> dict[str, dict[str, float]]:
    """Quantiles (ms, upper bucket bounds; -1 above the last bound) of a /metrics histogram
    over the run, from the difference of two scrapes, by label ("" when it has none); "max" is
    the highest bucket anything fell in."""
    b0, b1 = _histogram_buckets(before, name), _histogram_buckets(after, name)
    result: dict[str, dict[str, float]] = {}
    for key, cum in b1.items():
        base = b0.get(key, {})
        bounds = sorted(cum)
        counts = [cum[b] - base.get(b, 0.0) for b in bounds]
        total = counts[-1] if counts else 0.0
        if total <= 0:
            continue
        row: dict[str, float] = {"n": total}
        for q in qs:
            bound = next(b for b, c in zip(bounds, counts, strict=True) if c >= q * total)
            row[f"p{q * 100:g}_ms_le"] = _ms(bound)
        row["max_ms_le"] = _ms(next(b for b, c in zip(bounds, counts, strict=True)
                                   if c >= total))
        result[key] = row
    return result


def agi_round_trips(before: str, after: str) -> dict[str, dict[str, float]]:
    """Each FastAGI command verb's round-trip during the run (the controller's
    `ivr_agi_command_seconds`)."""
    return histogram_quantiles(before, after, "ivr_agi_command_seconds")


def loop_lag(before: str, after: str) -> dict[str, float]:
    """How late the controller's event loop woke its tick task during the run
    (`ivr_event_loop_lag_seconds`), with the stalls it logged (held ≥ 0.2 s)."""
    row = histogram_quantiles(before, after, "ivr_event_loop_lag_seconds",
                              (0.5, 0.99, 0.999)).get("", {})

    def stalls(text: str) -> float:
        m = re.search(r"^ivr_event_loop_stalls_total (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    if not row:
        return {}
    gc = histogram_quantiles(before, after, "ivr_gc_pause_seconds", (0.99,))

    def gc_seconds(text: str) -> float:
        return sum(float(v) for v in re.findall(
            r'^ivr_gc_pause_seconds_sum\{generation="\d"\} (\S+)$', text, re.M))

    return {**row, "stalls": stalls(after) - stalls(before),
            "gc_seconds": round(gc_seconds(after) - gc_seconds(before), 3),
            "gc_full_passes": gc.get("2", {}).get("n", 0),
            "gc_full_max_ms_le": gc.get("2", {}).get("max_ms_le", 0)}


def store_statements(before: str, after: str, calls: int) -> dict[str, float]:
    """Statements the controller sent to its database during the run, per completed call,
    by verb and table (its /metrics counter `ivr_store_statements`), the total first."""
    def counts(text: str) -> dict[str, float]:
        return {m.group(1): float(m.group(2)) for m in re.finditer(
            r'^ivr_store_statements_total\{statement="([^"]+)"\} (\S+)$', text, re.M)}

    c0, c1 = counts(before), counts(after)
    sent = {k: v - c0.get(k, 0.0) for k, v in c1.items() if v > c0.get(k, 0.0)}
    if not calls or not sent:
        return {}
    per_call = {k: round(v / calls, 2) for k, v in sorted(sent.items(), key=lambda kv: -kv[1])}
    return {"total": round(sum(sent.values()) / calls, 2), **per_call}


def write_batches(before: str, after: str, calls: int) -> dict[str, float]:
    """The store writer's transactions per completed call, and those of them closed before
    their batch window because someone waited (a new call's record, a read's flush)."""
    def value(text: str, name: str) -> float:
        found = re.search(rf'^{name}_total (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    if not calls:
        return {}
    return {key: round((value(after, name) - value(before, name)) / calls, 2)
            for key, name in (("batches", "ivr_store_write_batches"),
                              ("hurried", "ivr_store_write_batches_hurried"))}
