"""Archiving a finalised recording: the stereo file, its index row, its chain entry.

ivr/recording.py (RecordingFinaliser) calls `archive_call` once the legs are on the call's
timeline and announcements are mixed in. Each step can be repeated after a crash: a file
already archived is measured, not rebuilt; a row already there is completed, not doubled;
the legs are removed only once the archive's row and chain entry are committed.

Files of one recording (``YYYY/MM/DD/<stem>``): ``<stem>-stereo.raw`` (MixMonitor's
interleaved stereo: left what the recorded channel said, right what it heard; the usual
source), ``<stem>.wav`` (MixMonitor's mono mix without split legs, or the stereo archive
itself when the format is wav: told apart by the channel count), ``<stem>-rx.wav`` /
``<stem>-tx.wav`` (the legs, as recorders before issue 16 and the called party's recorder
write them), ``<stem>-timeline@*.raw`` (the optional wall-clock recorder) and the archive
``<stem>.<wav|flac>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy.exc import IntegrityError

from ivr import recording_timeline
from ivr.config import RecordingConfig
from ivr.model import CallRecord
from ivr.recordings import archive, chain
from ivr.recordings.service_analysis import analyse_sides
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import AnalysisState, RecordingIndex, RecordingRow, State
from ivr.service import CallService

log = logging.getLogger("ivr.recording")

#: Call flags that keep a recording until a supervisor releases it (retention skips it).
HOLD_FLAGS = ("harassment", "supervisor", "repeat")
#: Flag when a recording had no separate legs (split_legs off): both sides hold the mix.
MIXED = "mixed"


class Kind:
    CALL = "call"  # the recorded channel's own recording (the caller's, or the operator's)
    CALLED = "called"  # an outbound call's called party (the notice is in it)


@dataclass(frozen=True)
class Sources:
    """Where one recording's files are (all may be absent)."""

    stem: Path  # folder / <stem>, no suffix

    @classmethod
    def of(cls, recording: Path) -> Sources:
        name = recording.name
        for suffix in (".wav", ".flac"):
            name = name.removesuffix(suffix)
        return cls(recording.with_name(name))

    @property
    def mono(self) -> Path:
        return self.stem.with_name(self.stem.name + ".wav")

    @property
    def stereo(self) -> Path:
        return self.stem.with_name(self.stem.name + "-stereo.raw")

    @property
    def said(self) -> Path:
        return self.stem.with_name(self.stem.name + "-rx.wav")

    @property
    def heard(self) -> Path:
        return self.stem.with_name(self.stem.name + "-tx.wav")

    def archive(self, fmt: str) -> Path:
        return self.stem.with_name(archive.archive_name(self.stem.name, fmt))

    def leftovers(self, keep: Path) -> list[Path]:
        """The files the archive replaces (never `keep`, the archive itself)."""
        raws = sorted(self.stem.parent.glob(f"{self.stem.name}-timeline@*.raw"))
        return [p for p in (self.stereo, self.mono, self.said, self.heard, *raws) if p != keep]


def archived_file(sources: Sources) -> Path | None:
    """The archive of these sources if one is already on disk (a stereo file)."""
    for fmt in ("flac", "wav"):
        path = sources.archive(fmt)
        if path.exists() and archive.channels(path) == 2:
            return path
    return None


@dataclass(frozen=True)
class Mix:
    """A prompt the recorded channel heard but Asterisk did not record (Dial's talk-limit
    warning: measured missing from the caller's recorder), put in at `offset` s."""

    prompt: Path
    offset: float


def _sides(sources: Sources,
           timeline: recording_timeline.Timeline | None) -> tuple[np.ndarray, np.ndarray,
                                                                   bool] | None:
    """(said, heard, mixed) of the recorded channel, from the best source there is: the
    wall-clock recorder, MixMonitor's stereo, its legs, or its mono mix on both sides."""
    if timeline is not None and timeline.seconds > 0:
        said, heard = recording_timeline.legs(timeline)
        return said, heard, False
    if sources.stereo.exists():
        data = np.fromfile(sources.stereo, dtype="<i2")
        pairs = data[: len(data) // 2 * 2].reshape(-1, 2)
        return np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]), False
    if sources.said.exists() and sources.heard.exists():
        return archive.read_mono(sources.said), archive.read_mono(sources.heard), False
    if sources.mono.exists() and archive.channels(sources.mono) == 1:
        mono = archive.read_mono(sources.mono)
        return mono, mono, True
    return None


@dataclass(frozen=True)
class Built:
    facts: archive.ArchiveFacts
    mixed: bool
    # The samples written (None when an archive already on disk was only measured): the
    # analysis takes them from here rather than decoding the file again.
    left: np.ndarray | None = None
    right: np.ndarray | None = None


def _build(sources: Sources, fmt: str, swap: bool,
           timeline: recording_timeline.Timeline | None = None,
           mixes: tuple[Mix, ...] = ()) -> Built | None:
    """Blocking: the archive (built from the sources, or measured when already there)."""
    existing = archived_file(sources)
    if existing is not None:
        return Built(archive.facts(existing), False)
    sides = _sides(sources, timeline)
    if sides is None:
        return None
    said, heard, mixed = sides
    for mix in mixes:
        heard = recording_timeline.mix_into(heard, mix.prompt, mix.offset)
        if mixed:
            said = heard
    left, right = (heard, said) if swap else (said, heard)
    facts = archive.build(sources.archive(fmt), left, right, fmt)
    return Built(facts, mixed, left, right)


def _remove(paths: list[Path]) -> list[str]:
    removed = []
    for path in paths:
        try:
            path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
    return removed


class ArchiveService:
    def __init__(self, calls: CallService, index: RecordingIndex, chain_store: ChainStore,
                 config: RecordingConfig, recordings_dir: Path, *, node: str,
                 clock: Callable[[], float] = time.time):
        self.calls = calls
        self.index = index
        self.chain = chain_store
        self.config = config
        self.recordings_dir = recordings_dir
        self.node = node
        self.clock = clock
        #: Called (synchronously, after commit) with every row that became final.
        self.on_final: list[Callable[[RecordingRow], None]] = []

    def relative(self, path: Path) -> str:
        """The index's path: relative to the recordings dir (refused outside it)."""
        return path.resolve().relative_to(self.recordings_dir.resolve()).as_posix()

    async def archive_call(self, call_id: str, recording: Path, *,
                           origin: str = "finaliser",
                           timeline: recording_timeline.Timeline | None = None,
                           mixes: tuple[Mix, ...] = (),
                           record: CallRecord | None = None) -> RecordingRow | None:
        """The call's own recording (`<stem>-stereo.raw`, or the wall-clock recorder's
        `timeline`, or older legs) becomes its archive, with `mixes` put into what was
        heard. An outbound call's recording is the operator's channel: the far end goes
        left. record: the call's record when the caller has just read it."""
        if record is None:
            record = await self.calls.get(call_id)
        swap = record is not None and record.direction == "outbound"
        row = await self._archive(call_id, Kind.CALL, Sources.of(recording), record,
                                  swap=swap, origin=origin, timeline=timeline, mixes=mixes)
        if row is not None and record is not None:
            await self.calls.recording_finalised(call_id, row.duration or 0.0,
                                                 row.sha256 or "",
                                                 path=str(self.recordings_dir / row.path))
        return row

    async def archive_called(self, call_id: str, recording: Path, *,
                             origin: str = "finaliser") -> RecordingRow | None:
        """An outbound call's called party (`<stem>-called.wav`): left = the called party,
        right = what they heard (the notice, then the operator)."""
        record = await self.calls.get(call_id)
        row = await self._archive(call_id, Kind.CALLED, Sources.of(recording), record,
                                  swap=False, origin=origin)
        if row is not None and record is not None:
            await self.calls.called_recording_finalised(
                call_id, str(self.recordings_dir / row.path), row.duration or 0.0,
                row.sha256 or "")
        return row

    async def _archive(self, call_id: str, kind: str, sources: Sources,
                       record: CallRecord | None, *, swap: bool, origin: str,
                       timeline: recording_timeline.Timeline | None = None,
                       mixes: tuple[Mix, ...] = ()) -> RecordingRow | None:
        built = await asyncio.to_thread(_build, sources, self.config.format, swap, timeline,
                                        mixes)
        if built is None:
            return None
        facts, mixed = built.facts, built.mixed
        rel = self.relative(facts.path)
        # A fresh build had no file on disk, so no row can point at it yet (a crash after
        # the file and before its row leaves the file: measured, not built, on the re-run).
        row = None if built.left is not None else await self.index.by_path(rel)
        if row is None:
            analysis = None
            if built.left is not None and built.right is not None:
                # Analysed now, from the samples just written (the worker would decode the
                # file again); the row goes in with it, so the worker never takes it.
                analysis = await asyncio.to_thread(
                    analyse_sides, built.left, built.right, archive.RATE,
                    sha256=facts.sha256, channels=1 if mixed else 2)
            row = await self._index(call_id, kind, rel, facts, record, mixed=mixed,
                                    origin=origin, analysis=analysis)
            if row is None:
                return None
        elif row.chain_seq is None:
            row = await self.chain_row(row)
        # The row and its chain entry are committed: what the archive replaces can go.
        removed = await asyncio.to_thread(_remove, sources.leftovers(keep=facts.path))
        log.info("event=recording_archived call_id=%s kind=%s path=%s format=%s size=%d "
                 "seconds=%.3f caller_audio=%.3f other_audio=%.3f flags=%r chain_seq=%s "
                 "removed=%d", call_id, kind, rel, row.format, row.size or 0,
                 row.duration or 0.0, row.caller_audio or 0.0, row.other_audio or 0.0,
                 row.flags, row.chain_seq, len(removed))
        return row

    def _flags(self, record: CallRecord | None, facts: archive.ArchiveFacts,
               mixed: bool) -> list[str]:
        flags = list(((record.flags if record else None) or "").split())
        below = self.config.one_sided_below
        if not mixed and facts.caller_audio < below:
            flags.append("one_sided:caller")
        if not mixed and facts.other_audio < below:
            flags.append("one_sided:other")
        if mixed:
            flags.append(MIXED)
        return flags

    async def _index(self, call_id: str, kind: str, rel: str, facts: archive.ArchiveFacts,
                     record: CallRecord | None, *, mixed: bool, origin: str,
                     analysis: dict | None = None) -> RecordingRow | None:
        now = self.clock()
        flags = self._flags(record, facts, mixed)
        desk = record.desk if record else None
        started = record.started_at if record else None
        days = self.config.retention_for(desk)
        held = [f for f in flags if f in HOLD_FLAGS]
        values = dict(
            call_id=call_id, kind=kind, path=rel, format=facts.format, state=State.FINAL,
            origin=origin, node=record.node if record else self.node,
            direction=record.direction if record else None,
            caller=record.caller if record else None, did=record.did if record else None,
            desk=desk, operator=record.operator if record else None,
            outcome=record.outcome if record else None, flags=" ".join(flags),
            started_at=started, duration=round(facts.duration, 3), size=facts.size,
            sha256=facts.sha256, caller_audio=facts.caller_audio,
            other_audio=facts.other_audio, finalised_at=now,
            keep_until=(started or now) + days * 86400 if days else None,
            hold=bool(held), hold_reason=("flagged: " + " ".join(held)) if held else None,
            analysis_state=AnalysisState.PENDING)
        if analysis is not None:
            values.update(analysis_state=AnalysisState.DONE, analysis=analysis,
                          shouting=analysis["shouting"], analysed_at=self.clock())
        try:
            rid = await self.index.add(**values)
        except IntegrityError:
            # Another node (shared folder) indexed the same file a moment ago.
            log.info("event=recording_index_race call_id=%s path=%s", call_id, rel)
            return None
        # Read back, not taken from RETURNING: the chain entry hashes the values as a
        # select gives them, which is what verify reads (SQLite's RETURNING gives 4 for a
        # float column's 4.0, measured).
        row = await self.index.get(rid)
        assert row is not None
        return await self.chain_row(row)

    async def chain_row(self, row: RecordingRow) -> RecordingRow:
        """Append the row's final entry, store its seq, tell the hooks."""
        entry = chain.final_entry({**row.as_dict(), "recording_id": row.id})
        link = await self.chain.append(kind="final", recording_id=row.id, call_id=row.call_id,
                                       entry=entry)
        # (The final row is not hashed: RETURNING's values are good enough here.)
        final = await self.index.update_row(row.id, chain_seq=link.seq)
        for hook in list(self.on_final):
            try:
                hook(final)
            except Exception:  # a listener's bug must not undo the archiving
                log.exception("event=recording_hook_failed call_id=%s", row.call_id)
        return final
