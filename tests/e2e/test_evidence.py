"""Evidence end to end: a real call through Asterisk and SIPp is archived and chained;
`ivr recordings verify` finds it intact; its exported bundle passes the real `sha256sum -c`
and the bundle's own verify_chain.py; one flipped byte in the archive is named by verify.

References are independent of the controller: hashes are computed here with hashlib and
`sha256sum`, links with `printf | sha256sum`, as a recipient would."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.audio.wav import wav_duration
from tests.e2e.conftest import support_desk_stack
from tests.e2e.stack import Stack, wait_until

CALLER = "0312340015"
DID = "0399000000"  # the 'other' entry: straight to the support desk


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


def verify(stack: Stack, *args: str) -> tuple[int, dict]:
    run = stack.ivr("recordings", "verify", "--json", *args, check=False)
    assert run.returncode in (0, 1), run.stderr
    return run.returncode, json.loads(run.stdout)


def printf_sha256sum(prev_hash: str, entry: str) -> str:
    out = subprocess.run(["bash", "-c", 'printf "%s\\n%s" "$1" "$2" | sha256sum', "-",
                          prev_hash, entry], capture_output=True, text=True, check=True,
                         timeout=10).stdout
    return out.split()[0]


def test_a_real_call_verifies_exports_and_a_flipped_byte_is_named(stack, tmp_path):
    intro = sum(wav_duration(stack.data / "prompts" / "ja" / f"{p}.wav")
                for p in ("welcome", "notice"))
    stack.operator("op1001")
    caller = stack.caller(CALLER, DID, hangup_after=intro + 6)
    assert caller.wait(90).returncode == 0, (caller.workdir / "screen.log").read_text()[-2000:]
    record = stack.call_record(lambda c: c["caller"] == CALLER and c["recording_sha256"],
                               timeout=60, what="archived call record")
    archive = Path(record["recording_path"])
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert sha == record["recording_sha256"]

    # Intact, with this call's file hashed and chained.
    code, report = wait_until(lambda: (lambda r: r if r[1]["entries"] else None)(
        verify(stack)), 30, what="a chain entry")
    assert code == 0 and report["intact"], report["problems"]
    assert report["files"] >= 1
    anchor = report["head"]
    # The controller logged the same head when it chained the recording: an anchor outside
    # the database.
    log = stack.controller_log()
    assert f"head={anchor}" in log and "recordings_expiry_failed" not in log

    # Export: the bundle, checked with the recipient's tools.
    out_dir = tmp_path / "exports"
    run = stack.ivr("recordings", "export", record["id"], "--out", str(out_dir))
    (bundle,) = out_dir.iterdir()
    assert str(bundle) in run.stdout
    copy = bundle / archive.name
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == sha
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{archive.name}: OK" in check.stdout
    own = subprocess.run([sys.executable, "-I", "verify_chain.py"], cwd=bundle,
                         capture_output=True, text=True, timeout=30)
    assert own.returncode == 0, own.stdout
    chain = json.loads((bundle / "chain.json").read_text())
    covers = [e for e in chain["entries"] if e["role"] == "covers"]
    assert covers and json.loads(covers[0]["entry"])["sha256"] == sha
    for e in chain["entries"]:
        assert printf_sha256sum(e["prev_hash"], e["entry"]) == e["hash"]
    assert chain["head"]["hash"] == anchor
    call = json.loads((bundle / "call.json").read_text())
    assert call["call"]["id"] == record["id"] and call["call"]["caller"] == CALLER
    assert {"notice_started", "connected"} <= {e["kind"] for e in call["events"]}

    # One flipped byte in the bundle: sha256sum -c fails on that file.
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 1 and f"{archive.name}: FAILED" in check.stdout

    # One flipped byte in the archive: verify exits 1 and names the file.
    original = archive.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    try:
        run = stack.ivr("recordings", "verify", check=False)
        assert run.returncode == 1, run.stdout
        problems = [line for line in run.stdout.splitlines() if line.startswith("edited_file")]
        assert len(problems) == 1 and archive.name in problems[0], run.stdout
        code, report = verify(stack, "--anchor", anchor)
        assert [p["kind"] for p in report["problems"]] == ["edited_file"]
    finally:
        archive.write_bytes(original)
    assert verify(stack, "--anchor", anchor)[0] == 0
