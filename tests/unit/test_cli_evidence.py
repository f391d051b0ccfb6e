"""`ivr recordings verify|export|expire|hold|release` against a real (SQLite) store and
fabricated archive files."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from ivr.cli import _load
from ivr.recordings.chain import GENESIS, link_hash
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex
from ivr.service import CallService
from ivr.store import CallStore, Database
from tests.store.evidence_helpers import archive, ended_call
from tests.unit.test_cli_protection import config, ivr  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)


def _populate(config_path: str) -> list:
    cfg = _load(config_path)

    async def run():
        async with Database(cfg.database_url) as db:
            calls = CallService(CallStore(db), node="n1")
            index, chain = RecordingIndex(db), ChainStore(db)
            rows = []
            for i in range(3):
                await ended_call(calls, f"1700000000.{i}")
                rows.append(await archive(index, chain, cfg.recordings_dir,
                                          f"1700000000.{i}", seed=i))
            return rows, [e.hash for e in await chain.entries()], [
                (e.prev_hash, e.entry) for e in await chain.entries()]

    return asyncio.run(run())


def test_verify_export_hold_release_expire(config: str, tmp_path: Path) -> None:  # noqa: F811
    rows, hashes, links = _populate(config)
    head = GENESIS
    for prev, text in links:
        head = link_hash(prev, text)
    assert head == hashes[-1]
    out = ivr(config, "recordings", "verify").output
    assert out.startswith("intact: 3 chain entries") and head in out
    report = json.loads(ivr(config, "recordings", "verify", "--json").output)
    assert report["intact"] and report["head"] == head
    ivr(config, "recordings", "verify", "--anchor", head)
    # Export, checked with the real sha256sum.
    out = ivr(config, "recordings", "export", rows[1].call_id, "--out",
              str(tmp_path / "exports")).output
    (bundle,) = (tmp_path / "exports").iterdir()
    assert str(bundle) in out
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout
    assert "refused: no recording" in ivr(config, "recordings", "export", "1.2",
                                          code=2).output
    # Hold, release, expiry (the fabricated calls are from 2023: a year's retention is over).
    assert "held (court)" in ivr(config, "recordings", "hold", rows[0].call_id, "--reason",
                                 "court").output
    assert "refused" in ivr(config, "recordings", "hold", "nope", "--reason", "x",
                            code=2).output
    due = ivr(config, "recordings", "expire", "--dry-run").output.strip().splitlines()
    assert [line.split()[2] for line in due[:-1]] == [rows[1].call_id, rows[2].call_id]
    assert due[-1] == "2 recording(s) due"
    assert "released" in ivr(config, "recordings", "release", rows[0].call_id, "--reason",
                             "done").output
    # A flipped byte: exit 1, the file named; expiry leaves that file alone.
    cfg = _load(config)
    path = cfg.recordings_dir / rows[2].path
    data = bytearray(path.read_bytes())
    data[100] ^= 0x80
    path.write_bytes(bytes(data))
    out = ivr(config, "recordings", "verify", code=1).output
    lines = out.strip().splitlines()
    assert lines[0].startswith("edited_file: ") and rows[2].path in lines[0]
    assert lines[-1].startswith("NOT INTACT") and len(lines) == 2
    out = ivr(config, "recordings", "expire").output.strip().splitlines()
    assert out[-1] == "2 recording(s) expired, 1 refused: see `ivr recordings verify`"
    assert f"NOT expired (sha256 differs from the index) {rows[2].call_id}" in "\n".join(out)
    assert path.exists() and not (cfg.recordings_dir / rows[0].path).exists()
    out = ivr(config, "recordings", "verify", code=1).output.strip().splitlines()
    assert out[0].startswith("edited_file: ") and "2 tombstones" in out[-1]
