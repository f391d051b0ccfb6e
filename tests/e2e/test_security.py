"""Security defaults end to end: how the trunk is identified, hostile caller text, who
Asterisk runs as and who can read its files, and what the AMI user may do."""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from tests.e2e.conftest import support_desk_stack
from tests.e2e.recordings import call_recording
from tests.e2e.stack import SippPeer, Stack, free_port, free_udp_pair_base, wait_until

DID = "0399000000"  # the journey's 'other' entry: notice, then the support desk
FOREIGN = "127.0.0.2"  # a loopback address outside trunk.match (127.0.0.1)
UNIQUEID = re.compile(r"^e2e-\d+\.\d+$")  # Asterisk's own ids: systemname-epoch.sequence

# An INVITE that expects to be turned away; any final answer ends the scenario.
_REJECTED = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="unwanted INVITE">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:[field0]@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=intruder 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [local_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="401" optional="true" next="ack"/>
  <recv response="403" optional="true" next="ack"/>
  <recv response="404" optional="true" next="ack"/>
  <recv response="407" optional="true" next="ack"/>
  <recv response="488" optional="true" next="ack"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0
    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <label id="ack"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


def unwanted_invite(stack: Stack, from_user: str, source: str = FOREIGN) -> tuple[int, str]:
    """Send one INVITE from `source` with From user `from_user`; the final status code."""
    workdir = stack.root / f"sipp-intruder-{len(stack.peers)}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "users.csv").write_text(f"SEQUENTIAL\n{from_user};\n")
    (workdir / "intruder.xml").write_text(_REJECTED)
    peer = SippPeer(
        workdir,
        [f"127.0.0.1:{stack.ports['sip']}", "-sf", str(workdir / "intruder.xml"), "-s", DID,
         "-inf", str(workdir / "users.csv"), "-m", "1", "-l", "1",
         "-i", source, "-p", str(free_port(socket.SOCK_DGRAM)),
         "-mi", source, "-mp", str(free_udp_pair_base()), "-t", "u1",
         "-timeout", "40s", "-timeout_error"],
    ).start()
    stack.peers.append(peer)
    peer.wait(60)
    finals = [int(m.group(1)) for _, what, _ in peer.messages()
              if "received" in what and (m := re.search(r"\| SIP/2.0 ([2-6]\d\d)", what))]
    return (finals[-1] if finals else 0), (workdir / "messages.log").read_text(errors="replace")


def recordings(stack: Stack) -> set[Path]:
    return {p for p in (stack.data / "recordings").rglob("*") if p.is_file()}


def new_calls(stack: Stack, known: set[str]) -> list[dict]:
    return [c for c in stack.calls(False) if c["id"] not in known]


def test_trunk_name_from_foreign_address_is_not_a_customer_call(stack):
    known = {c["id"] for c in stack.calls(False)}
    before = recordings(stack)
    code, trace = unwanted_invite(stack, "trunk")
    assert code in (401, 403, 404), trace[-3000:]
    time.sleep(2)
    assert new_calls(stack, known) == []
    assert recordings(stack) == before
    assert "from-trunk" not in stack.cli("core show channels verbose")


def test_operator_name_from_foreign_address_is_challenged_not_let_in(stack):
    known = {c["id"] for c in stack.calls(False)}
    before = recordings(stack)
    code, trace = unwanted_invite(stack, "op1001")
    assert code in (401, 403, 404, 407), trace[-3000:]
    time.sleep(2)
    assert new_calls(stack, known) == []
    assert recordings(stack) == before


# pjproject URI-decodes the user part: %3A is a colon, %0D%0A a line break, %2C a comma.
FORGERIES = [
    # a comma adds a UserEvent field; the old dialplan let it replace CallId
    ("0312345678,CallId%3Aforged1", DID),
    # a line break adds an AGI header: a second agi_uniqueid
    ("0312345678%0D%0Aagi_uniqueid%3A%20forged2", DID),
    # two line breaks end the AMI event and start a forged one
    ("0312345678%0D%0A%0D%0AEvent%3A%20UserEvent%0D%0AUserEvent%3A%20IvrCallStart%0D%0A"
     "CallId%3A%20forged3%0D%0A", DID),
    ("0312345678,Did%3A999", DID),
    ("a%3Ab", DID),
    # the dialled number is caller text too
    ("0312345678", DID + ",CallId%3Aforged4"),
]


@pytest.mark.parametrize("caller, did", FORGERIES)
def test_caller_text_cannot_forge_call_fields(stack, caller, did):
    known = {c["id"] for c in stack.calls(False)}
    peer = stack.caller(caller, did, hangup_after=3)
    assert peer.wait(60).returncode == 0, (peer.workdir / "screen.log").read_text()[-2000:]
    wait_until(lambda: [c for c in new_calls(stack, known) if c["outcome"]], 30,
               what="the call's record")
    time.sleep(1.5)
    calls = new_calls(stack, known)
    assert len(calls) == 1, calls
    record = calls[0]
    # The call id is Asterisk's own, not anything the caller wrote.
    assert UNIQUEID.match(record["id"]), record
    assert record["recording_path"] and record["id"] in record["recording_path"]
    # The dialled number as dialled (at most cut to harmless characters), never a forged one.
    assert record["did"].startswith(DID), record
    assert re.fullmatch(r"[0-9A-Za-z+*#._]+", record["did"]), record
    assert record["caller"] in (None, "0312345678"), record


def asterisk_pid(stack: Stack) -> int:
    """deploy/asterisk.sh execs unshare, sh, chroot and Asterisk in turn: one process."""
    assert stack.asterisk is not None and stack.asterisk.poll() is None
    comm = Path(f"/proc/{stack.asterisk.pid}/comm").read_text().strip()
    assert comm == "asterisk", comm
    return stack.asterisk.pid


def test_asterisk_runs_unprivileged_and_files_are_private(stack):
    peer = stack.caller("0355550000", DID, hangup_after=3)
    assert peer.wait(60).returncode == 0
    record = stack.call_record(lambda c: c["caller"] == "0355550000" and c["recording_sha256"],
                               timeout=40, what="finalised recording")
    user = subprocess.run(["ps", "-o", "user=", "-p", str(asterisk_pid(stack))],
                          capture_output=True, text=True).stdout.strip()
    assert user and user != "root", user
    # The archive (the controller writes it) as private as Asterisk's files were.
    path = call_recording(record).path
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o007 == 0, f"{path} is {oct(mode)}"
    private = [stack.data / "ivr.sqlite3", stack.data / "secrets.toml",
               *(stack.data / "asterisk" / "etc").glob("*.conf")]
    for file in private:
        mode = stat.S_IMODE(file.stat().st_mode)
        assert mode & 0o007 == 0, f"{file} is {oct(mode)}"
    for folder in (stack.data / "recordings", stack.data / "asterisk" / "lib",
                   stack.data / "asterisk" / "spool", stack.data / "asterisk" / "log"):
        mode = stat.S_IMODE(folder.stat().st_mode)
        assert mode & 0o007 == 0, f"{folder} is {oct(mode)}"


def ami_session(stack: Stack, actions: list[str]) -> str:
    secrets = tomllib.loads((stack.data / "secrets.toml").read_text())
    with socket.create_connection(("127.0.0.1", stack.ports["ami"]), timeout=5) as sock:
        sock.recv(100)  # banner
        login = f"Action: Login\r\nUsername: ivr\r\nSecret: {secrets['ami_secret']}\r\n" \
                "Events: off\r\nActionID: login\r\n\r\n"
        sock.sendall(login.encode())
        for n, action in enumerate(actions):
            sock.sendall(f"{action}\r\nActionID: a{n}\r\n\r\n".encode())
        sock.sendall(b"Action: Logoff\r\nActionID: bye\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"ActionID: bye" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")


def ami_answer(text: str, action_id: str) -> str:
    for block in text.split("\r\n\r\n"):
        if f"ActionID: {action_id}\r\n" in block + "\r\n":
            return block
    return ""


def test_ami_user_may_not_command_run_programs_or_restart(stack):
    """The controller may originate (live protection's whispers, a supervisor's listen-in)
    but not run a program through it: Asterisk wants the `system` class for Originate of
    System/Exec/Eval-like applications, which this user does not have."""
    text = ami_session(stack, [
        "Action: Command\r\nCommand: core show version",
        "Action: Originate\r\nChannel: Local/nobody@nowhere\r\nApplication: System\r\n"
        "Data: touch /tmp/ivr-ami-system-check",
        "Action: Reload\r\nModule: manager",
        "Action: Ping",
    ])
    assert "Response: Success" in ami_answer(text, "login"), text
    for action_id in ("a0", "a2"):
        answer = ami_answer(text, action_id)
        assert "Permission denied" in answer, (action_id, text)
    # Asterisk 22 (measured): "Originate Access Forbidden: app or data blacklisted".
    assert "Originate Access Forbidden" in ami_answer(text, "a1"), text
    assert "Response: Success" in ami_answer(text, "a3"), text
    # The controller's own actions still work (QueueStatus, QueueAdd: operator login).
    stack.login("op1001", "support")
    out = stack.ivr("operators", "list").stdout
    assert "op1001" in out


def test_hangup_still_in_from_trunk_never_reaches_the_controller(stack):
    """Asterisk prints a channel's raw caller number in its Hangup event; before the first
    priority of [from-trunk] cleans it, that event is dropped for the controller's AMI user.
    A Local channel's first half keeps the context it was dialled in: a stand-in for a
    caller gone while still in [from-trunk]. (Local channels' Hangup events are dropped
    anyway, by name: none is a call's own channel.) A UserEvent from another Local channel
    shows that events do reach the same connection."""
    assert "Loaded" in stack.cli("module load res_clioriginate.so")
    secrets = tomllib.loads((stack.data / "secrets.toml").read_text())
    with socket.create_connection(("127.0.0.1", stack.ports["ami"]), timeout=5) as sock:
        sock.recv(100)
        sock.sendall(f"Action: Login\r\nUsername: ivr\r\nSecret: {secrets['ami_secret']}"
                     "\r\n\r\n".encode())
        time.sleep(0.5)
        stack.cli("channel originate Local/h@from-trunk application Wait 1")
        stack.cli("channel originate Local/s@ivr-end application UserEvent IvrFilterCheck")
        time.sleep(4)
        sock.settimeout(1)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    blocks = data.decode(errors="replace").split("\r\n\r\n")
    hangups = [block for block in blocks if block.startswith("Event: Hangup")]
    assert any(b.startswith("Event: UserEvent") and "UserEvent: IvrFilterCheck" in b
               for b in blocks), blocks  # events do arrive
    assert not any("Context: from-trunk" in b for b in hangups), hangups
    assert not any("Channel: Local/" in b for b in hangups), hangups
