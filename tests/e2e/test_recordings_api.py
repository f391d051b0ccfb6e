"""Search and playback end to end: a real call through Asterisk and SIPp is archived, found
with GET /api/v1/recordings?number=..., downloaded over the running controller's HTTP port
with a supervisor token (the bytes are the file on disk, their sha256 the index row's and the
call record's), played with a Range request (the slice of the file), and refused to an
operator, without a token and for a traversal attempt, each refusal in the audit log."""

from __future__ import annotations

import hashlib
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import support_desk_stack
from tests.e2e.stack import Stack, intro_seconds, wait_until
from tests.e2e.test_admin import http, make_token

CALLER = "0312340015"
DID = "0399000000"  # the 'other' entry: greeting, notice, the support desk


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


def fetch(stack: Stack, path: str, token: str | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET as a browser or curl would, the path sent as given; (status, headers, body)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{stack.ports['web']}{path}",
                                     headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def recorded(stack) -> tuple[dict, float]:
    """One real call to the support desk, finalised; (its call record, when it started)."""
    stack.operator("op1001")
    started = time.time()
    caller = stack.caller(CALLER, DID, hangup_after=intro_seconds(stack) + 8)
    result = caller.wait(90)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    record = stack.call_record(lambda c: c["caller"] == CALLER and c["recording_sha256"],
                               timeout=60, what="finalised call record")
    return record, started


def test_a_recorded_call_is_found_downloaded_and_every_access_logged(stack, recorded):
    supervisor = make_token(stack, "e2e-rec-supervisor", "supervisor")
    operator_token = make_token(stack, "e2e-rec-operator", "operator")
    record, started = recorded

    # Found by the number in another written form, with the day's date range.
    query = urllib.parse.urlencode({"number": "+81 3-1234-0015",
                                    "from": str(int(started) - 60)})

    def found():
        status, body = http(stack, "GET", f"/api/v1/recordings?{query}", supervisor)
        assert status == 200, body
        rows = [r for r in body["recordings"] if r["state"] == "final"]
        return rows or None

    [row] = wait_until(found, 30, what="the call's final index row")
    assert row["call_id"] == record["id"] and row["kind"] == "call"
    assert row["caller"] == CALLER and row["desk"] == "support" and row["operator"] == "op1001"

    # The whole file: the bytes on disk (the independent reference), hashed as indexed.
    on_disk = Path(record["recording_path"]).read_bytes()
    status, headers, body = fetch(stack, f"/api/v1/recordings/{row['call_id']}/audio",
                                  supervisor)
    assert status == 200 and body == on_disk
    assert hashlib.sha256(body).hexdigest() == row["sha256"] == record["recording_sha256"]
    assert headers["Content-Type"] == f"audio/{row['format']}"
    # A range: the file's slice, and Content-Range says which.
    status, headers, part = fetch(stack, f"/api/v1/recordings/{row['call_id']}/audio",
                                  supervisor, {"Range": "bytes=1000-4999"})
    assert status == 206 and part == on_disk[1000:5000]
    assert headers["Content-Range"] == f"bytes 1000-4999/{len(on_disk)}"

    # Refused: an operator, no token, a path in place of the call id.
    assert fetch(stack, f"/api/v1/recordings/{row['call_id']}/audio", operator_token)[0] == 403
    assert fetch(stack, f"/api/v1/recordings/{row['call_id']}/audio")[0] == 401
    status, _, body = fetch(stack, "/api/v1/recordings/..%2F..%2F..%2Fivr.toml/audio",
                            supervisor)
    assert status == 400 and b"[server]" not in body
    status, _, body = fetch(stack, f"/api/v1/recordings/{row['call_id']}/audio"
                            "?kind=..%2F..%2Fivr.toml", supervisor)
    assert status == 400 and b"[server]" not in body

    # The audit log has each access: who, what, from where, the range asked.
    status, audit = http(stack, "GET", "/api/v1/audit?action=recording.&limit=50", supervisor)
    assert status == 200
    rows = audit["audit"]
    target = f"recording {row['call_id']}"
    plays = [(r["actor"], r["after"].get("range")) for r in rows
             if r["action"] == "recording.play" and r["target"] == target]
    assert sorted(plays, key=str) == sorted([("e2e-rec-supervisor", None),
                                             ("e2e-rec-supervisor", "bytes=1000-4999")], key=str)
    refusals = [(r["actor"], r["role"], r["after"]["status"]) for r in rows
                if r["action"] == "recording.refused"]
    assert ("e2e-rec-operator", "operator", 403) in refusals
    assert ("anonymous", "", 401) in refusals
    assert refusals.count(("e2e-rec-supervisor", "supervisor", 400)) == 2
    assert all(r["origin"] == "api 127.0.0.1" for r in rows)
    assert any(r["action"] == "recording.search" and r["after"]["found"] == 1 for r in rows)
    log = stack.controller_log()
    assert f"event=recording_access action=recording.refused call_id={row['call_id']}" in log


def test_analysis_picture_and_evidence_tar_over_http(stack, recorded, tmp_path):
    """The call once analysed: its picture, and the bundle as a tar that the real
    `sha256sum -c` accepts after unpacking."""
    supervisor = make_token(stack, "e2e-rec-export", "supervisor")
    record, _ = recorded
    path = f"/api/v1/recordings/{record['id']}"

    def analysed():
        status, body = http(stack, "GET", path, supervisor)
        assert status == 200, body
        return body["recordings"][0]["analysis_state"] == "done" or None

    wait_until(analysed, 60, what="the analysis")
    status, headers, svg = fetch(stack, f"{path}/analysis.svg", supervisor)
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    assert svg.startswith(b"<svg")
    status, headers, tar = fetch(stack, f"{path}/export", supervisor)
    assert status == 200 and headers["Content-Type"] == "application/x-tar"
    (tmp_path / "bundle.tar").write_bytes(tar)
    subprocess.run(["tar", "-xf", "bundle.tar"], cwd=tmp_path, check=True)
    [folder] = [p for p in tmp_path.iterdir() if p.is_dir()]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    archive = Path(record["recording_path"])
    assert (folder / archive.name).read_bytes() == archive.read_bytes()
    status, audit = http(stack, "GET", "/api/v1/audit?action=recording.&limit=20", supervisor)
    done = {r["action"] for r in audit["audit"] if r["actor"] == "e2e-rec-export"}
    assert {"recording.analysis", "recording.export"} <= done
