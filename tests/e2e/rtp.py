"""One RTP timeline per simulated caller, written as a pcap for SIPp's play_pcap_audio.

Replaying Debian's 7 s speech pcap again restarts its sequence numbers, which Asterisk drops
as old packets, and a real carrier sends RTP without a break for the whole call. So the
speech payloads of /usr/share/sip-tester/g711a.pcap are looped into one continuous stream
(one SSRC, increasing sequence and timestamp) and the RFC 2833 packets of the
dtmf_2833_<key>.pcap files are spliced in where the caller presses a key.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

PCAP_DIR = Path("/usr/share/sip-tester")
KEY_FILES = {**{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)},
             "*": "dtmf_2833_star.pcap", "#": "dtmf_2833_pound.pcap"}
SSRC = 0x1DB05EED
KEY_GAP = 0.25  # seconds of no speech around a key press, as phones mute while sending one


@dataclass(frozen=True)
class Packet:
    at: float
    data: bytes  # the whole frame: Ethernet + IPv4 + UDP + RTP


def read_pcap(path: Path) -> tuple[bytes, list[Packet]]:
    raw = path.read_bytes()
    if struct.unpack("<I", raw[:4])[0] != 0xA1B2C3D4:
        raise ValueError(f"{path}: not a little-endian microsecond pcap")
    header, offset, packets = raw[:24], 24, []
    while offset < len(raw):
        sec, usec, incl, _orig = struct.unpack("<IIII", raw[offset:offset + 16])
        offset += 16
        packets.append(Packet(sec + usec / 1e6, raw[offset:offset + incl]))
        offset += incl
    return header, packets


def _rtp(frame: bytes) -> tuple[int, int, bytes]:
    """(payload type, marker, payload) of an Ethernet/IPv4/UDP/RTP frame."""
    ihl = (frame[14] & 0x0F) * 4
    rtp = frame[14 + ihl + 8:]
    return rtp[1] & 0x7F, rtp[1] >> 7, rtp[12:]


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(template: bytes, pt: int, marker: bool, seq: int, ts: int, payload: bytes) -> bytes:
    rtp = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                      ts & 0xFFFFFFFF, SSRC) + payload
    eth, ip, udp = template[:14], bytearray(template[14:34]), bytearray(template[34:42])
    struct.pack_into("!H", ip, 2, 20 + 8 + len(rtp))
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, _checksum(bytes(ip)))
    struct.pack_into("!H", udp, 4, 8 + len(rtp))
    struct.pack_into("!H", udp, 6, 0)
    return eth + bytes(ip) + bytes(udp) + rtp


def _record(at: float, frame: bytes) -> bytes:
    sec, usec = divmod(round(at * 1e6), 1_000_000)
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def caller_pcap(path: Path, seconds: float, keys: list[tuple[float, str]] | None = None,
                *, audio: bytes | None = None) -> Path:
    """Write `seconds` of caller RTP with key presses at (offset, key) into `path`. audio:
    A-law to send instead of Debian's looped speech, each packet the slice of its own time
    (what a key press replaces is left out, the rest stays where it was)."""
    header, speech = read_pcap(PCAP_DIR / "g711a.pcap")
    template = speech[0].data
    # Re-cut Debian's 30 ms packets into the usual 20 ms ones.
    stream = b"".join(_rtp(p.data)[2] for p in speech) if audio is None else audio
    chunks = [stream[k:k + 160] for k in range(0, len(stream) - 159, 160)]
    step = len(chunks[0]) / 8000
    presses = []
    for at, key in sorted(keys or []):
        if key not in KEY_FILES:
            raise ValueError(f"no RFC 2833 pcap for key {key!r}")
        presses.append((at, read_pcap(PCAP_DIR / KEY_FILES[key])[1]))

    out: list[tuple[float, bytes]] = []
    seq, ts, t, i, marker = 1000, 8000, 0.0, 0, True
    for at, packets in [*presses, (seconds + 1e9, [])]:
        while t + step <= min(at - KEY_GAP / 2, seconds):
            if audio is not None:
                i = round(t / step)
            out.append((t, _frame(template, 8, marker, seq, ts, chunks[i % len(chunks)])))
            marker, seq, ts, t, i = False, seq + 1, ts + len(chunks[0]), t + step, i + 1
        if at > seconds:
            break
        t = max(t, at)
        first = packets[0].at
        event_ts = ts
        for n, p in enumerate(packets):
            pt, _, payload = _rtp(p.data)
            out.append((t + p.at - first, _frame(template, pt, n == 0, seq, event_ts, payload)))
            seq += 1
        t += packets[-1].at - first + KEY_GAP / 2
        ts += round((t - (at)) * 8000) + len(chunks[0])
        marker = True
    body = bytearray(header)
    for at, frame in out:
        body += _record(at, frame)
    path.write_bytes(bytes(body))
    return path


def alaw_encode(samples) -> bytes:
    """G.711 A-law of float samples in [-1, 1] (numpy), as a phone would send."""
    import numpy as np

    pcm = np.clip(np.asarray(samples) * 32767, -32768, 32767).astype(np.int32)
    sign = np.where(pcm >= 0, 0x80, 0x00)
    mag = np.minimum(np.abs(pcm), 32767) >> 3
    exponent = np.zeros_like(mag)
    for e in range(1, 8):
        exponent = np.where(mag >= (16 << (e - 1)) * 2, e, exponent)
    mantissa = np.where(exponent == 0, mag >> 1, (mag >> exponent) & 0x0F)
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return bytes(code.astype(np.uint8))


def tone_pcap(path: Path, seconds: float, freq: float = 1000.0, level: float = 0.3) -> Path:
    """`seconds` of a steady tone, 20 ms packets: an operator who is easy to tell apart."""
    import numpy as np

    header, speech = read_pcap(PCAP_DIR / "g711a.pcap")
    template = speech[0].data
    n = int(seconds * 8000) // 160 * 160
    t = np.arange(n) / 8000
    payload = alaw_encode(level * np.sin(2 * np.pi * freq * t))
    body = bytearray(header)
    for k in range(n // 160):
        frame = _frame(template, 8, k == 0, 2000 + k, 160 * k, payload[160 * k:160 * (k + 1)])
        body += _record(k * 0.02, frame)
    path.write_bytes(bytes(body))
    return path


def speech_alaw(seconds: float) -> bytes:
    """`seconds` of Debian's A-law speech (looped), as RTP payload bytes."""
    _header, speech = read_pcap(PCAP_DIR / "g711a.pcap")
    stream = b"".join(_rtp(p.data)[2] for p in speech)
    n = int(seconds * 8000)
    return (stream * (n // len(stream) + 1))[:n]


def bursts_pcap(path: Path, bursts: list[tuple[float, bytes]]) -> Path:
    """RTP that stops and starts, as a phone or carrier with silence suppression sends it:
    each burst is (start in seconds, A-law payload) sent as 20 ms packets from its start;
    nothing at all is sent between bursts. One SSRC, sequence numbers without a break, RTP
    timestamps following the wall clock across the gaps, the marker bit on each burst's
    first packet (RFC 3551 talkspurt)."""
    header, speech = read_pcap(PCAP_DIR / "g711a.pcap")
    template = speech[0].data
    body = bytearray(header)
    seq = 3000
    for start, payload in sorted(bursts):
        first_ts = 8000 + round(start * 8000)
        for k in range(len(payload) // 160):
            frame = _frame(template, 8, k == 0, seq, first_ts + 160 * k,
                           payload[160 * k:160 * (k + 1)])
            body += _record(start + 0.02 * k, frame)
            seq += 1
    path.write_bytes(bytes(body))
    return path


def main(argv: list[str] | None = None) -> int:
    """python -m tests.e2e.rtp caller OUT SECONDS [AT:KEY ...] | tone OUT SECONDS"""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[0] not in ("caller", "tone"):
        print(main.__doc__, file=sys.stderr)
        return 2
    kind, out, seconds = args[0], Path(args[1]), float(args[2])
    if kind == "tone":
        tone_pcap(out, seconds)
    else:
        keys = [(float(a), k) for a, _, k in (x.partition(":") for x in args[3:])]
        caller_pcap(out, seconds, keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
