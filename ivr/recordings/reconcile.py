"""Start-up reconciliation of the recordings folder with the index: nothing lost to a crash.

Run once the controller has scheduled the finalisation of calls whose recording has no hash
yet (and waited for it), so that both never work on one recording at once:

- a row committed without its chain entry (crash in between) is chained;
- a final row whose file is gone is REPORTED (log ``event=recording_missing`` and a call
  event), never changed: ``ivr recordings verify`` must still see it;
- an archive file without a row is indexed (origin ``reconcile``: hashed, chained, analysis
  pending); the legs, mono mix or recorder file of a finalisation cut short are finalised
  (archived; the leftovers go once the archive's row is committed).

Several nodes may share the store (and the folder): only this node's rows, and files of this
node's calls (or of no known call), are touched. Live calls' files are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ivr.recording import RecordingFinaliser
from ivr.recordings import archive
from ivr.recordings.service_archive import ArchiveService, Sources
from ivr.recordings.store_index import RecordingRow, State
from ivr.store.tables import recordings

log = logging.getLogger("ivr.recording")

# <stem>-stereo.raw | .wav | .flac | -rx.wav | -tx.wav | -timeline@<answer>.<start>.raw
_PART = re.compile(r"^(?P<stem>[^.][^/]*?)(?:-stereo\.raw|-rx\.wav|-tx\.wav|\.wav|\.flac|"
                   r"-timeline@\d+(?:\.\d+)?\.\d+\.raw)$")


@dataclass
class ReconcileReport:
    chained: int = 0
    missing: list[str] = field(default_factory=list)
    scheduled: list[str] = field(default_factory=list)  # call ids sent to the finaliser


def scan(folder: Path) -> dict[Path, set[str]]:
    """Recording stems under `folder` (``.../<stem>``) and the names of their files; the
    called party's files (``<stem>-called...``) count under the call's stem."""
    stems: dict[Path, set[str]] = {}
    if not folder.is_dir():
        return stems
    for path in folder.rglob("*"):
        m = _PART.match(path.name)
        if m is None or not path.is_file():
            continue
        stem = m.group("stem").removesuffix("-called")
        stems.setdefault(path.with_name(stem), set()).add(path.name)
    return stems


class RecordingReconciler:
    def __init__(self, service: ArchiveService, finaliser: RecordingFinaliser):
        self.service = service
        self.finaliser = finaliser
        self.calls = service.calls
        self.index = service.index

    async def run(self) -> ReconcileReport:
        report = ReconcileReport()
        # The unfinalised calls' finalisation (scheduled just before) goes first.
        await self.finaliser.wait_idle()
        rows = await self.index.select(sa.select(recordings)
                                       .where(recordings.c.node == self.service.node)
                                       .order_by(recordings.c.id))
        for row in rows:
            if row.state == State.FINAL and row.chain_seq is None:
                await self.service.chain_row(row)
                report.chained += 1
        for row in rows:
            if row.state != State.FINAL:
                continue
            path = self.service.recordings_dir / row.path
            if not await asyncio.to_thread(path.exists):
                log.error("event=recording_missing call_id=%s recording_id=%d path=%s "
                          "sha256=%s", row.call_id, row.id, row.path, row.sha256)
                if await self.calls.is_known(row.call_id):
                    await self.calls.recording_missing(row.call_id, row.path,
                                                       "archive file missing at start-up")
                report.missing.append(row.path)
        indexed = {row.path: row for row in await self.index.all()}
        for stem, names in sorted((await asyncio.to_thread(scan,
                                                           self.service.recordings_dir)).items()):
            if await self._needs_work(stem, names, indexed):
                self.finaliser.schedule(stem.name, str(Sources(stem).mono), origin="reconcile")
                report.scheduled.append(stem.name)
        await self.finaliser.wait_idle()
        log.info("event=recordings_reconciled chained=%d missing=%d finalised=%d",
                 report.chained, len(report.missing), len(report.scheduled))
        return report

    async def _needs_work(self, stem: Path, names: set[str],
                          indexed: dict[str, RecordingRow]) -> bool:
        call_id = stem.name
        archives = {n for n in names if n in (f"{call_id}.flac", f"{call_id}-called.flac")
                    or (n in (f"{call_id}.wav", f"{call_id}-called.wav")
                        and await asyncio.to_thread(_stereo, stem.with_name(n)))}
        leftovers = names - archives
        unindexed = [n for n in archives if self._rel(stem.with_name(n)) not in indexed]
        if not leftovers and not unindexed:
            return False
        for name in archives - set(unindexed):
            row = indexed[self._rel(stem.with_name(name))]
            if row.node != self.service.node:
                return False  # another node's recording
        if call_id in self.calls.active:
            return False
        record = await self.calls.get(call_id)
        if record is None:
            if unindexed:
                return True  # an archive is evidence even without its call record
            log.warning("event=recording_orphan path=%s files=%s", stem, " ".join(sorted(names)))
            return False
        # Live, or another node's call: not ours to touch.
        return record.ended_at is not None and record.node == self.service.node

    def _rel(self, path: Path) -> str:
        try:
            return self.service.relative(path)
        except ValueError:
            return str(path)


def _stereo(path: Path) -> bool:
    return archive.channels(path) == 2
