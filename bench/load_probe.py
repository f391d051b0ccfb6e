"""What the load bench measures from outside the server: RTP as it reached the callers (a
raw socket on loopback with a kernel filter, so the bench does not spend a core copying the
other 3/4 of the packets into Python) and the processes' CPU, memory and descriptors from
/proc. Nothing here asks the controller how it did."""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _bpf(src: tuple[int, int], dst: tuple[int, int], skip_port: int) -> bytes:
    """A classic BPF program: IPv4/UDP (20-byte IP header, as on loopback), not the outgoing
    copy of a looped packet, source port in src, destination port in dst and not skip_port
    (the shared operator phone). Anything else is dropped in the kernel."""
    ld_h, ld_b, jeq, jge, jgt, ret = 0x28, 0x30, 0x15, 0x35, 0x25, 0x06
    fail = 15
    prog = [
        (ld_h, 0, 0, 12), (jeq, 0, fail - 2, 0x0800),
        (ld_b, 0, 0, 23), (jeq, 0, fail - 4, 17),
        (ld_b, 0, 0, SKF_AD_PKTTYPE), (jeq, fail - 6, 0, PACKET_OUTGOING),
        (ld_h, 0, 0, 34), (jge, 0, fail - 8, src[0]), (jgt, fail - 9, 0, src[1]),
        (ld_h, 0, 0, 36), (jge, 0, fail - 11, dst[0]), (jgt, fail - 12, 0, dst[1]),
        (jeq, fail - 13, 0, skip_port),
        (ret, 0, 0, 0xFFFF), (ret, 0, 0, 0), (ret, 0, 0, 0),
    ]
    # Jump offsets count from the next instruction: fix them up to land on index `fail`.
    fixed = []
    for i, (code, jt, jf, k) in enumerate(prog):
        if code in (jeq, jge, jgt):
            jt = fail - i - 1 if jt else 0
            jf = fail - i - 1 if jf else 0
        fixed.append(struct.pack("HBBI", code, jt, jf, k))
    return b"".join(fixed)


@dataclass
class Packet:
    at: float  # arrival, wall clock
    seq: int
    ssrc: int
    pt: int
    payload: bytes


class CallerRtp:
    """RTP from Asterisk's port range to the callers' media ports, by destination port."""

    def __init__(self, asterisk_ports: tuple[int, int], caller_ports: tuple[int, int],
                 skip_port: int):
        self.packets: dict[int, list[Packet]] = defaultdict(list)
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        prog = _bpf(asterisk_ports, caller_ports, skip_port)
        import ctypes  # struct sock_fprog {u16 len; struct sock_filter *filter}

        self._buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(self._buf))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="caller-rtp", daemon=True)

    def start(self) -> CallerRtp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        recv, now, unpack = self._sock.recv, time.time, struct.unpack_from
        while not self._stop.is_set():
            try:
                frame = recv(2048)
            except TimeoutError:
                continue
            at = now()
            if len(frame) < 54:
                continue
            dport, = unpack("!H", frame, 36)
            b1, seq, _ts, ssrc = unpack("!xBHII", frame, 42)
            cc = frame[42] & 0x0F
            self.packets[dport].append(Packet(at, seq, ssrc, b1 & 0x7F, frame[54 + 4 * cc:]))


# ---- processes ----
def proc_cpu(pid: int) -> float:
    """User + system CPU-seconds of a process, all its threads."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait(pid: int) -> float:
    """Seconds the process's main thread (the controller's event loop) has spent runnable
    but waiting for a CPU (/proc/PID/schedstat, 2nd field): latency the process did not
    cause itself, when the machine's run queue is long."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _status(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def asterisk_pid(session: int) -> int:
    """The asterisk process in the session deploy/asterisk.sh started (system or chroot)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        sid = int(stat.rsplit(")", 1)[1].split()[3])
        if comm == "asterisk" and sid == session:
            return int(entry)
    raise RuntimeError(f"no asterisk process in session {session}")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = cpu[3] + cpu[4]
    return sum(cpu) - idle, sum(cpu)


_TASKS = re.compile(r"^ivr_asyncio_tasks (\S+)$", re.M)


def metrics_text(web_port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=3) as resp:
            return resp.read().decode()
    except OSError:
        return ""


@dataclass
class Sampler:
    """Samples every `every` seconds: the controller's RSS, descriptors and asyncio tasks
    (from its /metrics), and the machine's load, for peaks and for "flat over the run"."""
    controller: int | None
    web_port: int | None
    every: float = 2.0
    rss_kb: list[int] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.load.append(os.getloadavg()[0])
            if self.controller is None:
                continue
            self.rss_kb.append(_status(self.controller, "VmRSS"))
            self.fds.append(fd_count(self.controller))
            if self.web_port is not None:
                found = _TASKS.search(metrics_text(self.web_port))
                if found:
                    self.tasks.append(int(float(found.group(1))))

    def peak_rss_mb(self) -> float:
        """The kernel's own high-water mark beats any sample."""
        hwm = _status(self.controller, "VmHWM") if self.controller else 0
        return round(max([hwm, *self.rss_kb]) / 1024, 1)
