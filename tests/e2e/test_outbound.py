"""Outbound restrictions (発信規制) end to end: SIPp operator phones that authenticate and dial,
a SIPp carrier answering for the called party, and Python RTP peers that keep what each phone
received (tests/e2e/rtp_peer.py), all on one stack, the four calls at once.

- allowed: the carrier gets the INVITE; the called party hears the recording notice (found
  by correlation in what the carrier's media peer received) before any operator audio (the
  operator's 1 kHz tone), and the operator hears the called party (600 Hz) only after the
  notice's end (both on the same test-process clock); the notice is in the called party's
  recording; the record is outbound, answered, rule default:allow;
- denied: no INVITE at the carrier; the operator hears the refusal (correlation in the
  operator's received audio and in the call's recording); the record says refused and the rule;
- an emergency number under the trainee's deny-all default reaches the carrier;
- a PIN unlock: one wrong PIN, then the right one (RFC 2833 from the operator's peer); the
  call goes out; the audit log has the unlock; the digits are nowhere in the logs or records.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from ivr.audio.wav import frame_levels_dbfs, read_wav
from ivr.protection.service_outbound import PIN_LOCK_CALLS, OutboundService
from ivr.protection.store_audit import AuditStore
from ivr.store import Database
from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import ts
from tests.e2e.recordings import call_recording, called_recording, tone_seconds
from tests.e2e.rtp_peer import RtpPeer, audio_packets, pcm
from tests.e2e.stack import (
    IVR,
    PROJECT,
    SIPP_DIR,
    SippPeer,
    Stack,
    free_port,
    free_udp_pair_base,
)
from tests.e2e.xcorr import find

PIN = "739146"
MIN_PEAK = 0.9  # the prompt as the phone received it
MIN_LEAD = 0.3  # ... well above the best correlation anywhere else
RECORDING_PEAK = 0.8  # the prompt in a recording with late frames (see in_recording)
CALLED_HZ = 600.0  # the called party's voice (carrier's media peer)
OPERATOR_HZ = 1000.0  # the operator's voice


def protection(stack: Stack) -> Path:
    """The example protection.yaml, plus a trainee (op1003) whom every number is denied."""
    doc = yaml.safe_load((PROJECT / "protection.yaml").read_text())
    doc["outbound"]["operator_defaults"] = {"op1003": {"action": "deny", "reason": "trainee"}}
    path = stack.root / "protection.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return path


class Carrier:
    def __init__(self, stack: Stack, port: int):
        self.media = RtpPeer(CALLED_HZ)
        self.sipp = SippPeer(stack.root / "sipp-carrier", [
            "-sf", str(SIPP_DIR / "carrier.xml"), "-i", "127.0.0.1", "-p", str(port),
            "-set", "media", str(self.media.port), "-mi", "127.0.0.1",
            "-mp", str(free_udp_pair_base()), "-t", "u1"]).start()
        stack.peers.append(self.sipp)

    def invites(self) -> dict[str, tuple[float, int]]:
        """Request-URI user -> (when SIPp received the INVITE, Asterisk's RTP port)."""
        out = {}
        for t, what, body in self.sipp.messages():
            m = re.search(r"\| INVITE sip:([^@]+)@", what)
            if "received" in what and m:
                port = re.search(r"^m=audio (\d+)", body, re.M)
                out[m.group(1)] = (t, int(port.group(1)) if port else 0)
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    carrier_port = free_port(socket.SOCK_DGRAM)
    extra = f'[trunk]\noutbound_uri = "sip:127.0.0.1:{carrier_port}"\n'
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       extra)
    protection(stack)  # ivr.toml's default: protection.yaml beside it, read at start
    run = subprocess.run([str(IVR), "outbound", "pin", "--stdin", "-c", str(stack.config_path)],
                         input=PIN + "\n", capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert PIN not in run.stdout + run.stderr
    stack.start_controller()
    stack.carrier = Carrier(stack, carrier_port)
    yield stack
    stack.carrier.media.close()
    stack.close()


def prompt(stack: Stack, name: str, lang: str = "ja") -> np.ndarray:
    """A prompt as rendered, less its last 0.1 s (digital silence after the last word):
    a file's final partial frame does not always reach the phone whole."""
    return read_wav(stack.data / "prompts" / lang / f"{name}.wav").samples[:-800]


def seconds_of(stack: Stack, name: str) -> float:
    return len(prompt(stack, name)) / 8000


def dial(stack: Stack, operator: str, number: str, *, hold: float | None,
         keys: list[tuple[float, str]] | None = None) -> tuple[SippPeer, RtpPeer]:
    """An operator phone dials `number`; hold=None waits for Asterisk to hang up."""
    secrets = tomllib.loads((stack.data / "secrets.toml").read_text())
    media = RtpPeer(OPERATOR_HZ, keys)
    workdir = stack.root / f"sipp-dial-{operator}-{len(stack.peers)}"
    workdir.mkdir(parents=True)
    csv = workdir / "operator.csv"
    csv.write_text(f"SEQUENTIAL\n{operator};{media.port};{'wait' if hold is None else 'bye'};\n")
    peer = SippPeer(workdir, [
        f"127.0.0.1:{stack.ports['sip']}", "-sf", str(SIPP_DIR / "outbound_operator.xml"),
        "-s", number, "-inf", str(csv), "-m", "1", "-l", "1",
        "-au", operator, "-ap", secrets["operator_passwords"][operator],
        "-d", str(round((hold or 0) * 1000)),
        "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
        "-mi", "127.0.0.1", "-mp", str(free_udp_pair_base()), "-t", "u1",
        "-timeout", "120s", "-timeout_error"]).start()
    stack.peers.append(peer)
    return peer, media


def located(packets, signal_pos: float) -> float:
    """Wall-clock arrival of the packet holding sample `signal_pos` s into pcm(packets)."""
    index = min(len(packets) - 1, max(0, int(signal_pos * 8000) // 160))
    return packets[index].at


def first_tone(packets, hz: float, run: int = 3) -> int | None:
    """Index of the first of `run` packets in a row, each dominated by a steady `hz` tone and
    arriving within 60 ms of the one before (a steady stream, not a stray frame)."""
    freqs = np.fft.rfftfreq(160, 1 / 8000)
    samples = pcm(packets).astype(np.float64)
    count = 0
    for i in range(len(samples) // 160):
        spectrum = np.abs(np.fft.rfft(samples[160 * i:160 * (i + 1)])) ** 2
        total = spectrum.sum()
        tone = total > 0 and spectrum[np.abs(freqs - hz) < 60].sum() / total > 0.9
        steady = count == 0 or packets[i].at - packets[i - 1].at < 0.06
        count = count + 1 if tone and steady else (1 if tone else 0)
        if count == run:
            return i - run + 1
    return None


def squeezed(x: np.ndarray, run: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """The signal without its runs of `run` or more exact zeros, and where each kept sample
    was. A prompt's own digital silence and the silence a recorder writes while a prompt's
    frames are late both go, so what is left can be compared sample for sample."""
    zero = np.concatenate(([False], np.asarray(x) == 0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    keep = np.ones(len(x), dtype=bool)
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if end - start >= run:
            keep[start:end] = False
    return np.asarray(x)[keep], np.flatnonzero(keep)


def in_recording(samples: np.ndarray, template: np.ndarray) -> tuple[float, float, float]:
    """The whole prompt found in a recording: (peak, where it starts, how much longer it took
    there than in the file, s). A recording keeps the wall clock, so when the prompt's frames
    were late (a loaded machine) the recorder wrote silence meanwhile (measured: gaps of
    20-80 ms, 0.3 s in all over a 7.5 s notice, five test stacks sharing two cores), which a
    plain correlation takes for a mismatch: the exact-zero runs are taken out of both first,
    then the prompt must be there, in order. Partly filled frames at the gaps keep the peak
    below 1 (0.92 measured): RECORDING_PEAK, against about 0.1 without the prompt."""
    sig, where = squeezed(samples)
    tpl, tpl_where = squeezed(template)
    m = find(sig, tpl)
    assert m.peak >= RECORDING_PEAK and m.peak - m.runner_up >= MIN_LEAD, m
    first = where[max(0, round(m.start * 8000))]
    # The prompt's last partial frame (under 20 ms) may go out with the next frame, after
    # the guard: the span is measured to one frame before the end.
    last = where[min(len(where) - 1, round(m.end * 8000) - 161)]
    stretch = (last - first - (tpl_where[-161] - tpl_where[0])) / 8000
    assert -0.01 <= stretch < 1.0, stretch
    return m.peak, first / 8000, stretch


def record_for(stack: Stack, operator: str, did: str) -> dict:
    return stack.call_record(
        lambda c: c["direction"] == "outbound" and c["operator"] == operator
        and c["did"] == did and c["outcome"] and c["recording_sha256"],
        timeout=90, what=f"finished outbound record {operator} -> {did}")


def kinds(record: dict) -> list[str]:
    return [e["kind"] for e in record["events"]]


@pytest.fixture(scope="module")
def calls(stack):
    notice = seconds_of(stack, "notice")
    wrong = seconds_of(stack, "outbound_pin_wrong")
    right_at = 1.0 + 0.8 + wrong + 1.5  # during the second PIN request, after the wrong-PIN prompt
    pin_keys = [(1.0 + 0.15 * i, k) for i, k in enumerate("1111#")]
    pin_keys += [(right_at + 0.15 * i, k) for i, k in enumerate(PIN + "#")]
    placed = {
        "allowed": dial(stack, "op1001", "0312345678", hold=notice + 8),
        "denied": dial(stack, "op1002", "0990123456", hold=None),
        "emergency": dial(stack, "op1003", "110", hold=6),
        "letters": dial(stack, "op1001", "op1002", hold=None),
        "pin": dial(stack, "op1002", "+15551234567", hold=right_at + 3 + notice + 5,
                    keys=pin_keys),
    }
    for name, (peer, _media) in placed.items():
        result = peer.wait(120)
        assert result.returncode == 0, (name, (result.workdir / "screen.log").read_text()[-3000:])
    yield placed
    for _peer, media in placed.values():
        media.close()


def test_allowed_call_notice_heard_by_called_party_before_the_operator(stack, calls):
    _peer, operator_media = calls["allowed"]
    invites = stack.carrier.invites()
    assert "0312345678" in invites, invites
    _invited_at, asterisk_port = invites["0312345678"]
    packets = audio_packets(stack.carrier.media.stream_from_port(asterisk_port))
    heard = pcm(packets)
    notice = find(heard, prompt(stack, "notice"))
    assert notice.peak >= MIN_PEAK and notice.peak - notice.runner_up >= MIN_LEAD, notice
    # The notice's last word (prompts end in a little digital silence; a last partial frame
    # makes the template's final samples run into the next packet).
    levels = frame_levels_dbfs(prompt(stack, "notice"), 8000, 10.0)
    speech_end = notice.start + (int(np.nonzero(levels > -40)[0][-1]) + 1) * 0.01
    notice_end = located(packets, speech_end)
    # Not one frame of the operator's voice reaches the called party before the notice's
    # end; their steady voice only after the guard (0.5 s; measured: one stray 20 ms frame
    # of it arrives as the notice playback finishes, before the bridge).
    first_frame = first_tone(packets, OPERATOR_HZ, run=1)
    operator_voice = first_tone(packets, OPERATOR_HZ)
    assert first_frame is not None and operator_voice is not None
    assert first_frame * 160 >= round(notice.end * 8000) - 160, (first_frame, notice)
    assert packets[first_frame].at > notice_end
    operator_voice_at = packets[operator_voice].at
    assert operator_voice_at - notice_end >= 0.3, (operator_voice_at, notice_end)
    # ... and the operator hears the called party only after it too (same test clock).
    op_packets = audio_packets(operator_media.all_packets())
    op_heard = pcm(op_packets)
    called_voice = first_tone(op_packets, CALLED_HZ)
    assert called_voice is not None
    called_voice_at = op_packets[called_voice].at
    assert called_voice_at - notice_end >= 0.3, (called_voice_at, notice_end)
    assert find(op_heard, prompt(stack, "notice")).peak < 0.6  # the operator did not hear it

    record = record_for(stack, "op1001", "0312345678")
    assert record["rule"] == "default:allow" and record["outcome"] == "answered"
    assert record["hangup_by"] == "operator" and record["caller"] is None
    assert record["desk"] is None or record["desk"] in ("sales", "support")
    assert ts(record["connected_at"]) >= ts(record["notice_ended_at"])
    for kind in ("outbound_decision", "called_answered", "notice_started", "notice_finished",
                 "connected", "hung_up"):
        assert kind in kinds(record), kinds(record)
    # The notice is in the called party's recording, what they heard, at its true place.
    # Archived (stereo: left the called party, right what they heard) and hashed like the
    # call's own recording (called_recording checks the file's sha256 against the event's).
    called = next(e for e in record["events"] if e["kind"] == "called_answered")
    started_as = Path(called["data"]["recording"])
    finalised = stack.call_record(
        lambda c: c["id"] == record["id"]
        and "called_recording_finalised" in kinds(c), timeout=30, what="called recording hash")
    archived = called_recording(finalised)
    assert archived.path.parent == started_as.parent
    assert archived.path.name.rsplit(".", 1)[0] == started_as.stem
    tx = archived.right.samples
    peak, _start, stretch = in_recording(tx, prompt(stack, "notice"))
    assert find(archived.left.samples, prompt(stack, "notice")).peak < 0.3
    # Recorded whole, every party on its side: the operator's archive holds the far end
    # (left) and the operator (right); the called party's holds them (left) and what they
    # heard (right: the notice, then the operator). Talk: about 8 s.
    call = call_recording(record)
    for side, hz, other_hz in ((call.left, CALLED_HZ, OPERATOR_HZ),
                               (call.right, OPERATOR_HZ, CALLED_HZ),
                               (archived.left, CALLED_HZ, OPERATOR_HZ),
                               (archived.right, OPERATOR_HZ, CALLED_HZ)):
        assert tone_seconds(side.samples, hz) >= 6.0, (hz, tone_seconds(side.samples, hz))
        assert tone_seconds(side.samples, other_hz) < 0.5, other_hz
    print(f"\nOUTBOUND-FIGURES notice_peak_heard={notice.peak:.3f} "
          f"first_operator_frame_after_notice_end={packets[first_frame].at - notice_end:.3f}s "
          f"notice_peak_in_recording={peak:.3f} late_frames_in_recording={stretch:.3f}s "
          f"operator_voice_after_notice_end={operator_voice_at - notice_end:.3f}s "
          f"called_voice_at_operator_after_notice_end={called_voice_at - notice_end:.3f}s")


def test_denied_call_never_reaches_the_carrier_and_the_operator_hears_why(stack, calls):
    _peer, operator_media = calls["denied"]
    assert "0990123456" not in stack.carrier.invites()
    heard = pcm(audio_packets(operator_media.all_packets()))
    refusal = find(heard, prompt(stack, "outbound_restricted"))
    assert refusal.peak >= MIN_PEAK and refusal.peak - refusal.runner_up >= MIN_LEAD, refusal
    record = record_for(stack, "op1002", "0990123456")
    assert (record["outcome"], record["rule"], record["hangup_by"]) == (
        "refused", "outbound:dial-q2", "system")
    decision = next(e for e in record["events"] if e["kind"] == "outbound_decision")["data"]
    assert decision["allowed"] is False and decision["rule"] == "outbound:dial-q2"
    assert any(e["kind"] == "prompt" and e["data"]["prompt"] == "outbound_restricted"
               for e in record["events"])
    # What the operator heard: the left side of an outbound call's archive.
    tx = call_recording(record).heard.samples
    in_recording(tx, prompt(stack, "outbound_restricted"))


def test_letters_are_no_number_not_the_digits_left_after_the_filter(stack, calls):
    assert "1002" not in stack.carrier.invites() and "op1002" not in stack.carrier.invites()
    record = stack.call_record(lambda c: c["direction"] == "outbound" and c["did"] == "1002"
                               and c["outcome"], timeout=60, what="record of op1002 dialled")
    assert (record["outcome"], record["rule"]) == ("refused", "invalid:number")


def test_emergency_number_goes_out_under_a_deny_all_default(stack, calls):
    invites = stack.carrier.invites()
    assert "110" in invites, invites
    record = record_for(stack, "op1003", "110")
    assert (record["rule"], record["outcome"]) == ("emergency:110", "answered")
    assert record["notice_started_at"] is None  # put through at once
    packets = audio_packets(stack.carrier.media.stream_from_port(invites["110"][1]))
    assert first_tone(packets, OPERATOR_HZ) is not None  # the operator is connected


def test_pin_unlocks_one_call_audited_never_logged(stack, calls):
    invites = stack.carrier.invites()
    assert "+15551234567" in invites, invites
    record = record_for(stack, "op1002", "01015551234567")
    assert (record["rule"], record["outcome"]) == ("outbound:intl", "answered")
    pins = [(e["kind"], e["data"]["attempt"]) for e in record["events"]
            if e["kind"] in ("pin_wrong", "pin_unlocked")]
    assert pins == [("pin_wrong", 1), ("pin_unlocked", 2)]
    with sqlite3.connect(stack.data / "ivr.sqlite3") as db:
        rows = db.execute("SELECT actor, action, target, after FROM audit_log "
                          "WHERE action LIKE 'outbound.%'").fetchall()
    assert ("op1002", "outbound.pin_unlock", f"call:{record['id']}") in [r[:3] for r in rows]
    assert any(r[1] == "outbound.pin_set" for r in rows)
    assert PIN not in stack.controller_log()
    assert PIN not in str(stack.calls()) and PIN not in str(rows)
    assert PIN not in (stack.data / "secrets.toml").read_text()
    assert PIN not in (stack.data / "asterisk" / "log" / "messages.log").read_text(
        errors="replace")


def test_pin_not_offered_after_repeated_wrong_calls(stack, calls):
    """Guessing by redialling: with 3 calls of op1001 refused for a wrong PIN in the last
    hour (seeded as the audit log keeps them), the next PIN-unlockable call is refused at
    once; the operator never hears the PIN request and the carrier never gets the INVITE."""
    async def seed() -> None:
        async with Database(f"sqlite+aiosqlite:///{stack.data / 'ivr.sqlite3'}") as db:
            service = OutboundService(stack.data / "secrets.toml", AuditStore(db))
            for i in range(PIN_LOCK_CALLS):
                await service.pin_refused(operator="op1001", call_id=f"seed-{i}",
                                          rule="outbound:intl", attempts=3)

    asyncio.run(seed())
    peer, media = dial(stack, "op1001", "+15557654321", hold=None)
    try:
        result = peer.wait(120)
        assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-3000:]
        heard = pcm(audio_packets(media.all_packets()))
    finally:
        media.close()
    assert "+15557654321" not in stack.carrier.invites()
    record = record_for(stack, "op1001", "01015557654321")
    assert (record["outcome"], record["rule"]) == ("refused", "outbound:intl"), record
    assert "pin_locked" in kinds(record) and "pin_wrong" not in kinds(record), kinds(record)
    refusal = find(heard, prompt(stack, "outbound_restricted"))
    assert refusal.peak >= MIN_PEAK, refusal
    pin_request = prompt(stack, "outbound_pin")
    if len(heard) >= len(pin_request):  # shorter: it cannot have been played whole anyway
        assert find(heard, pin_request).peak < 0.5  # never asked for the PIN


def test_controller_down_only_emergency_numbers_go_out(stack, calls):
    """Last in this module: it stops the controller. The dialplan's fail-safe lets out the
    emergency numbers (no notice, no PIN) and refuses the rest with the announcement."""
    stack.stop_controller()
    before = set(stack.carrier.invites())
    emergency, _m1 = dial(stack, "op1001", "119", hold=4)
    refused, refused_media = dial(stack, "op1002", "0312345679", hold=None)
    for peer in (emergency, refused):
        result = peer.wait(60)
        assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    invites = set(stack.carrier.invites()) - before
    assert invites == {"119"}, invites
    heard = pcm(audio_packets(refused_media.all_packets()))
    refusal = find(heard, prompt(stack, "outbound_restricted"))
    assert refusal.peak >= MIN_PEAK and refusal.peak - refusal.runner_up >= MIN_LEAD, refusal
    _m1.close()
    refused_media.close()
