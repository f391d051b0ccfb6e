"""Finalising a recording after hang-up: wait until Asterisk has closed the file, put it on
the call's wall-clock timeline, mix in announcements Asterisk did not record, then archive it
(ivr/recordings/service_archive.py: one stereo file, indexed, hashed, chained). File work runs
in worker threads: it must not stall the event loop. Every step can run again after a crash
(start-up calls `finalise` again for calls whose recording has no hash yet)."""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr import recording_timeline
from ivr.model import CallRecord
from ivr.recordings.files import sha256_of
from ivr.recordings.service_archive import ArchiveService, Mix, Sources, archived_file
from ivr.service import CallService

log = logging.getLogger("ivr.recording")

#: A raw recording unchanged for this long is closed (MixMonitor flushes every ~1 s).
RAW_QUIET_S = 1.5


def _problem(call_id: str, path: Path, problem: str) -> None:
    log.error("event=recording_problem call_id=%s path=%s problem=%s", call_id, path, problem)


@dataclass(frozen=True)
class RecordingFacts:
    duration: float
    sha256: str


def wav_closed(path: Path) -> bool:
    """Asterisk writes the RIFF sizes when it closes a WAV; until then they are stale."""
    try:
        with path.open("rb") as fh:
            header = fh.read(44)
        size = path.stat().st_size
    except OSError:
        return False
    if len(header) < 44 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return False
    riff_size = struct.unpack("<I", header[4:8])[0]
    return riff_size + 8 == size


def wav_facts(path: Path) -> RecordingFacts:
    with path.open("rb") as fh:
        header = fh.read(44)
    size, sha256 = sha256_of(path)
    channels = struct.unpack("<H", header[22:24])[0]
    rate = struct.unpack("<I", header[24:28])[0]
    bits = struct.unpack("<H", header[34:36])[0]
    frame = max(1, channels * bits // 8)
    duration = (size - 44) / frame / rate if rate else 0.0
    return RecordingFacts(duration=duration, sha256=sha256)


class RecordingFinaliser:
    def __init__(self, calls: CallService, *, close_timeout: float = 20.0,
                 prompts_dir: Path | None = None, archive: ArchiveService | None = None):
        self.calls = calls
        self.prompts_dir = prompts_dir
        self.close_timeout = close_timeout
        # None: the recording stays as Asterisk wrote it (mono mix + legs), hashed only.
        self.archive = archive
        self._tasks: set[asyncio.Task] = set()
        self._running: set[str] = set()

    def schedule(self, call_id: str, path: str | None, *, origin: str = "finaliser") -> None:
        if not path:
            return
        task = asyncio.get_running_loop().create_task(
            self._finalise_once(call_id, Path(path), origin))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finalise_once(self, call_id: str, path: Path,
                             origin: str) -> RecordingFacts | None:
        # Start-up may schedule a call twice (unfinalised calls, then leftover files).
        if call_id in self._running:
            return None
        self._running.add(call_id)
        try:
            return await self.finalise(call_id, path, origin=origin)
        except Exception:  # never lose the controller to one recording; the files stay
            log.exception("event=recording_problem call_id=%s path=%s problem=%s",
                          call_id, path, "finalisation failed")
            return None
        finally:
            self._running.discard(call_id)

    async def settled_timeline(self, call_id: str, path: Path,
                               deadline: float) -> recording_timeline.Timeline | None:
        """The wall-clock recorder's file of the recording (see ivr.recording_timeline),
        once it has stopped writing; None when there is none or it is still written at the
        deadline."""
        raw = await asyncio.to_thread(recording_timeline.find_timeline, path)
        if raw is None:
            return None
        if not await self._settled(raw, deadline, recording_timeline.QUIET_SECONDS):
            _problem(call_id, raw, "recorder still writing")
            return None
        try:
            return await asyncio.to_thread(recording_timeline.read_timeline, raw)
        except (OSError, ValueError) as err:
            _problem(call_id, raw, f"timeline not usable: {err}")
            return None

    async def rebuild_timeline(self, call_id: str, path: Path,
                               deadline: float) -> recording_timeline.Timeline | None:
        """Put MixMonitor's WAVs on the call's wall-clock timeline from the recorder's file
        (the path without an archive); they stay as they were if it cannot be used."""
        if await self.settled_timeline(call_id, path, deadline) is None:
            return None
        try:
            return await asyncio.to_thread(recording_timeline.rebuild, path)
        except (OSError, ValueError) as err:
            _problem(call_id, path, f"timeline not rebuilt: {err}")
            return None

    async def pending_announcements(
            self, call_id: str, zero: float | None,
            known: tuple[CallRecord | None, list[dict[str, Any]]] | None = None,
    ) -> list[tuple[str, float, float]]:
        """(prompt, epoch, offset in the recording) of each announcement the caller heard
        that Asterisk did not record (Dial's talk-limit warning: its sound reaches the
        caller through the member's Local channel and is missing from the caller's
        recorder, measured) and that is not mixed in yet. zero: the recording's 0 s on the
        epoch clock (None: the call's start). known: the call's record and events, when the
        caller has just read them."""
        if self.prompts_dir is None:
            return []
        record, events = known or await self.calls.get_with_events(call_id)
        if zero is None:
            zero = record.started_at if record is not None else None
        if zero is None:
            return []
        # Once only: a finalisation cut short (controller stopped) runs again at start-up.
        done = {(e["data"] or {}).get("prompt_at") for e in events
                if e["kind"] == "announcement_mixed"}
        found = []
        for event in events:
            data = event.get("data") or {}
            if event["kind"] != "announcement" or not data.get("mix") or event["at"] in done:
                continue
            found.append((str(data.get("prompt") or ""), event["at"], event["at"] - zero))
        return found

    async def mix_announcements(self, call_id: str, path: Path, zero: float | None) -> None:
        """The pending announcements (above) mixed into MixMonitor's WAVs at the time
        Asterisk reported: what the caller heard (-tx) and the mixed file."""
        for prompt, at, offset in await self.pending_announcements(call_id, zero):
            wav = self.prompts_dir / f"{prompt}.wav" if self.prompts_dir else Path(prompt)
            try:
                if await asyncio.to_thread(recording_timeline.mix_in, path, wav, offset):
                    await self.calls.announcement_mixed(call_id, prompt, at, offset)
            except (OSError, ValueError) as err:
                _problem(call_id, path, f"announcement {prompt} not mixed in: {err}")

    async def wait_closed(self, call_id: str, path: Path, deadline: float) -> bool:
        while not await asyncio.to_thread(wav_closed, path):
            if asyncio.get_running_loop().time() > deadline:
                exists = await asyncio.to_thread(path.exists)
                problem = "not closed by Asterisk in time" if exists else "missing"
                _problem(call_id, path, problem)
                await self.calls.recording_missing(call_id, str(path), problem)
                return False
            await asyncio.sleep(0.2)
        return True

    async def finalise(self, call_id: str, path: Path, *,
                       origin: str = "finaliser") -> RecordingFacts | None:
        deadline = asyncio.get_running_loop().time() + self.close_timeout
        sources = Sources.of(path)
        # Archived before a crash: the sources are gone or stale, the archive is what counts.
        done = await asyncio.to_thread(archived_file, sources)
        if self.archive is not None and (
                done is not None or await asyncio.to_thread(sources.stereo.exists)):
            facts = await self.archive_stereo(call_id, path, sources, build=done is None,
                                              deadline=deadline, origin=origin)
            if facts is None:
                return None
        else:
            facts = await self.finalise_legs(call_id, path, sources, deadline, origin)
            if facts is None:
                return None
        await self.finalise_called(call_id, path, deadline, origin=origin)
        return facts

    async def archive_stereo(self, call_id: str, path: Path, sources: Sources, *,
                             build: bool, deadline: float,
                             origin: str) -> RecordingFacts | None:
        """MixMonitor's stereo file (or the wall-clock recorder's, when there is one)
        straight into the archive, the unrecorded announcements put in on the way: no
        intermediate files, the samples analysed as they are written."""
        assert self.archive is not None
        timeline = None
        pending: list[tuple[str, float, float]] = []
        if build:
            if not await self.wait_settled(call_id, sources.stereo, deadline):
                return None
            timeline = await self.settled_timeline(call_id, sources.mono, deadline)
            # Read once the file has settled: the call's last events (a talk-limit warning
            # found at AgentComplete) are in by then.
            record, events = await self.calls.get_with_events(call_id)
            pending = await self.pending_announcements(
                call_id, timeline.answered_at if timeline is not None else None,
                (record, events))
        else:
            record = await self.calls.get(call_id)
        mixable = []
        for prompt, at, offset in pending:
            wav = (self.prompts_dir or Path()) / f"{prompt}.wav"
            if await asyncio.to_thread(wav.is_file):
                mixable.append((prompt, at, Mix(wav, offset)))
            else:
                _problem(call_id, path, f"announcement {prompt} not mixed in: no {wav}")
        row = await self.archive.archive_call(call_id, path, origin=origin, timeline=timeline,
                                              mixes=tuple(m for _p, _a, m in mixable),
                                              record=record)
        if row is None:
            await self.calls.recording_missing(call_id, str(path), "no audio to archive")
            return None
        for prompt, at, mix in mixable:
            await self.calls.announcement_mixed(call_id, prompt, at, mix.offset)
        return RecordingFacts(duration=row.duration or 0.0, sha256=row.sha256 or "")

    async def wait_settled(self, call_id: str, path: Path, deadline: float) -> bool:
        """A raw file has no header to say it is closed: it is once it stopped changing
        after the hang-up (MixMonitor flushes a running one every ~1 s and closes it as the
        channel goes)."""
        if await self._settled(path, deadline, RAW_QUIET_S):
            return True
        _problem(call_id, path, "still written")
        await self.calls.recording_missing(call_id, str(path), "still written")
        return False

    @staticmethod
    async def _settled(path: Path, deadline: float, quiet: float) -> bool:
        """Until `path` has not changed for `quiet` s; False at the deadline."""
        while not await asyncio.to_thread(recording_timeline.is_settled, path, quiet=quiet):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def finalise_legs(self, call_id: str, path: Path, sources: Sources,
                            deadline: float, origin: str) -> RecordingFacts | None:
        """MixMonitor's WAVs (without split legs, or from before one stereo recorder): on
        the wall-clock timeline, announcements mixed in, then archived (or only hashed,
        without an archive service)."""
        mono = sources.mono
        if not await self.wait_closed(call_id, mono, deadline):
            return None
        timeline = await self.rebuild_timeline(call_id, mono, deadline)
        await self.mix_announcements(call_id, mono,
                                     timeline.answered_at if timeline is not None else None)
        if self.archive is None:
            facts = await asyncio.to_thread(wav_facts, path)
            await self.calls.recording_finalised(call_id, facts.duration, facts.sha256)
            return facts
        row = await self.archive.archive_call(call_id, path, origin=origin)
        if row is None:
            await self.calls.recording_missing(call_id, str(path), "no audio to archive")
            return None
        return RecordingFacts(duration=row.duration or 0.0, sha256=row.sha256 or "")

    async def finalise_called(self, call_id: str, path: Path, deadline: float, *,
                              origin: str = "finaliser") -> None:
        """An outbound call's called party has a recording of their own (the notice they
        heard is in it: extensions.conf [ivr-outbound-answered]): archived as a second
        recording of the call (kind `called`); its length and sha256 go into the timeline
        (`called_recording_finalised`)."""
        sources = Sources.of(path)
        called = Sources(sources.stem.with_name(sources.stem.name + "-called"))
        if self.archive is not None and await asyncio.to_thread(archived_file, called):
            await self.archive.archive_called(call_id, called.mono, origin=origin)
            return
        if not await asyncio.to_thread(called.mono.exists):
            return
        while not await asyncio.to_thread(wav_closed, called.mono):
            if asyncio.get_running_loop().time() > deadline:
                await self.calls.recording_missing(call_id, str(called.mono),
                                                   "not closed in time")
                return
            await asyncio.sleep(0.2)
        if self.archive is not None:
            await self.archive.archive_called(call_id, called.mono, origin=origin)
            return
        facts = await asyncio.to_thread(wav_facts, called.mono)
        await self.calls.called_recording_finalised(call_id, str(called.mono), facts.duration,
                                                    facts.sha256)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
