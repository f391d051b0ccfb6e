"""A phone's media in Python, for SIPp calls whose SDP points here: it records every RTP packet
it receives (arrival time by this process's clock, per sender) and answers each sender with a
steady A-law tone in 20 ms packets, with RFC 2833 key presses at given moments.

SIPp keeps the signalling; this keeps the media, so a test can say what a phone *received*
(the called party's notice, the operator's refusal prompt) without trusting Asterisk's own
recordings, and can send DTMF with correct RTP timestamps.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from tests.e2e.rtp import alaw_encode

PTIME = 0.02
SAMPLES = 160
DTMF_PT = 101
# A sender quiet this long has hung up: stop answering it (as a phone stops at the BYE). Kept
# on, the tone would go to a port Asterisk may hand to a later call, whose symmetric RTP then
# latches onto this stale stream and sends that call's audio here (a CI failure: a refused
# operator "heard" nothing). Asterisk sends continuously while a call is up (every channel is
# recorded, transmit_silence = yes), and a sender that speaks again is answered again.
QUIET_STOP = 2.0
EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}


@dataclass
class Received:
    at: float
    seq: int
    ts: int
    pt: int
    payload: bytes


@dataclass
class _Sender:
    addr: tuple[str, int]
    ssrc: int
    seq: int = 0
    ts: int = 0
    sent: int = 0
    keys: list[tuple[float, str]] = field(default_factory=list)  # (seconds after start, key)
    started: float = 0.0
    heard: float = 0.0  # monotonic time of its last packet


class RtpPeer:
    """One UDP port; `keys` = [(seconds after the first packet received, key)] for every
    sender (the operator side has one)."""

    def __init__(self, tone_hz: float, keys: list[tuple[float, str]] | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        self.keys = sorted(keys or [])
        self.received: dict[tuple[str, int], list[Received]] = {}
        self._senders: dict[tuple[str, int], _Sender] = {}
        t = np.arange(SAMPLES * 50 * 60) / 8000.0
        self._tone = alaw_encode(0.25 * np.sin(2 * np.pi * tone_hz * t))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    # ---- what was received ----
    def streams(self) -> dict[tuple[str, int], list[Received]]:
        with self._lock:
            return {k: list(v) for k, v in self.received.items()}

    def stream_from_port(self, port: int) -> list[Received]:
        return next((v for (_, p), v in self.streams().items() if p == port), [])

    def all_packets(self) -> list[Received]:
        return sorted((p for v in self.streams().values() for p in v), key=lambda p: p.at)

    # ---- the loop ----
    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                data, addr = b"", None
            if data and addr is not None and len(data) >= 12:
                self._receive(data, addr)
            now = time.monotonic()
            if now >= next_tick:
                next_tick += PTIME
                if now - next_tick > 0.2:  # fell far behind: do not burst
                    next_tick = now + PTIME
                for sender in list(self._senders.values()):
                    if now - sender.heard < QUIET_STOP:
                        self._send(sender)

    def _receive(self, data: bytes, addr: tuple[str, int]) -> None:
        seq, ts = struct.unpack("!HI", data[2:8])
        pt = data[1] & 0x7F
        cc = data[0] & 0x0F
        payload = data[12 + 4 * cc:]
        with self._lock:
            self.received.setdefault(addr, []).append(Received(time.time(), seq, ts, pt, payload))
        if addr not in self._senders:
            self._senders[addr] = _Sender(addr, ssrc=0x1000 + len(self._senders),
                                          keys=list(self.keys), started=time.monotonic())
        self._senders[addr].heard = time.monotonic()

    def _packet(self, s: _Sender, pt: int, payload: bytes, marker: bool, ts: int) -> None:
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, s.seq & 0xFFFF,
                             ts & 0xFFFFFFFF, s.ssrc)
        s.seq += 1
        try:
            self.sock.sendto(header + payload, s.addr)
        except OSError:
            pass

    def _send(self, s: _Sender) -> None:
        elapsed = time.monotonic() - s.started
        if s.keys and elapsed >= s.keys[0][0]:
            _, key = s.keys.pop(0)
            self._dtmf(s, key)
            return
        off = (s.sent * SAMPLES) % (len(self._tone) - SAMPLES)
        self._packet(s, 8, self._tone[off:off + SAMPLES], s.sent == 0, s.ts)
        s.ts += SAMPLES
        s.sent += 1

    def _dtmf(self, s: _Sender, key: str) -> None:
        """One RFC 2833 event of 100 ms (5 packets, the last 3 end packets), sent at once: the
        receiver times it by the RTP timestamps; the audio resumes after it."""
        event = EVENTS[key]
        for n in range(1, 6):
            end = n >= 3
            duration = SAMPLES * min(n, 5)
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            self._packet(s, DTMF_PT, payload, n == 1, s.ts)
        s.ts += SAMPLES * 5 + SAMPLES
        s.sent += 1


def pcm(packets: list[Received]) -> np.ndarray:
    """The A-law audio received, in arrival order (RFC 2833 packets left out), as int16."""
    raw = np.frombuffer(b"".join(p.payload for p in packets if p.pt == 8), dtype=np.uint8)
    return _ALAW[raw]


def _alaw_table() -> np.ndarray:
    """G.711 A-law code -> 16-bit linear sample."""
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_ALAW = _alaw_table()


def audio_packets(packets: list[Received]) -> list[Received]:
    return [p for p in packets if p.pt == 8]
