"""The evidence bundle on both engines, checked with the tools a recipient has: the real
`sha256sum -c`, `printf ... | sha256sum`, and the bundle's own verify_chain.py run by a
separate python3; each passes on the bundle as written and fails after one byte changes."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from ivr.recordings.chain import GENESIS
from ivr.recordings.retention import DAY
from ivr.recordings.service_analysis import AnalysisWorker
from ivr.recordings.service_evidence import ExportError
from ivr.recordings.store_index import AnalysisState
from ivr.store import Database
from tests.store.conftest import Clock
from tests.store.evidence_helpers import CLI, T0, World, archive, sha256_of

pytestmark = pytest.mark.timeout(60)


def sha256sum_c(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, text=True,
                          capture_output=True, timeout=30)


def verify_chain(folder: Path) -> subprocess.CompletedProcess[str]:
    # A bare interpreter, outside the project: the script needs the standard library only.
    return subprocess.run([sys.executable, "-I", "verify_chain.py"], cwd=folder, text=True,
                          capture_output=True, timeout=30)


def printf_sha256sum(prev_hash: str, entry: str) -> str:
    """What the README tells a recipient to type: printf '%s\\n%s' PREV ENTRY | sha256sum."""
    out = subprocess.run(["bash", "-c", 'printf "%s\\n%s" "$1" "$2" | sha256sum', "-",
                          prev_hash, entry], capture_output=True, text=True, check=True,
                         timeout=10).stdout
    return out.split()[0]


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


async def _exported(world: World, tmp_path: Path):
    for i in range(3):  # entries before and after the exported call's
        await world.call(f"7.{i}", desk="support")
    await archive(world.index, world.chain, world.root, "7.1", kind="called", seed=9)
    await world.call("7.9", desk="support")
    return await world.evidence.export("7.1", tmp_path / "out", actor=CLI)


@pytest.fixture
async def exporter(db: Database, tmp_path: Path) -> World:
    return World(db, tmp_path / "recordings", Clock(T0))


async def test_the_bundle_passes_sha256sum_and_fails_after_one_byte(exporter: World,
                                                                    tmp_path: Path) -> None:
    result = await _exported(exporter, tmp_path)
    folder = result.folder
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["7.1.flac", "7.1-called.flac", "call.json", "analysis.json",
                            "chain.json", "verify_chain.py", "README.txt", "SHA256SUMS"])
    listed = (folder / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in listed) == \
        sorted(n for n in names if n != "SHA256SUMS")
    # The recordings are the archived files, byte for byte.
    for row in await exporter.index.for_call("7.1"):
        assert sha256_of(folder / Path(row.path).name) == sha256_of(exporter.root / row.path)
    ok = sha256sum_c(folder)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(names) - 1
    run = verify_chain(folder)
    assert run.returncode == 0 and run.stdout.rstrip().splitlines()[-1].startswith("OK"), \
        run.stdout
    flip(folder / "7.1.flac")
    bad = sha256sum_c(folder)
    assert bad.returncode == 1 and "7.1.flac: FAILED" in bad.stdout
    bad_chain = verify_chain(folder)
    assert bad_chain.returncode == 1 and "7.1.flac: sha256" in bad_chain.stdout \
        and "is NOT" in bad_chain.stdout


async def test_an_edited_chain_entry_fails_verify_chain(exporter: World, tmp_path: Path) -> None:
    folder = (await _exported(exporter, tmp_path)).folder
    doc = json.loads((folder / "chain.json").read_text())
    covers = [e for e in doc["entries"] if e["role"] == "covers"]
    assert len(covers) == 2  # the call's recording and the called party's
    assert {e["role"] for e in doc["entries"]} >= {"covers", "neighbour", "head"}
    covers[0]["entry"] = covers[0]["entry"].replace("support", "suppost")
    (folder / "chain.json").write_text(json.dumps(doc))
    run = verify_chain(folder)
    assert run.returncode == 1 and f"seq {covers[0]['seq']}: sha256" in run.stdout
    assert sha256sum_c(folder).returncode == 1


async def test_a_link_recomputes_with_printf_and_sha256sum(exporter: World,
                                                           tmp_path: Path) -> None:
    folder = (await _exported(exporter, tmp_path)).folder
    doc = json.loads((folder / "chain.json").read_text())
    for e in doc["entries"]:
        assert printf_sha256sum(e["prev_hash"], e["entry"]) == e["hash"]
    # The neighbours link the call's entries into the chain as stored on the server.
    stored = {e.seq: e.hash for e in await exporter.chain.entries()}
    assert all(stored[e["seq"]] == e["hash"] for e in doc["entries"])
    assert doc["head"]["hash"] == stored[max(stored)] and doc["genesis"] == GENESIS


async def test_call_json_holds_the_record_and_timeline_and_the_export_is_audited(
        exporter: World, tmp_path: Path) -> None:
    result = await _exported(exporter, tmp_path)
    call = json.loads((result.folder / "call.json").read_text())
    assert call["call"]["id"] == "7.1" and call["call"]["caller"] == "0312345678"
    assert [e["kind"] for e in call["events"]]  # the timeline came along
    assert [r["kind"] for r in call["recordings"]] == ["call", "called"]
    audit = await exporter.audit.list(action="recordings.export")
    assert len(audit) == 1 and audit[0].target == "call:7.1" and audit[0].actor == "alice"
    assert audit[0].after["files"] == result.sums


async def test_the_tar_holds_the_same_bundle(exporter: World, tmp_path: Path) -> None:
    await exporter.call("8.1", desk="support")
    result = await exporter.evidence.export_tar("8.1", actor=CLI, out_dir=tmp_path / "t")
    assert result.folder is None and result.tar is not None and result.tar.exists()
    assert [p.name for p in (tmp_path / "t").iterdir()] == [result.tar.name]
    with tarfile.open(result.tar) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (bundle,) = (tmp_path / "x").iterdir()
    assert sha256sum_c(bundle).returncode == 0 and verify_chain(bundle).returncode == 0


async def test_an_expired_recording_exports_its_tombstone(exporter: World,
                                                          tmp_path: Path) -> None:
    row = await exporter.call("9.1", desk="support")
    exporter.clock.now = T0 + 11 * DAY
    await exporter.retention.expire()
    result = await exporter.evidence.export("9.1", tmp_path / "o", actor=CLI)
    assert not (result.folder / Path(row.path).name).exists()
    doc = json.loads((result.folder / "chain.json").read_text())
    assert [e["kind"] for e in doc["entries"] if e["role"] == "covers"] == ["final",
                                                                           "tombstone"]
    assert "deleted by retention" in (result.folder / "README.txt").read_text()
    assert sha256sum_c(result.folder).returncode == 0
    assert verify_chain(result.folder).returncode == 0


@pytest.mark.parametrize("call_id", ["../etc", "/etc/passwd", "", "a/b", "7.1\n"])
async def test_bad_or_unknown_call_ids_are_refused(exporter: World, tmp_path: Path,
                                                   call_id: str) -> None:
    with pytest.raises(ExportError):
        await exporter.evidence.export(call_id, tmp_path / "o", actor=CLI)
    assert not (tmp_path / "o").exists()


async def test_the_analysis_and_its_picture_are_in_the_bundle(exporter: World,
                                                              tmp_path: Path) -> None:
    row = await exporter.call("12.1", desk="support", seconds=20.0)
    worker = AnalysisWorker(exporter.index, exporter.root)
    assert await worker.analyse_row(row) == AnalysisState.DONE
    failed = await archive(exporter.index, exporter.chain, exporter.root, "12.1",
                           kind="called", seed=3)
    await exporter.index.update(failed.id, analysis_state=AnalysisState.FAILED,
                                analysis={"error": "unreadable"})
    folder = (await exporter.evidence.export("12.1", tmp_path / "o", actor=CLI)).folder
    picture = folder / "12.1.svg"
    assert ElementTree.parse(picture).getroot().tag.endswith("svg")
    assert not (folder / "12.1-called.svg").exists()  # no picture of a failed analysis
    analysis = json.loads((folder / "analysis.json").read_text())["recordings"]
    assert [a["state"] for a in analysis] == ["done", "failed"]
    assert analysis[0]["analysis"]["sha256"] == row.sha256
    assert "  12.1.svg" in (folder / "SHA256SUMS").read_text()
    assert sha256sum_c(folder).returncode == 0
