"""Evidence: verify the chain against the index and the files; export a call's bundle.

`EvidenceService.verify()` backs `ivr recordings verify`; `EvidenceService.export()` and
`EvidenceService.export_tar()` back `ivr recordings export` and the API. Every export is
written to the audit log (who, what, from where). Blocking work (hashing, copying, tar) runs
in threads.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa

from ivr.model import iso
from ivr.protection.service_settings import Actor
from ivr.protection.store_audit import AuditStore
from ivr.recordings import verify as checks
from ivr.recordings.export import BundleFile, json_bytes, readme, write_bundle, write_tar
from ivr.recordings.files import FileHasher, PathError, index_path
from ivr.recordings.store_chain import ChainEntry, ChainStore
from ivr.recordings.store_index import AnalysisState, RecordingIndex, RecordingRow, State
from ivr.store import CallStore
from ivr.store.tables import recordings

log = logging.getLogger("ivr.recordings.evidence")

CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class ExportError(ValueError):
    pass


@dataclass(frozen=True)
class ExportResult:
    call_id: str
    folder: Path | None  # the bundle folder (None for export_tar: only the tar is kept)
    tar: Path | None
    sums: dict[str, str]  # file name -> sha256 (what SHA256SUMS holds)
    head_hash: str
    problems: list[str]  # e.g. a file that no longer matches its chain entry


class EvidenceService:
    def __init__(self, index: RecordingIndex, chain: ChainStore, recordings_dir: Path, *,
                 audit: AuditStore, calls: CallStore | None = None,
                 clock: Any = time.time):
        self.index = index
        self.chain = chain
        self.root = recordings_dir
        self.audit = audit
        self.calls = calls
        self.clock = clock

    # ---- verify ----

    async def verify(self, *, anchor: str | None = None) -> checks.Report:
        entries = await self.chain.entries()
        rows = await self._all_rows()
        report = checks.Report(head=entries[-1] if entries else None, entries=len(entries),
                               rows=len(rows))
        # Pure work over every entry: in a thread too, the loop keeps serving calls.
        await asyncio.to_thread(checks.check_links, entries, report)
        await checks.check_index(entries, rows, FileHasher(self.root), report)
        if anchor:
            checks.check_anchor(entries, anchor.strip().lower(), report)
        log.info("event=recordings_verified intact=%s entries=%d files=%d problems=%d "
                 "head=%s", report.intact, report.entries, report.files,
                 len(report.problems), report.head_hash)
        return report

    async def _all_rows(self, page: int = 200) -> list[RecordingRow]:
        """Every index row, a page at a time: converting rows runs on the loop, and a page
        keeps each stretch of it short."""
        rows: list[RecordingRow] = []
        while True:
            after = rows[-1].id if rows else 0
            batch = await self.index.select(sa.select(recordings)
                                            .where(recordings.c.id > after)
                                            .order_by(recordings.c.id).limit(page))
            rows.extend(batch)
            if len(batch) < page:
                return rows

    # ---- export ----

    async def export(self, call_id: str, out_dir: Path, *, actor: Actor) -> ExportResult:
        """Write the call's bundle folder under `out_dir`; audited."""
        return await self._export(call_id, out_dir, actor=actor, tar=False)

    async def export_tar(self, call_id: str, *, actor: Actor,
                         out_dir: Path | None = None) -> ExportResult:
        """The call's bundle as one .tar (for the API to stream, then delete): written under
        `out_dir`, or a new temporary folder; only the tar stays. Audited."""
        out_dir = out_dir or Path(await asyncio.to_thread(tempfile.mkdtemp,
                                                          prefix="ivr-export-"))
        return await self._export(call_id, out_dir, actor=actor, tar=True)

    async def _export(self, call_id: str, out_dir: Path, *, actor: Actor,
                      tar: bool) -> ExportResult:
        if not CALL_ID.fullmatch(call_id or ""):
            raise ExportError(f"{call_id!r} is not a call id")
        rows = await self.index.for_call(call_id)
        if not rows:
            raise ExportError(f"no recording is indexed for call {call_id}")
        now = self.clock()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = await asyncio.to_thread(_unused, out_dir / f"evidence-{call_id}-{stamp}")
        files, chain_doc, notes = await self._contents(call_id, rows, now, actor)
        sums = await asyncio.to_thread(write_bundle, folder, files)
        tar_path = None
        if tar:
            tar_path = await asyncio.to_thread(write_tar, folder,
                                               folder.with_name(folder.name + ".tar"))
            await asyncio.to_thread(shutil.rmtree, folder, True)
        head = chain_doc["head"] or {}
        try:
            await self.audit.record(
                actor=actor.name, role=actor.role, origin=actor.origin,
                action="recordings.export", target=f"call:{call_id}",
                after={"bundle": folder.name, "tar": tar, "files": sums,
                       "head": head.get("hash"), "problems": notes}, at=now)
        except BaseException:  # no export leaves without its audit row
            await asyncio.to_thread(shutil.rmtree, folder, True)
            if tar_path is not None:
                await asyncio.to_thread(tar_path.unlink, True)
            raise
        log.info("event=recordings_exported call_id=%s actor=%s origin=%r bundle=%s files=%d "
                 "head=%s", call_id, actor.name, actor.origin, folder.name, len(sums),
                 head.get("hash"))
        return ExportResult(call_id, None if tar else folder, tar_path, sums,
                            head.get("hash") or "", notes)

    async def _contents(self, call_id: str, rows: list[RecordingRow], now: float,
                        actor: Actor) -> tuple[list[BundleFile], dict[str, Any], list[str]]:
        files: list[BundleFile] = []
        notes: list[str] = []
        listing: list[str] = []
        names: dict[int, str | None] = {}
        for row in rows:
            name = await self._recording_file(row, files, notes)
            names[row.id] = name
            listing.append(f"{name or '(no file)'}  {row.kind}, {row.state}, "
                           f"{row.duration or 0:.1f} s, sha256 {row.sha256}")
        chain_doc = await self._chain_document(call_id, rows, names, now)
        for rec in chain_doc["recordings"]:
            if rec["file"] and rec["final_seq"] is None:
                notes.append(f"{rec['file']} has no chain entry")
        record = await self.calls.get(call_id) if self.calls else None
        events = await self.calls.events(call_id) if self.calls and record else []
        if record is None:
            notes.append("the call record is not in the database (the recording was found "
                         "on disk); call.json holds the index rows only")
        call_doc = {"call_id": call_id, "call": record.to_json() if record else None,
                    "events": [{**e, "at_iso": iso(e.get("at"))} for e in events],
                    "recordings": [_row_json(r) for r in rows]}
        files.append(BundleFile("call.json", data=json_bytes(call_doc)))
        files.append(BundleFile("analysis.json", data=json_bytes(
            {"call_id": call_id, "recordings": [_analysis_json(r, names[r.id]) for r in rows]})))
        files.extend(await _pictures(rows, names))
        files.append(BundleFile("chain.json", data=json_bytes(chain_doc)))
        head = chain_doc["head"] or {}
        files.append(BundleFile("README.txt", data=readme(
            call_id=call_id, exported_at=iso(now) or "", exported_by=
            f"{actor.name} ({actor.role}, {actor.origin})", head_hash=head.get("hash", ""),
            head_seq=head.get("seq"), recordings=listing, notes=notes)))
        return files, chain_doc, notes

    async def _recording_file(self, row: RecordingRow, files: list[BundleFile],
                              notes: list[str]) -> str | None:
        if row.state == State.EXPIRED:
            notes.append(f"recording {row.id} ({row.path}) was deleted by retention at "
                         f"{iso(row.deleted_at)}: its tombstone entry is in chain.json")
            return None
        if row.state != State.FINAL:
            notes.append(f"recording {row.id} ({row.path}) is {row.state}, not final: no file")
            return None
        try:
            source = index_path(self.root, row.path)
        except PathError as exc:
            notes.append(f"recording {row.id}: {exc}")
            return None
        if not await asyncio.to_thread(source.is_file):
            notes.append(f"recording {row.id}: the file {row.path} is missing")
            return None
        name = PurePosixPath(row.path).name
        files.append(BundleFile(name, source=source))
        return name

    async def _chain_document(self, call_id: str, rows: list[RecordingRow],
                              names: dict[int, str | None], now: float) -> dict[str, Any]:
        head = await self.chain.head()
        picked: dict[int, tuple[ChainEntry, str]] = {}
        recordings = []
        for row in rows:
            own = await self.chain.for_recording(row.id)
            final = [e for e in own if e.kind == "final"]
            final_seq = row.chain_seq if row.chain_seq in {e.seq for e in final} else (
                final[-1].seq if final else None)
            recordings.append({"recording_id": row.id, "kind": row.kind, "state": row.state,
                               "file": names.get(row.id), "final_seq": final_seq,
                               "entries": [e.seq for e in own]})
            for e in own:
                picked[e.seq] = (e, "covers")
                for neighbour in await self.chain.neighbours(e):
                    picked.setdefault(neighbour.seq, (neighbour, "neighbour"))
        if head is not None and picked.get(head.seq, (None, ""))[1] != "covers":
            picked[head.seq] = (head, "head")
        return {
            "about": "Hash-chain entries of the recording server (see README.txt). Each "
                     "entry's hash is sha256(prev_hash + '\\n' + entry).",
            "call_id": call_id, "exported_at": iso(now), "genesis": checks.GENESIS,
            "head": None if head is None else {"seq": head.seq, "hash": head.hash,
                                               "at": iso(head.at)},
            "recordings": recordings,
            "entries": [{**e.as_dict(), "at": iso(e.at), "role": role}
                        for e, role in (picked[s] for s in sorted(picked))],
        }


def _unused(folder: Path) -> Path:
    """`folder`, or `folder-2`, `-3`, ... when an export of the same second is there."""
    candidate, n = folder, 1
    while candidate.exists() or candidate.with_name(candidate.name + ".tar").exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def _row_json(row: RecordingRow) -> dict[str, Any]:
    data = row.as_dict()
    data.pop("analysis", None)
    for key in ("started_at", "finalised_at", "keep_until", "released_at", "deleted_at",
                "analysed_at", "updated_at"):
        data[f"{key}_iso"] = iso(data.get(key))
    return data


def _analysis_json(row: RecordingRow, name: str | None) -> dict[str, Any]:
    return {"recording_id": row.id, "file": name, "kind": row.kind,
            "state": row.analysis_state, "analysed_at": iso(row.analysed_at),
            "caller_audio": row.caller_audio, "other_audio": row.other_audio,
            "flags": row.flag_list, "shouting": row.shouting, "analysis": row.analysis}


async def _pictures(rows: list[RecordingRow], names: dict[int, str | None]) -> list[BundleFile]:
    """The analysis pictures (SVG), when this build can draw them (ivr/recordings/picture.py)."""
    try:
        from ivr.recordings.picture import render_svg
    except ImportError:
        return []
    out = []
    for row in rows:
        name = names.get(row.id)
        if not (name and row.analysis and row.analysis_state == AnalysisState.DONE):
            continue
        try:
            svg = await asyncio.to_thread(render_svg, row.analysis,
                                          f"call {row.call_id} ({row.kind})")
        except Exception as exc:  # a picture is a convenience: the bundle goes without it
            log.warning("event=export_picture_failed call_id=%s error=%r", row.call_id, exc)
            continue
        out.append(BundleFile(PurePosixPath(name).stem + ".svg", data=svg.encode()))
    return out
