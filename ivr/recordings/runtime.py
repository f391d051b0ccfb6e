"""What a controller runs for recording as evidence, built and started in one place: the
index and chain, the finaliser that archives each ended call's recording, the start-up
reconciliation, the analysis worker and hourly retention."""

from __future__ import annotations

import asyncio
import logging

from ivr.config import Config
from ivr.protection.store_audit import AuditStore
from ivr.recording import RecordingFinaliser
from ivr.recordings.reconcile import RecordingReconciler
from ivr.recordings.retention import RetentionService
from ivr.recordings.service_analysis import AnalysisWorker
from ivr.recordings.service_archive import ArchiveService
from ivr.recordings.store_chain import ChainStore
from ivr.recordings.store_index import RecordingIndex
from ivr.service import CallService
from ivr.store import Database

log = logging.getLogger("ivr.recordings")


class RecordingsRuntime:
    def __init__(self, db: Database, calls: CallService, audit: AuditStore, config: Config,
                 *, node: str):
        self.index = RecordingIndex(db)
        self.chain = ChainStore(db)
        # Finalised recordings become stereo archives; on_final: listeners (the analysis).
        self.archive = ArchiveService(calls, self.index, self.chain, config.recording,
                                      config.recordings_dir, node=node)
        self.finaliser = RecordingFinaliser(calls, prompts_dir=config.prompts_dir,
                                            archive=self.archive)
        # Off the call path; the queue is the index, so rows a crash left pending are done
        # at start-up.
        self.analysis = AnalysisWorker(self.index, config.recordings_dir, node=node)
        self.archive.on_final.append(self.analysis.wake)
        # Expiry never touches a live call's recording or an unfinished file.
        self.retention = RetentionService(self.index, self.chain, config.recordings_dir,
                                          config.recording, audit=audit, calls=calls.store,
                                          node=node)
        self._calls = calls
        self._node = node
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        # Calls ended while we were away get their recordings finalised now; then the folder
        # is checked against the index (after those: see ivr/recordings/reconcile.py).
        for record in await self._calls.store.unfinalised_recordings(node=self._node):
            self.finaliser.schedule(record.id, record.recording_path)
        self._spawn(self._reconcile())
        await self.analysis.start()
        self._spawn(self.retention.run_hourly())

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile(self) -> None:
        try:
            await RecordingReconciler(self.archive, self.finaliser).run()
        except asyncio.CancelledError:
            raise
        except Exception:  # reported; the files and rows stay as they are
            log.exception("event=recordings_reconcile_failed")

    async def stop_background(self) -> None:
        """Retention and reconciliation stop (they resume at the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self, finalise_timeout: float = 10.0) -> None:
        """After the calls stopped coming: let started finalisations end, then the worker
        (a row being analysed stays pending for the next start)."""
        await self.stop_background()
        try:
            await asyncio.wait_for(self.finaliser.wait_idle(), finalise_timeout)
        except TimeoutError:
            log.warning("event=finaliser_shutdown_timeout")
        await self.analysis.stop()
