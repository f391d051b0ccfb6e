"""What a caller received, captured on the wire: RTP from Asterisk's port range on loopback,
seen with a raw AF_PACKET socket (the tests run as root), kept per destination port and
written as a pcap for a person to open. SIPp plays audio but keeps none of what it receives;
this is the independent reference for "the caller heard it".
"""

from __future__ import annotations

import re
import select
import socket
import struct
import threading
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from tests.e2e.stack import SippPeer

with warnings.catch_warnings():  # G.711 A-law decoding; Python 3.11 still has it
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # on loopback every packet is seen leaving and arriving: keep one


class RtpSniffer:
    """Collects RTP packets sent from Asterisk's RTP ports [low, high]."""

    def __init__(self, low: int, high: int):
        self.low, self.high = low, high
        self.packets: dict[int, list[tuple[float, bytes]]] = defaultdict(list)
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind(("lo", 0))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._thread = threading.Thread(target=self._run, name="rtp-sniffer", daemon=True)

    def start(self) -> RtpSniffer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.2)
            if not ready:
                continue
            frame, addr = self._sock.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING or len(frame) < 14 + 20 + 8 + 12:
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != 17:  # IPv4, UDP
                continue
            ihl = (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", frame[14 + ihl:14 + ihl + 4])
            if self.low <= sport <= self.high:
                self.packets[dport].append((time.time(), frame))

    def write_pcap(self, port: int, path: Path) -> Path:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for at, frame in self.packets.get(port, []):
            out.append(struct.pack("<IIII", int(at), int(at % 1 * 1e6), len(frame), len(frame)))
            out.append(frame)
        path.write_bytes(b"".join(out))
        return path

    def audio(self, port: int) -> tuple[np.ndarray, float | None]:
        """The PCMA audio sent to `port`, payloads in sequence order (a lost packet: 20 ms of
        silence), and the wall-clock time of its first packet. Not by RTP timestamp: a busy
        Asterisk lets its timestamps jump ahead with the wall clock (measured: 134 ms in a
        16 s prompt) while the audio itself is contiguous."""
        chunks: list[bytes] = []
        first_at: float | None = None
        last_seq: int | None = None
        for at, frame in self.packets.get(port, []):
            ihl = (frame[14] & 0x0F) * 4
            rtp = frame[14 + ihl + 8:]
            if rtp[1] & 0x7F != 8:  # PCMA only (not telephone-event)
                continue
            seq, = struct.unpack("!H", rtp[2:4])
            cc = rtp[0] & 0x0F
            payload = rtp[12 + 4 * cc:]
            if last_seq is not None:
                lost = (seq - last_seq - 1) & 0xFFFF
                if lost > 1000:  # reordered or duplicated: skip it
                    continue
                chunks.append(b"\xd5" * (160 * lost))  # A-law silence
            first_at = at if first_at is None else first_at
            last_seq = seq
            chunks.append(payload)
        if not chunks:
            return np.zeros(0), None
        pcm = np.frombuffer(audioop.alaw2lin(b"".join(chunks), 2), dtype=np.int16)
        return pcm.astype(np.float64) / 32768.0, first_at


def media_port(caller: SippPeer) -> int:
    """The RTP port the caller offered in its INVITE (SIPp's trace)."""
    for _t, what, body in caller.messages():
        if "sent" in what and "| INVITE " in what:
            found = re.search(r"^\s*m=audio (\d+) ", body, re.M)
            if found:
                return int(found.group(1))
    raise AssertionError(f"no INVITE with SDP in {caller.workdir}")
