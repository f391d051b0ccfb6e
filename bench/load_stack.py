"""The server as a user runs it, for the load bench: Asterisk 22 + `ivr run` in a folder of
their own (the end-to-end tests' Stack), the example journey open around the clock, the
project's protection.yaml (restrictions and the talk limit, which is far longer than the
bench's talk), many operator endpoints answered by one SIPp phone, and one run of SIPp
callers at a time.

The baseline (the same journey as plain dialplan, no controller) is added to the running
Asterisk through its CLI (`dialplan add extension`), for the bench's own dialled number only:
nothing is written into the configuration the server renders, so production gains no
controller bypass, and a `dialplan reload` removes it (the bench adds it again before each
baseline run)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.recordings import noise
from tests.e2e.rtp import alaw_encode, caller_pcap, speech_alaw, tone_pcap
from tests.e2e.rtp_capture import alaw_decode
from tests.e2e.scenarios import caller_scenario
from tests.e2e.stack import (
    PROJECT,
    SippPeer,
    Stack,
    example_journey,
    free_port,
    intro_seconds,
    wait_until,
)

SERVER_DID = "0399000000"  # the bench's entry: greeting, notice, the example's main menu
MENU_KEY = "2"  # the example's main menu: 2 -> the support desk
KEY_INTO_MENU = 1.5  # s into the main menu's prompt, the caller presses MENU_KEY (RFC 2833)
# Server runs: live protection (protection.yaml `live`) on with calm callers, off, and on
# with every caller shouting once (SHOUT: s into the talk, for how long, peak level).
SERVER_KINDS = ("server", "server-nolive", "server-shout")
SHOUT = (6.0, 3.5, 0.8)  # after 3 s of talk: the caller's own baseline
BASELINE_CONTEXT = "bench-baseline"
BASELINE_FOLDER = "bench-baseline"  # under the recordings folder
ASTERISK_RTP = (20000, 23999)  # room for 2 ports x 2 channels x 1000 calls
CALLER_RTP_BASE = 30000  # SIPp's [auto_media_port] steps by 4 from here, modulo 10000

# The same journey as the server's, in plain dialplan: answer, record (as the server's
# MixMonitor does, both legs apart), greeting and notice, the notice guard, the same desk and
# members. The variants change only how the call is recorded, to price each recorder.
_REC = f"${{IVR_REC_DIR}}/{BASELINE_FOLDER}/${{FILTER(0-9,${{CALLERID(num)}})}}"
_JOURNEY = [
    "Playback(${IVR_PROMPTS}/ja/welcome)",
    "Playback(${IVR_PROMPTS}/ja/notice)",
    # The main menu (the server's: 5 s for a key after the prompt); every key leads to the
    # support desk here, as MENU_KEY does in the server's.
    "Read(BENCH_KEY,${IVR_PROMPTS}/ja/main_menu,1,,1,5)",
    "Wait(${IVR_NOTICE_GUARD})",
    "Queue(support,,,,${IVR_DEFAULT_WAIT})",
    "Hangup()",
]
_START = ["Answer()", "Set(CHANNEL(language)=${IVR_LANG})", f"Set(BENCH_REC={_REC})"]
_MIXMONITOR_LEGS = "MixMonitor(${BENCH_REC}.wav,r(${BENCH_REC}-rx.wav)t(${BENCH_REC}-tx.wav))"
# A Local pair running ChanSpy on its own 20 ms clock (the server's timeline recorder up to
# issue 16), writing <caller>-timeline.raw (stereo) into the baseline's folder.
_CHANSPY = ("Originate(Local/rec@ivr-recorder/n,exten,ivr-recorder-sink,s,1,,"
            f"av(IVR_REC_TARGET=${{UNIQUEID}}^IVR_REC_TIMELINE=${{IVR_REC_FROM_MONITOR}}/"
            f"{BASELINE_FOLDER}/${{FILTER(0-9,${{CALLERID(num)}})}}-timeline))")
# MixMonitor's interleaved stereo (left what the caller said, right what they heard).
_MIXMONITOR_STEREO = "MixMonitor(${BENCH_REC}.raw,D)"


# The IVR-time watchdog the server had until issue 16 (a Local pair waiting out the cap beside
# the caller, stopped when an operator answers; Read(), not Wait(): with transmit_silence on,
# Wait() makes each half send 50 silent frames a second through the pair). The server now
# uses the caller's TIMEOUT(absolute); this prices what that saved.
_CAP_READ = ["Set(__IVR_CALLER_CHANNEL=${CHANNEL})", "Gosub(bench-capread,start,1)"]
EXTRA_CONTEXTS = {
    "bench-capread": [
        ("start", ["Originate(Local/cap@bench-capread/n,exten,bench-sinkread,s,1,,"
                   "av(IVR_CAP_TARGET=${CHANNEL}^IVR_CAP_SECONDS=${IVR_MAX_IVR_TIME}))",
                   "Return()"]),
        ("cap", ["Set(CDR_PROP(disable)=1)", "Answer()",
                 "Set(SHARED(IVR_CAP_CHANNEL,${IVR_CAP_TARGET})=${CHANNEL})",
                 "Read(IVR_CAP_KEY,,1,,1,${FILTER(0-9.,${IVR_CAP_SECONDS})})",
                 # (No spaces or quotes: the CLI would split the line there.)
                 "ExecIf($[${SHARED(IVR_CONNECTED,${IVR_CAP_TARGET})}0=10]?Hangup())",
                 "ChannelRedirect(${IVR_CAP_TARGET},ivr-cap-reached,s,1)", "Hangup()"]),
    ],
    "bench-sinkread": [("s", ["Set(CDR_PROP(disable)=1)", "Read(IVR_SINK_KEY,,1,,1,86400)",
                              "Hangup()"])],
}


@dataclass(frozen=True)
class Baseline:
    did: str
    apps: list[str]
    recording: str  # how check_baseline finds the call's recording: legs, stereo, spy, none


BASELINES = {
    # The reference: what the server did before issue 16, less the controller.
    "baseline": Baseline("0399999999", [*_START, _MIXMONITOR_LEGS, *_JOURNEY], "legs"),
    "baseline-rec": Baseline("0399999998",
                             [*_START, _MIXMONITOR_LEGS, _CHANSPY, *_JOURNEY], "legs"),
    "baseline-spy": Baseline("0399999997", [*_START, _CHANSPY, *_JOURNEY], "spy"),
    "baseline-stereo": Baseline("0399999996", [*_START, _MIXMONITOR_STEREO, *_JOURNEY],
                                "stereo"),
    "baseline-none": Baseline("0399999995", [*_START, *_JOURNEY], "none"),
    "baseline-capread": Baseline("0399999993",
                                 [*_START, _MIXMONITOR_STEREO, *_CAP_READ, *_JOURNEY],
                                 "stereo"),
}
BASELINE_DID = BASELINES["baseline"].did


def operators(count: int) -> list[str]:
    return [f"op{5001 + n}" for n in range(count)]


def build_stack(root: Path, endpoints: int, talk: float,
                prompt_cache: Path | None = None) -> Stack:
    """Set up and start Asterisk and the controller, log every operator in to the support
    desk and start the operators' shared phone."""
    ops = operators(endpoints)
    journey = example_journey(open_now=True)
    # The example's menus behind the 'other' entry's greeting and notice, on the bench's
    # number: the caller answers the main menu with an RFC 2833 key.
    journey["entries"]["bench"] = {"title": "load bench", "numbers": [SERVER_DID],
                                   "language": "ja", "greeting": "welcome",
                                   "start": {"menu": "main"}}
    journey["desks"]["support"]["members"] = ops
    for desk in ("sales", "billing", "supervisor"):
        journey["desks"][desk]["members"] = ops[:1]
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "protection.yaml", root / "protection.yaml")
    stack = Stack(root)
    stack.write_config(ops, f'[protection]\nfile = "{root / "protection.yaml"}"\n', journey,
                       shared_phone=True)
    # The e2e stack's RTP range (999 ports) runs out at about 250 calls: a wider one.
    text = stack.config_path.read_text()
    text = re.sub(r"^rtp_start = \d+$", f"rtp_start = {ASTERISK_RTP[0]}", text, flags=re.M)
    text = re.sub(r"^rtp_end = \d+$", f"rtp_end = {ASTERISK_RTP[1]}", text, flags=re.M)
    stack.config_path.write_text(text.replace('log_level = "debug"', 'log_level = "info"'))
    stack.setup(prompt_cache)
    stack.start_asterisk()
    stack.start_controller()
    # Restrictions in force: a few blocks that the bench's callers never match, so every
    # call pays for the look-up.
    for n in range(5):
        stack.ivr("block", f"09099990{n:03d}", "--reason", "bench: never a bench caller")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda op: stack.login(op, "support"), ops))
    stack.operator(ops[0], pcap=lambda p: tone_pcap(p, talk + 30.0))
    return stack


def install_baseline(stack: Stack) -> None:
    """The baselines' extensions, in the running Asterisk only (see the module's note)."""
    last = list(BASELINES)[-1]
    if f"{BASELINE_CONTEXT}-{last}" in stack.cli(
            f"dialplan show {BASELINES[last].did}@from-trunk"):
        return
    for context, extensions in EXTRA_CONTEXTS.items():
        for exten, apps in extensions:
            for n, app in enumerate(apps, start=1):
                stack.cli(f"dialplan add extension {exten},{n},{app} into {context} replace")
    for kind, base in BASELINES.items():
        context = f"{BASELINE_CONTEXT}-{kind}"
        for n, app in enumerate(base.apps, start=1):
            stack.cli(f"dialplan add extension s,{n},{app} into {context} replace")
        stack.cli(f"dialplan add extension {base.did},1,Goto({context},s,1) into from-trunk "
                  "replace")
        shown = stack.cli(f"dialplan show s@{context}")
        assert "Queue(support" in shown, shown


def operator_media_port(stack: Stack) -> int:
    phone = next(iter(stack.phones.values()))
    return int(phone.args[phone.args.index("-mp") + 1])


def asterisk_quiet(stack: Stack, timeout: float = 90) -> None:
    """No channel left from the last run (callers, recorders, members)."""
    def quiet() -> bool:
        found = re.search(r"(\d+) active channels?", stack.cli("core show channels count"))
        return found is not None and found.group(1) == "0"

    wait_until(quiet, timeout, interval=1, what="Asterisk without channels")


@dataclass
class Callers:
    peer: SippPeer
    numbers: list[str]
    hangup_after: float


def start_callers(stack: Stack, workdir: Path, *, did: str, prefix: str, calls: int,
                  concurrency: int, rate: float, talk: float, shout: bool = False) -> Callers:
    """One SIPp placing `calls` calls, at most `concurrency` at once, `rate` new calls a
    second; each caller sends continuous 20 ms speech, presses MENU_KEY KEY_INTO_MENU s into
    the main menu, and hangs up `talk` s after the operator should have answered (greeting +
    notice + the key + guard + ring). shout: every caller turns loud at shout_at() of its
    pcap (SHOUT)."""
    key_at = intro_seconds(stack) + KEY_INTO_MENU
    hangup_after = key_at + 0.5 + 0.8 + 1.0 + talk
    workdir.mkdir(parents=True)
    numbers = [f"{prefix}{n:05d}" for n in range(calls)]
    (workdir / "callers.csv").write_text("SEQUENTIAL\n" + "".join(f"{c};\n" for c in numbers))
    keys = [(key_at, MENU_KEY)]
    if shout:
        shout_pcap(workdir / "caller.pcap", hangup_after, shout_at(hangup_after, talk), keys)
    else:
        caller_pcap(workdir / "caller.pcap", hangup_after, keys)
    (workdir / "caller.xml").write_text(
        caller_scenario(pcap="caller.pcap", hangup_after=hangup_after))
    peer = SippPeer(workdir, [
        f"127.0.0.1:{stack.ports['sip']}", "-sf", str(workdir / "caller.xml"), "-s", did,
        "-inf", str(workdir / "callers.csv"), "-m", str(calls), "-l", str(concurrency),
        "-r", f"{rate:g}", "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
        "-mi", "127.0.0.1", "-mp", str(CALLER_RTP_BASE), "-t", "u1",
        "-timeout", f"{round(hangup_after + calls / rate + 120)}s", "-timeout_error",
    ]).start()
    stack.peers.append(peer)
    return Callers(peer, numbers, hangup_after)


def server_archives(stack: Stack, numbers: list[str], timeout: float) -> dict[str, Path]:
    """The archive file of each of these callers' calls once the server has finalised them
    (the record only says where the file is; the file itself is checked independently).
    Gives up after `timeout` s and returns what is final by then."""
    wanted = set(numbers)
    found: dict[str, Path] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in calls_json(stack, len(numbers) + 50):
            if call["caller"] in wanted and call.get("recording_sha256"):
                found[call["caller"]] = Path(call["recording_path"])
        if len(found) == len(wanted):
            break
        time.sleep(2)
    return found


def shout_at(hangup_after: float, talk: float) -> float:
    """Where the loud stretch starts in a shouting caller's pcap (its 0 s is the ACK)."""
    return hangup_after - talk + SHOUT[0]


def shout_pcap(path: Path, seconds: float, loud_at: float,
               keys: list[tuple[float, str]]) -> Path:
    """The bench's speech with SHOUT's loud stretch (known noise) in place of it."""
    _at, length, level = SHOUT
    audio = alaw_decode(speech_alaw(seconds))
    start = round(loud_at * 8000)
    audio[start:start + round(length * 8000)] = noise(length, seed=1716, level=level)
    return caller_pcap(path, seconds, keys, audio=alaw_encode(audio))


def menu_answers(stack: Stack, numbers: list[str]) -> dict[str, int]:
    """How these callers' calls went through the menus, as the server recorded them
    (`menu_path`: "main:2" is the key at the first prompt; "main:- main:2" after a retry)."""
    wanted, found = set(numbers), {}
    for call in calls_json(stack, len(numbers) + 50):
        if call["caller"] in wanted:
            path = call.get("menu_path") or "none"
            found[path] = found.get(path, 0) + 1
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def set_live(stack: Stack, enabled: bool) -> None:
    """Live protection on or off through the settings (as an admin would); the running
    server applies it to its next call within a second."""
    run = subprocess.run([str(PROJECT / ".venv" / "bin" / "ivr"), "settings", "set", "live",
                          "-", "--patch", "-c", str(stack.config_path)],
                         input=json.dumps({"enabled": enabled}), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    time.sleep(2.0)


def calls_json(stack: Stack, limit: int) -> list[dict]:
    run = subprocess.run([str(PROJECT / ".venv" / "bin" / "ivr"), "calls", "--json",
                          "--limit", str(limit), "-c", str(stack.config_path)],
                         capture_output=True, text=True, timeout=60)
    return json.loads(run.stdout)["calls"] if run.returncode == 0 else []
