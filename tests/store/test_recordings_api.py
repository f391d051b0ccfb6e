"""/api/v1/recordings with aiohttp's test client on a real store (both engines), over real
archive files written with soundfile: search filters and paging, playback with HTTP ranges
(compared with slices of the file on disk), and refusals (no token, operator role, traversal
in the path and the query) each present in the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from ivr.protection.service_blocks import BlockService
from ivr.protection.service_settings import Actor, SettingsService
from ivr.protection.service_tokens import RIGHTS, TokenService
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import BlockStore
from ivr.protection.store_settings import SettingsStore
from ivr.protection.store_tokens import TokenStore
from ivr.recordings.service_analysis import analyse_file
from ivr.recordings.service_evidence import EvidenceService
from ivr.recordings.service_search import RecordingSearch
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex, State
from ivr.service import CallService
from ivr.store import CallStore, Database
from ivr.web.api import AdminServices, create_api

CLI = Actor(name="root", role="admin", origin="cli")
DAY = 86400.0
T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC
SECRET = b"not a recording: must never be served\n"


def write_archive(root: Path, relative: str, seconds: float, seed: int) -> tuple[int, str]:
    """A stereo 8 kHz archive file (caller left, other right) of noise; (size, sha256)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal((int(8000 * seconds), 2)) * 3000).astype(np.int16)
    fmt = "FLAC" if relative.endswith(".flac") else "WAV"
    soundfile.write(path, audio, 8000, format=fmt, subtype="PCM_16")
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


# (call id, started, caller, did, desk, operator, outcome, flags, duration, shouting, state)
ROWS = [
    ("1764000000.1", T0, "0312345678", "0399000000", "support", "op1001", "completed", "",
     60.0, 0, State.FINAL),
    ("1764000000.2", T0 + 3600, "0312345678", "0399000000", "sales", "op1002", "completed",
     "flagged", 300.0, 2, State.FINAL),
    ("1764000000.3", T0 + 2 * DAY, "0901112222", "0399000000", "support", "op1001",
     "abandoned", "one_sided", 12.0, None, State.FINAL),
    ("1764000000.4", T0 + 3 * DAY, None, "0399000000", "support", "op1003", "completed",
     "flagged one_sided", 200.0, 1, State.FINAL),
    ("1764000000.5", T0 + 4 * DAY, "0455556666", "0399000000", "support", None, "refused",
     "", 5.0, None, State.EXPIRED),
    ("1764000000.6", T0 + 5 * DAY, "0312345678", "0501234567", "sales", "op1002",
     "completed", "", 90.0, 0, State.RECORDING),
    ("1764000000.7", T0 + 6 * DAY, "0312345678", "0399000000", "support", "op1001",
     "completed", "one_sided_x", 45.0, 3, State.FINAL),
]


@pytest.fixture
async def api(db: Database, tmp_path: Path):
    root = tmp_path / "recordings"
    (tmp_path / "secret.txt").write_bytes(SECRET)
    audit = AuditStore(db)
    tokens = TokenService(TokenStore(db), audit)
    index = RecordingIndex(db)
    files: dict[str, tuple[str, int, str]] = {}
    for n, (call_id, started, caller, did, desk, op, outcome, flags, duration, shouting,
            state) in enumerate(ROWS):
        fmt = "flac" if n % 2 else "wav"
        relative = f"2025/11/{24 + n:02d}/{call_id}.{fmt}"
        size, sha = write_archive(root, relative, 1.5 + n * 0.25, seed=n)
        files[call_id] = (relative, size, sha)
        await index.add(call_id=call_id, kind="call", path=relative, format=fmt, state=state,
                        started_at=started, caller=caller, did=did, desk=desk, operator=op,
                        outcome=outcome, flags=flags, duration=duration, size=size,
                        sha256=sha, shouting=shouting,
                        analysis_state="pending" if shouting is None else "done")
    services = AdminServices(
        settings=SettingsService(SettingsStore(db), audit), tokens=tokens, audit=audit,
        calls=CallService(CallStore(db), node="n1"), blocks=BlockService(BlockStore(db), audit),
        recordings=RecordingSearch(index, root),
        evidence=EvidenceService(index, ChainStore(db), root, audit=audit, calls=CallStore(db)))
    app = web.Application()
    app.add_subapp("/api/v1", create_api(services))
    client = TestClient(TestServer(app))
    await client.start_server()
    client.tokens = {role: await tokens.create(f"t-{role}", role, CLI)  # type: ignore
                     for role in RIGHTS}
    client.root, client.files, client.index = root, files, index  # type: ignore
    client.audit = audit  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        await client.close()


def auth(client, role: str = "supervisor") -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[role]}"}


async def found(client, **params) -> list[str]:
    response = await client.get("/api/v1/recordings", params=params, headers=auth(client))
    assert response.status == 200, await response.text()
    return [r["call_id"] for r in (await response.json())["recordings"]]


def ids(*numbers: int) -> list[str]:
    """Call ids by their row number, newest first (the order search answers in)."""
    return [f"1764000000.{n}" for n in sorted(numbers, reverse=True)]


async def test_search_filters(api):
    assert await found(api) == ids(1, 2, 3, 4, 5, 6, 7)
    # The number in any written form, as the block list normalises it; the dialled one too.
    for form in ("03-1234-5678", "+81 3 1234 5678", "０３１２３４５６７８"):
        assert await found(api, number=form) == ids(1, 2, 6, 7)
    assert await found(api, number="0501234567") == ids(6)
    assert await found(api, desk="sales") == ids(2, 6)
    assert await found(api, operator="op1001") == ids(1, 3, 7)
    assert await found(api, outcome="abandoned") == ids(3)
    # A flag is a whole word: one_sided_x is not one_sided.
    assert await found(api, flag="one_sided") == ids(3, 4)
    assert await found(api, flag="flagged", desk="support") == ids(4)
    assert await found(api, min_duration="60", max_duration="200") == ids(1, 4, 6)
    assert await found(api, shouting="true") == ids(2, 4, 7)
    assert await found(api, shouting="false") == ids(1, 6)  # analysed, none found
    assert await found(api, state="expired") == ids(5)
    # Dates: a bare `to` date runs through that day; ages count back from now.
    assert await found(api, **{"from": "2025-11-26", "to": "2025-11-28"}) == ids(3, 4, 5)
    assert await found(api, **{"from": str(T0 + 3600), "to": str(T0 + 2 * DAY)}) == ids(2)
    assert await found(api, **{"from": "2025-11-24T17:00:00Z"}) == ids(2, 3, 4, 5, 6, 7)
    assert await found(api, **{"from": "7d"}) == []  # all of them are a year old or more


async def test_search_pages_newest_first(api):
    seen: list[str] = []
    page, pages = 1, []
    while page is not None:
        response = await api.get("/api/v1/recordings", headers=auth(api),
                                 params={"per_page": "3", "page": str(page)})
        body = await response.json()
        assert body["total"] == 7 and body["per_page"] == 3
        seen += [r["call_id"] for r in body["recordings"]]
        pages.append(len(body["recordings"]))
        page = body["next_page"]
    assert pages == [3, 3, 1] and seen == ids(1, 2, 3, 4, 5, 6, 7)
    body = await (await api.get("/api/v1/recordings", headers=auth(api),
                                params={"page": "9"})).json()
    assert body["recordings"] == [] and body["total"] == 7 and body["next_page"] is None


async def refused(api, response, status: int, field: str | None = None) -> dict:
    """The error reply, and its audit row (recording.refused with the same error id)."""
    assert response.status == status, (response.status, await response.text())
    body = await response.read()
    assert SECRET not in body
    error = (await response.json())["error"]
    if field is not None:
        assert error["field"] == field, error
    rows = [r for r in await api.audit.list(action="recording.refused", limit=1000)
            if r.after.get("error_id") == error["id"]]
    assert len(rows) == 1, error
    assert rows[0].after["status"] == status and rows[0].origin.startswith("api ")
    return rows[0].as_dict()


async def test_search_validation_names_the_parameter(api):
    for params, field in (({"per_page": "0"}, "per_page"), ({"per_page": "501"}, "per_page"),
                          ({"page": "x"}, "page"), ({"from": "yesterday"}, "from"),
                          ({"from": "2025-11-28", "to": "2025-11-26"}, "to"),
                          ({"min_duration": "-1"}, "min_duration"),
                          ({"min_duration": "9", "max_duration": "3"}, "max_duration"),
                          ({"shouting": "loud"}, "shouting"), ({"state": "gone"}, "state"),
                          ({"number": "call me"}, "number"), ({"desk": "a b"}, "desk")):
        row = await refused(api, await api.get("/api/v1/recordings", params=params,
                                               headers=auth(api)), 422, field)
        assert row["actor"] == "t-supervisor" and row["after"]["wanted"] == "recording.search"
    for params, field in (({"path": "/etc/passwd"}, "path"), ({"desk": "a\x00b"}, "desk"),
                          ({"desk": "../x"}, "desk"), ({"number": "/etc/passwd"}, "number"),
                          ({"from": "..\\..\\x"}, "from")):
        await refused(api, await api.get("/api/v1/recordings", params=params,
                                         headers=auth(api)), 400, field)
    # A granted search is in the log too, with its filters.
    await found(api, desk="sales")
    searches = await api.audit.list(action="recording.search")
    assert searches[0].after["filters"] == {"desk": "sales"} and searches[0].after["found"] == 2


async def test_audio_whole_and_ranges(api):
    call_id = "1764000000.1"
    relative, size, sha = api.files[call_id]
    data = (api.root / relative).read_bytes()
    assert len(data) == size
    response = await api.get(f"/api/v1/recordings/{call_id}/audio", headers=auth(api))
    assert response.status == 200 and await response.read() == data
    assert response.headers["Content-Type"] == "audio/wav"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert hashlib.sha256(data).hexdigest() == sha
    cases = {"bytes=0-99": (0, 100), "bytes=100-": (100, size), "bytes=-50": (size - 50, size),
             f"bytes=10-{size * 3}": (10, size), f"bytes={size - 1}-": (size - 1, size)}
    for asked, (start, stop) in cases.items():
        response = await api.get(f"/api/v1/recordings/{call_id}/audio",
                                 headers={**auth(api), "Range": asked})
        assert response.status == 206, (asked, await response.text())
        assert await response.read() == data[start:stop], asked
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}"
    for asked in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=0-1,5-6",
                  "items=0-1", "bytes=5-2", "bytes=-0"):
        response = await api.get(f"/api/v1/recordings/{call_id}/audio",
                                 headers={**auth(api), "Range": asked})
        row = await refused(api, response, 416, "Range")
        assert response.headers["Content-Range"] == f"bytes */{size}"
        assert row["after"]["range"] == asked and row["target"] == f"recording {call_id}"
    # Every play is logged with the range asked and what was sent.
    plays = [r for r in await api.audit.list(action="recording.play", limit=100)]
    assert len(plays) == 1 + len(cases)
    assert {p.after.get("range") for p in plays} == {None, *cases}
    assert all(p.actor == "t-supervisor" and p.role == "supervisor" and p.target ==
               f"recording {call_id}" and p.after["sha256"] == sha for p in plays)
    # A FLAC archive is served as FLAC; ?download=true is an attachment, logged as such.
    relative, size, _ = api.files["1764000000.2"]
    response = await api.get("/api/v1/recordings/1764000000.2/audio",
                             params={"download": "true"}, headers=auth(api, "admin"))
    assert response.status == 200 and response.headers["Content-Type"] == "audio/flac"
    assert await response.read() == (api.root / relative).read_bytes()
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert (await api.audit.list(action="recording.download"))[0].actor == "t-admin"


async def test_show_and_states(api):
    body = await (await api.get("/api/v1/recordings/1764000000.2", headers=auth(api))).json()
    [row] = body["recordings"]
    assert row["sha256"] == api.files["1764000000.2"][2] and row["flags"] == ["flagged"]
    row = await refused(api, await api.get("/api/v1/recordings/1764000000.99",
                                           headers=auth(api)), 404, "call_id")
    assert row["after"]["wanted"] == "recording.read"
    assert (await api.audit.list(action="recording.read"))[0].target == \
        "recording 1764000000.2"
    await refused(api, await api.get("/api/v1/recordings/1764000000.5/audio",
                                     headers=auth(api)), 410)  # expired
    await refused(api, await api.get("/api/v1/recordings/1764000000.6/audio",
                                     headers=auth(api)), 409)  # still recording
    await refused(api, await api.get("/api/v1/recordings/1764000000.1/audio",
                                     params={"kind": "called"}, headers=auth(api)), 404)
    await refused(api, await api.get("/api/v1/recordings/1764000000.1/analysis.svg",
                                     headers=auth(api)), 404)  # not analysed yet


async def test_refused_without_token_or_right(api):
    url = "/api/v1/recordings/1764000000.1/audio"
    row = await refused(api, await api.get(url), 401, "Authorization")
    assert (row["actor"], row["role"], row["target"]) == ("anonymous", "",
                                                         "recording 1764000000.1")
    assert row["after"]["wanted"] == "recording.play"
    await refused(api, await api.get(url, headers={"Authorization": "Bearer forged"}), 401)
    for path in (url, "/api/v1/recordings", "/api/v1/recordings/1764000000.1"):
        row = await refused(api, await api.get(path, headers={**auth(api, "operator"),
                                                              "Range": "bytes=0-9"}), 403)
        assert (row["actor"], row["role"]) == ("t-operator", "operator")
        assert row["after"]["range"] == "bytes=0-9"


async def raw_get(api, target: str, token: str) -> tuple[int, bytes]:
    """A request line sent as is: no client normalises the path or its escapes."""
    reader, writer = await asyncio.open_connection(api.host, api.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_traversal_never_reaches_the_file_system(api):
    token = api.tokens["admin"]
    before = len(await api.audit.list(action="recording.refused", limit=1000))
    targets = ["/api/v1/recordings/..%2F..%2Fsecret.txt/audio",
               "/api/v1/recordings/%2e%2e/audio", "/api/v1/recordings/..",
               "/api/v1/recordings/%2Fetc%2Fpasswd/audio",
               "/api/v1/recordings/%00/audio", "/api/v1/recordings/1764000000.1%00/audio",
               "/api/v1/recordings/../../secret.txt",
               "/api/v1/recordings/1764000000.1/../../../secret.txt",
               "/api/v1/recordings//etc/passwd",
               "/api/v1/recordings/1764000000.1/audio?kind=../../secret.txt",
               "/api/v1/recordings/1764000000.1/audio?kind=%2Fetc%2Fpasswd",
               "/api/v1/recordings/1764000000.1/audio?path=/etc/passwd",
               "/api/v1/recordings/1764000000.1/audio?kind=call%00",
               "/api/v1/recordings?desk=..%2F..%2Fsecret.txt"]
    for target in targets:
        status, body = await raw_get(api, target, token)
        assert status in (400, 404), (target, status, body)
        assert SECRET not in body and b"RIFF" not in body and b"fLaC" not in body
    rows = await api.audit.list(action="recording.refused", limit=1000)
    assert len(rows) - before == len(targets)
    assert all(r.actor == "t-admin" for r in rows)
    # Also through the client, URL-quoted as a browser would send it.
    response = await api.session.get(
        URL(str(api.make_url("/api/v1/recordings/")) + "%2E%2E%2Fsecret.txt/audio",
            encoded=True), headers=auth(api))
    await refused(api, response, 400, "call_id")


async def test_an_index_path_outside_the_folder_is_not_served(api, caplog):
    rid = (await api.index.for_call("1764000000.1"))[0].id
    await api.index.update(rid, path="../secret.txt")
    response = await api.get("/api/v1/recordings/1764000000.1/audio", headers=auth(api))
    await refused(api, response, 404, "call_id")
    assert "event=recording_path_refused call_id=1764000000.1" in caplog.text
    # A symbolic link inside the folder that points out is refused the same way.
    link = api.root / "2025/11/24/link.wav"
    link.symlink_to(api.root.parent / "secret.txt")
    await api.index.update(rid, path="2025/11/24/link.wav")
    await refused(api, await api.get("/api/v1/recordings/1764000000.1/audio",
                                     headers=auth(api)), 404)


async def test_analysis_picture_and_evidence_export(api):
    call_id = "1764000000.2"
    relative, size, sha = api.files[call_id]
    [row] = await api.index.for_call(call_id)
    analysis = await asyncio.to_thread(analyse_file, api.root / relative, sha)
    await api.index.update(row.id, analysis=analysis, analysis_state="done")
    response = await api.get(f"/api/v1/recordings/{call_id}/analysis.svg", headers=auth(api))
    assert response.status == 200 and response.content_type == "image/svg+xml"
    assert (await response.text()).startswith("<svg")
    assert (await api.audit.list(action="recording.analysis"))[0].target == \
        f"recording {call_id}"
    await refused(api, await api.get(f"/api/v1/recordings/{call_id}/analysis.svg",
                                     headers=auth(api, "operator")), 403)
    # The bundle: a tar whose recording is the archive file, byte for byte, with its sums.
    response = await api.get(f"/api/v1/recordings/{call_id}/export", headers=auth(api))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(await response.read())) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        recording = tar.extractfile(members[Path(relative).name])
        assert recording is not None and recording.read() == (api.root / relative).read_bytes()
        sums = tar.extractfile(members["SHA256SUMS"])
        assert sums is not None and f"{sha}  {Path(relative).name}" in sums.read().decode()
    exports = await api.audit.list(action="recording.export")
    assert exports[0].actor == "t-supervisor" and exports[0].after["size"] > size
    await refused(api, await api.get(f"/api/v1/recordings/{call_id}/export",
                                     headers=auth(api, "operator")), 403)
    await refused(api, await api.get("/api/v1/recordings/1764000000.99/export",
                                     headers=auth(api)), 404)


async def test_nothing_is_sent_without_its_audit_row(api, monkeypatch):
    async def broken(**_kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(api.audit, "record", broken)
    for path in ("/api/v1/recordings/1764000000.1/audio", "/api/v1/recordings",
                 "/api/v1/recordings/1764000000.1"):
        response = await api.get(path, headers=auth(api))
        assert response.status == 500, path
        body = await response.read()
        assert b"RIFF" not in body and b"1764000000" not in body, path
