"""A real stack for end-to-end tests: Asterisk 22 + the controller (`ivr run`) + SIPp peers,
each test module on its own free ports and data folder."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from tests.e2e.rtp import caller_pcap, tone_pcap
from tests.e2e.scenarios import caller_scenario

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE_JOURNEY = PROJECT / "dialplan" / "contact-centre.yaml"


def example_journey(*, open_now: bool = True) -> dict:
    """The README's example journey; its office hours replaced so tests do not depend on the
    time of day: open around the clock, or closed all of today (a holiday)."""
    journey = yaml.safe_load(EXAMPLE_JOURNEY.read_text())
    office = journey["schedules"]["office"]
    office["weekly"] = {"weekdays": "24h", "sat": "24h", "sun": "24h"}
    office["holidays"] = []
    if not open_now:
        today = datetime.now(ZoneInfo(office["timezone"])).date()
        office["holidays"] = [{"date": today.isoformat(), "name": "test holiday"}]
    return journey
SIPP_DIR = PROJECT / "tests" / "sipp"
PCAP_DIR = Path("/usr/share/sip-tester")
IVR = PROJECT / ".venv" / "bin" / "ivr"


# Ports the tests choose and bind later (SIP, AMI, the SIPp phones' SIP and media ports) come
# from a pool below the kernel's ephemeral range (32768-60999 here), and each is handed out once
# per test run: a port chosen free and bound minutes later (an operator's phone started by a
# later test) was otherwise free for any socket bound to port 0 meanwhile (SIPp's pcap players,
# RTP captures) or for a port another stack's test chose. Each stack's Asterisk RTP range is a
# block of its own, below the pool. The bench's fixed ranges (Asterisk 20000-23999, SIPp media
# from 30000) are outside both.
PORT_POOL = range(24000, 30000)
RTP_BLOCKS = range(10000, 20000, 1000)
_handed_out: set[int] = set()
_next = [random.randrange(len(PORT_POOL))]
_rtp_blocks_used = [random.randrange(len(RTP_BLOCKS))]


def _bindable(port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _reserve(count: int, kinds: tuple[int, ...]) -> int:
    """The first of `count` consecutive pool ports, none handed out before, all bindable now
    (for every socket kind in `kinds`); the first is even if count > 1 (RTP's convention)."""
    for attempt in range(2 * len(PORT_POOL)):
        if attempt == len(PORT_POOL):
            _handed_out.clear()  # a whole pool used in one run: reuse, bindable ones only
        port = PORT_POOL[_next[0] % len(PORT_POOL)]
        _next[0] += count
        if count > 1:
            port -= port % 2
        block = range(port, port + count)
        if block[-1] in PORT_POOL and not _handed_out.intersection(block) \
                and all(_bindable(p, kinds) for p in block):
            _handed_out.update(block)
            return port
    raise RuntimeError(f"no {count} free port(s) left in {PORT_POOL}")


def free_port(kind: int = socket.SOCK_STREAM, *, also_udp: bool = False) -> int:
    """A port of the test pool, free now for `kind` (and UDP too if also_udp)."""
    kinds = (kind, socket.SOCK_DGRAM) if also_udp and kind != socket.SOCK_DGRAM else (kind,)
    return _reserve(1, kinds)


def free_udp_pair_base() -> int:
    """An even UDP port for a SIPp's media (-mp): SIPp binds it and port + 2 (audio and
    video); the 4 ports from it are reserved (RTP + RTCP of each)."""
    return _reserve(4, (socket.SOCK_DGRAM,))


def asterisk_rtp_range() -> tuple[int, int]:
    """A stack's Asterisk RTP range: the next of ten 1000-port blocks below the pool (a test
    run's stacks are closed one module after another, so a block is reused only after nine
    other stacks)."""
    start = RTP_BLOCKS[_rtp_blocks_used[0] % len(RTP_BLOCKS)]
    _rtp_blocks_used[0] += 1
    return start, start + 998


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass
class SippResult:
    returncode: int
    workdir: Path
    started_at: float
    ended_at: float


_TRACE_HEAD = re.compile(
    r"^-+ (\d{4}-\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*$"
)


def parse_message_trace(path: Path) -> list[tuple[float, str, str]]:
    """SIPp's -trace_msg file: (wall-clock time, direction | start line, whole message)."""
    if not path.exists():
        return []
    out: list[tuple[float, str, str]] = []
    lines = path.read_text(errors="replace").splitlines()
    heads = [i for i, line in enumerate(lines) if _TRACE_HEAD.match(line)]
    for n, i in enumerate(heads):
        m = _TRACE_HEAD.match(lines[i])
        assert m is not None
        stamp = datetime.strptime(m.group(1).replace("  ", " "), "%Y-%m-%d %H:%M:%S.%f")
        # A direction line ("UDP message received ..."), a blank line, then the message.
        direction = lines[i + 1].strip() if i + 1 < len(lines) else ""
        body = lines[i + 2:heads[n + 1] if n + 1 < len(heads) else len(lines)]
        first = next((x.strip() for x in body if x.strip()), "")
        out.append((stamp.timestamp(), f"{direction} | {first}", "\n".join(body)))
    return out


class SippPeer:
    """A SIPp process in its own folder (pcaps copied in, message trace on)."""

    def __init__(self, workdir: Path, args: list[str]):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(PCAP_DIR, workdir / "pcap", dirs_exist_ok=True)
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def _cmd(self) -> list[str]:
        return ["sipp", *self.args, "-nostdin", "-trace_msg", "-message_file",
                str(self.workdir / "messages.log"), "-trace_err", "-error_file",
                str(self.workdir / "errors.log")]

    def start(self) -> SippPeer:
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self._cmd(), cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=(self.workdir / "screen.log").open("wb"), stderr=subprocess.STDOUT,
        )
        return self

    def wait(self, timeout: float) -> SippResult:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"SIPp did not finish within {timeout:g} s: {self.workdir}") from None
        return SippResult(code, self.workdir, self.started_at, time.time())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def why_it_stopped(self) -> str:
        """SIPp's own error lines (its error file, then its screen), for a peer that exited
        early (a port taken, a bad pcap); the final statistics screen says nothing of it."""
        lines = []
        for name in ("errors.log", "screen.log"):
            path = self.workdir / name
            if path.exists():
                lines += [f"{name}: {line}" for line in path.read_text(errors="replace")
                          .splitlines() if re.search(r"(?i)error|unable|can't|cannot", line)]
        return f"SIPp exited ({self.args}): " + ("\n".join(lines[-10:]) or "no error line")

    def messages(self) -> list[tuple[float, str, str]]:
        return parse_message_trace(self.workdir / "messages.log")

    def invites_received(self, since: float = 0.0, caller: str | None = None) -> list[float]:
        """Wall-clock times of the INVITEs this peer received (SIPp's own timestamps), only
        those presenting `caller` in their From header if given."""
        out = []
        for t, what, body in self.messages():
            if t < since or "received" not in what or "| INVITE " not in what:
                continue
            if caller is not None:
                from_line = next((x for x in body.splitlines()
                                  if x.lower().startswith(("from:", "f:"))), "")
                if f"sip:{caller}@" not in from_line:
                    continue
            out.append(t)
        return out


@dataclass
class Stack:
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    operators: dict[str, int] = field(default_factory=dict)
    asterisk: subprocess.Popen | None = None
    controller: subprocess.Popen | None = None
    peers: list[SippPeer] = field(default_factory=list)
    phones: dict[str, SippPeer] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "ivr.toml"

    @property
    def data(self) -> Path:
        return self.root / "var"

    @property
    def journey_dir(self) -> Path:
        return self.root / "dialplan"

    def write_journey(self, journey: dict) -> None:
        self.journey_dir.mkdir(exist_ok=True)
        (self.journey_dir / "journey.yaml").write_text(
            yaml.safe_dump(journey, allow_unicode=True, sort_keys=False))

    def write_config(self, operators: list[str], extra: str = "",
                     journey: dict | None = None, shared_phone: bool = False) -> None:
        """shared_phone: every operator endpoint's contact is one SIPp phone's address (app_queue
        still tells them apart), for many simultaneous answered calls."""
        self.ports = {
            "sip": free_port(socket.SOCK_DGRAM),
            "ami": free_port(),
            "agi": free_port(),
            "web": free_port(),
        }
        rtp_start, rtp_end = asterisk_rtp_range()
        shared = free_port(socket.SOCK_DGRAM)
        self.operators = {op: shared if shared_phone else free_port(socket.SOCK_DGRAM)
                          for op in operators}
        ops = "\n".join(
            f'[[operators]]\nendpoint = "{op}"\nname = "Operator {op}"\n'
            f'contact = "sip:{op}@127.0.0.1:{port}"\n'
            for op, port in self.operators.items()
        )
        self.write_journey(journey or example_journey(open_now=True))
        self.config_path.write_text(
            f"""
[server]
data_dir = "{self.data}"
node_name = "e2e"
log_level = "debug"

[asterisk]
sip_port = {self.ports['sip']}
ami_port = {self.ports['ami']}
rtp_start = {rtp_start}
rtp_end = {rtp_end}

[agi]
port = {self.ports['agi']}

[web]
port = {self.ports['web']}

[prompts]
texts = "{PROJECT / 'prompts' / 'prompts.yaml'}"

[desk]
default = "support"

[journey]
dir = "{self.journey_dir}"
{extra}
{ops}
"""
        )

    def ivr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run([str(IVR), *args, "-c", str(self.config_path)],
                             capture_output=True, text=True, timeout=60)
        if check:
            assert run.returncode == 0, f"ivr {' '.join(args)}:\n{run.stdout}\n{run.stderr}"
        return run

    def login(self, operator: str, *desks: str) -> None:
        args = ["operators", "login", operator]
        for desk in desks:
            args += ["--desk", desk]
        self.ivr(*args)

    def setup(self, prompt_cache: Path | None = None) -> None:
        if prompt_cache is not None and prompt_cache.exists():
            shutil.copytree(prompt_cache, self.data / "prompts", dirs_exist_ok=True)
        run = subprocess.run([str(IVR), "setup", "-c", str(self.config_path)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"ivr setup failed:\n{run.stdout}\n{run.stderr}"

    @property
    def asterisk_conf(self) -> Path:
        return self.data / "asterisk" / "etc" / "asterisk.conf"

    def start_asterisk(self) -> None:
        ctl = self.data / "asterisk" / "run" / "asterisk.ctl"
        if ctl.exists():
            ctl.unlink()
        log = (self.root / "asterisk.out").open("ab")
        self.asterisk = subprocess.Popen(
            [str(PROJECT / "deploy" / "asterisk.sh"), "run", str(self.asterisk_conf),
             str(self.data)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: ctl.exists() or self.asterisk.poll() is not None, 60,
                   what="Asterisk control socket")
        assert self.asterisk.poll() is None, (self.root / "asterisk.out").read_text()
        wait_until(lambda: "fully booted" in self.cli("core waitfullybooted"), 60,
                   what="Asterisk fully booted")

    def stop_asterisk(self) -> None:
        if self.asterisk is not None and self.asterisk.poll() is None:
            os.killpg(self.asterisk.pid, signal.SIGTERM)
            try:
                self.asterisk.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.asterisk.pid, signal.SIGKILL)
                self.asterisk.wait()

    def cli(self, command: str) -> str:
        run = subprocess.run(
            [str(PROJECT / "deploy" / "asterisk.sh"), "rx", str(self.asterisk_conf),
             str(self.data), command],
            capture_output=True, text=True, timeout=30,
        )
        return run.stdout + run.stderr

    def start_controller(self) -> None:
        log = (self.root / "controller.log").open("ab")
        self.controller = subprocess.Popen(
            [str(IVR), "run", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self.health().get("status") == "ok"
                   or self.controller.poll() is not None, 60, what="controller healthy")
        assert self.controller.poll() is None, self.controller_log()

    def stop_controller(self) -> None:
        if self.controller is not None and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(20)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait()

    def controller_log(self) -> str:
        path = self.root / "controller.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def health(self) -> dict:
        url = f"http://127.0.0.1:{self.ports['web']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read() or b"{}")
        except OSError:
            return {}

    def calls(self, with_events: bool = True) -> list[dict]:
        args = [str(IVR), "calls", "--json", "-c", str(self.config_path), "--limit", "100"]
        if with_events:
            args.append("--events")
        run = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)["calls"]

    def call_record(self, predicate, timeout: float = 30, what: str = "call record"):
        def find():
            for call in self.calls():
                if predicate(call):
                    return call
            return None

        return wait_until(find, timeout, interval=0.5, what=what)

    def operator(self, endpoint: str, scenario: str = "operator.xml",
                 pcap: Callable[[Path], object] | None = None) -> SippPeer:
        """The operator's phone (one SIPp per endpoint, answering every call it gets); pcap
        writes the phone's RTP to the given path (default: a steady 1 kHz tone)."""
        running = self.phones.get(endpoint)
        if running is not None and running.proc is not None and running.proc.poll() is None:
            return running
        port = self.operators[endpoint]
        workdir = self.root / f"sipp-{endpoint}-{len(self.peers)}"
        workdir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(PCAP_DIR, workdir / "pcap", dirs_exist_ok=True)
        (pcap or (lambda path: tone_pcap(path, 60.0)))(workdir / "pcap" / "operator.pcap")
        peer = SippPeer(
            workdir,
            ["-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(port),
             "-mi", "127.0.0.1", "-mp", str(free_udp_pair_base()), "-t", "u1"],
        ).start()
        self.peers.append(peer)
        self.phones[endpoint] = peer
        time.sleep(0.3)
        assert peer.proc.poll() is None, peer.why_it_stopped()
        return peer

    def caller(
        self,
        number: str,
        did: str,
        *,
        hangup_after: float | None = None,
        keys: list[tuple[float, str]] | None = None,
        accept_bye: bool = False,
        pcap: Callable[[Path], object] | None = None,
        from_: str | None = None,
        headers: tuple[str, ...] = (),
    ) -> SippPeer:
        """A customer call; hangup_after=None waits for Asterisk to hang up; accept_bye lets
        Asterisk hang up before hangup_after (as deploy/try-call.sh does). pcap writes the
        caller's RTP to the given path (default: continuous speech with the keys). from_ and
        headers: another From (display name, withheld user) and extra INVITE headers."""
        workdir = self.root / f"sipp-caller-{len(self.peers)}"
        workdir.mkdir(parents=True, exist_ok=True)
        csv = workdir / "callers.csv"
        csv.write_text(f"SEQUENTIAL\n{number};\n")
        # RTP for the whole call: up to the hang-up, or long enough for Asterisk to end it.
        if pcap is not None:
            pcap(workdir / "caller.pcap")
        else:
            caller_pcap(workdir / "caller.pcap", hangup_after or 240.0, keys)
        scenario = workdir / "caller.xml"
        scenario.write_text(caller_scenario(pcap="caller.pcap", hangup_after=hangup_after,
                                            accept_bye=accept_bye, headers=headers,
                                            **({"from_": from_} if from_ else {})))
        peer = SippPeer(
            workdir,
            [f"127.0.0.1:{self.ports['sip']}", "-sf", str(scenario), "-s", did,
             "-inf", str(csv), "-m", "1", "-l", "1",
             "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
             "-mi", "127.0.0.1", "-mp", str(free_udp_pair_base()), "-t", "u1",
             "-timeout", "180s", "-timeout_error"],
        ).start()
        self.peers.append(peer)
        return peer

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()
        self.stop_controller()
        self.stop_asterisk()


def prompt_seconds(stack: Stack, name: str, lang: str = "ja") -> float:
    """The length of one of the stack's rendered prompts."""
    from ivr.audio.wav import wav_duration

    return wav_duration(stack.data / "prompts" / lang / f"{name}.wav")


def intro_seconds(stack: Stack) -> float:
    """Greeting and notice of the journey's 'other' entry, before the caller is queued."""
    return prompt_seconds(stack, "welcome") + prompt_seconds(stack, "notice")
