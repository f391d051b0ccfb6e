"""What a SIPp peer received, captured from outside: every UDP packet to its media port on
the loopback interface (an AF_PACKET socket, as root), kept with the wall-clock time it
arrived. Decodes A-law audio and RFC 2833 events, and looks for DTMF tone pairs in the
audio (Goertzel), so a test can say what the far end heard without asking Asterisk."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
EVENT_KEYS = "0123456789*#ABCD"
LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")


@dataclass
class RtpCapture:
    port: int
    # (arrival, SSRC, RTP timestamp, PCMA payload)
    audio: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # (arrival, key)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RtpCapture:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind(("lo", 0))
        sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _run(self, sock: socket.socket) -> None:
        with sock:
            while not self._stop.is_set():
                try:
                    frame, addr = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if addr[2] == PACKET_OUTGOING:  # loopback shows each packet twice
                    continue
                self._packet(time.time(), frame)

    def _packet(self, at: float, frame: bytes) -> None:
        if len(frame) < 14 + 20 + 8 + 12 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            return
        ihl = (frame[14] & 0x0F) * 4
        udp = 14 + ihl
        if struct.unpack("!H", frame[udp + 2:udp + 4])[0] != self.port:
            return
        rtp = frame[udp + 8:]
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            return
        pt = rtp[1] & 0x7F
        payload = rtp[12 + 4 * (rtp[0] & 0x0F):]
        if pt == 8:
            ts, ssrc = struct.unpack("!II", rtp[4:12])
            self.audio.append((at, ssrc, ts, payload))
        elif pt == 101 and payload:
            self.events.append((at, EVENT_KEYS[payload[0]] if payload[0] < 16 else "?"))

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """The received audio as floats in [-1, 1], and each sample's arrival time. Packets
        are placed by their RTP timestamps (a late or lost packet leaves its time in place,
        as silence); a new stream (SSRC, or a timestamp jump) continues where the last ended."""
        if not self.audio:
            return np.zeros(0), np.zeros(0)
        placed: list[tuple[int, float, bytes]] = []
        pos, last_ssrc, last_ts = 0, None, 0
        for at, ssrc, ts, payload in self.audio:
            delta = (ts - last_ts) & 0xFFFFFFFF
            if ssrc == last_ssrc and 0 < delta <= 8000:
                pos += delta
            elif placed:
                pos += len(placed[-1][2])
            placed.append((pos, at, payload))
            last_ssrc, last_ts = ssrc, ts
        end = max(p + len(payload) for p, _at, payload in placed)
        pcm, times = np.zeros(end), np.zeros(end)
        for p, at, payload in placed:
            pcm[p:p + len(payload)] = alaw_decode(payload)
            times[p:p + len(payload)] = at + np.arange(len(payload)) / 8000
        # Samples no packet brought: their time from the neighbours.
        missing = times == 0
        if missing.any():
            idx = np.arange(end)
            times[missing] = np.interp(idx[missing], idx[~missing], times[~missing])
        return pcm, times


def alaw_decode(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.uint8) ^ 0x55
    sign = np.where(a & 0x80, 1.0, -1.0)
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F).astype(np.int32)
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return sign * magnitude / 32768.0


def _goertzel(block: np.ndarray, freq: float, rate: int = 8000) -> float:
    coeff = 2 * np.cos(2 * np.pi * freq / rate)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dtmf_tones(samples: np.ndarray, rate: int = 8000,
               block_ms: int = 40) -> list[tuple[float, str]]:
    """(seconds into `samples`, key) of every block that is one DTMF tone pair: one low and one
    high group frequency together carrying most of the block's energy (speech never does)."""
    n = rate * block_ms // 1000
    found = []
    for start in range(0, len(samples) - n, n):
        block = samples[start:start + n]
        total = float(np.dot(block, block)) * n / 2
        if total < 1e-4 * n:  # silence
            continue
        low = [_goertzel(block, f) for f in LOW]
        high = [_goertzel(block, f) for f in HIGH]
        li, hi = int(np.argmax(low)), int(np.argmax(high))
        if (low[li] + high[hi]) / total > 0.6 and min(low[li], high[hi]) / total > 0.15:
            found.append((start / rate, KEYPAD[li][hi]))
    return found
