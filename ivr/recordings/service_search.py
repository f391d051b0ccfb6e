"""Finding recordings and reaching their files: the service the CLI and the API share.

`RecordingSearch.open_file` is the only way a request reaches the file system: a call id
(checked to be one) finds index rows, and the row's path, relative to the recordings folder,
is resolved and must stay inside that folder. Nothing a client sends is ever joined to a
path. `RecordingAccess` writes the access log: an audit row and a log line for every access
to a recording, granted or refused.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ivr.policy.callerid import DEFAULT_COUNTRY
from ivr.protection.admin_errors import AdminError, NotFound
from ivr.protection.store_audit import AuditStore
from ivr.recordings.search import (
    KINDS,
    RecordingQuery,
    check_call_id,
    count_statement,
    page_statement,
)
from ivr.recordings.store_index import AnalysisState, RecordingIndex, RecordingRow, State

log = logging.getLogger("ivr.recordings.search")

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


@dataclass(frozen=True)
class SearchPage:
    rows: list[RecordingRow]
    total: int
    page: int
    per_page: int

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page * self.per_page < self.total else None

    def as_dict(self, query: RecordingQuery) -> dict[str, Any]:
        return {"recordings": [summary(r) for r in self.rows], "total": self.total,
                "page": self.page, "per_page": self.per_page, "next_page": self.next_page,
                "filters": query.filters()}


def summary(row: RecordingRow) -> dict[str, Any]:
    """A row for lists: everything but the analysis itself (the detail view has it)."""
    out = row.as_dict()
    out.pop("analysis")
    out["flags"] = row.flag_list
    return out


def detail(row: RecordingRow) -> dict[str, Any]:
    out = row.as_dict()
    out["flags"] = row.flag_list
    return out


@dataclass
class OpenRecording:
    """An open archive file: read it, then close it (the caller owns `file`)."""

    row: RecordingRow
    path: Path
    file: io.BufferedReader
    size: int  # of the file as opened (fstat), not as the index says
    media_type: str

    @property
    def filename(self) -> str:
        return PurePosixPath(self.row.path).name


def inside(root: Path, relative: str) -> Path | None:
    """`root / relative`, resolved (symbolic links followed), if it stays inside root and
    names something other than root itself; None otherwise. Touches the disk: run it off the
    event loop."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    if PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
        return None
    base = root.resolve()
    path = (base / relative).resolve()
    if path == base or not path.is_relative_to(base):
        return None
    return path


def _open_regular(path: Path) -> tuple[io.BufferedReader, int]:
    """Open a regular file without following a last-moment symbolic link; its size."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(str(path))
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


class RecordingSearch:
    def __init__(self, index: RecordingIndex, recordings_dir: Path,
                 country: Callable[[], str] = lambda: DEFAULT_COUNTRY):
        self.index = index
        self.recordings_dir = Path(recordings_dir)
        self.country = country

    async def search(self, query: RecordingQuery) -> SearchPage:
        country = self.country()
        rows = await self.index.select(page_statement(query, country))
        async with self.index.db.engine.connect() as conn:
            total = int((await conn.execute(count_statement(query, country))).scalar_one())
        return SearchPage(rows=rows, total=total, page=query.page, per_page=query.per_page)

    async def for_call(self, call_id: str) -> list[RecordingRow]:
        """A call's recordings (`call` first); NotFound when it has none."""
        check_call_id(call_id)
        rows = await self.index.for_call(call_id)
        if not rows:
            raise NotFound(f"no recording of call {call_id!r}", field="call_id")
        return rows

    async def row(self, call_id: str, kind: str = "call") -> RecordingRow:
        if kind not in KINDS:
            raise AdminError(f"kind must be one of {', '.join(KINDS)}", field="kind",
                             status=400)
        for row in await self.for_call(call_id):
            if row.kind == kind:
                return row
        raise NotFound(f"call {call_id!r} has no {kind!r} recording", field="kind")

    async def open_file(self, call_id: str, kind: str = "call") -> OpenRecording:
        """The archive file of a call's recording, open for reading. Refused unless the row is
        final and its path stays inside the recordings folder."""
        row = await self.row(call_id, kind)
        if row.state == State.RECORDING:
            raise AdminError(f"call {call_id!r} is still being recorded", field="call_id",
                             status=409)
        if row.state == State.EXPIRED:
            raise AdminError(f"the recording of call {call_id!r} was deleted by retention "
                             f"({row.deleted_reason or 'expired'})", field="call_id",
                             status=410)
        if row.state != State.FINAL:
            raise NotFound(f"the recording of call {call_id!r} is {row.state}",
                           field="call_id")
        path = await asyncio.to_thread(inside, self.recordings_dir, row.path)
        if path is None:
            # Only an edited index gets here: say so loudly, serve nothing.
            log.error("event=recording_path_refused call_id=%s recording_id=%d path=%r "
                      "why=outside_recordings_dir", row.call_id, row.id, row.path)
            raise NotFound(f"the recording of call {call_id!r} has no file in the recordings "
                           "folder (the index row's path is refused; see the log)",
                           field="call_id")
        try:
            file, size = await asyncio.to_thread(_open_regular, path)
        except OSError as exc:
            log.warning("event=recording_file_unreadable call_id=%s recording_id=%d path=%s "
                        "error=%r", row.call_id, row.id, row.path, str(exc))
            raise NotFound(f"the recording file of call {call_id!r} is not there",
                           field="call_id") from None
        return OpenRecording(row=row, path=path, file=file, size=size,
                             media_type=MEDIA_TYPES.get(row.format, "application/octet-stream"))

    async def analysis_svg(self, call_id: str, kind: str = "call") -> str:
        """The analysis picture (SVG); NotFound until the recording is analysed."""
        from ivr.recordings.picture import render_svg

        row = await self.row(call_id, kind)
        if row.analysis_state != AnalysisState.DONE or not row.analysis:
            raise NotFound(f"the recording of call {call_id!r} is not analysed "
                           f"(analysis {row.analysis_state})", field="call_id")
        try:
            return await asyncio.to_thread(render_svg, row.analysis,
                                           f"call {row.call_id} ({row.kind})")
        except ValueError as exc:  # an analysis that failed has no sides to draw
            raise NotFound(f"the analysis of call {call_id!r} cannot be drawn: {exc}",
                           field="call_id") from None


def printable(value: object, limit: int = 200) -> str:
    """Client text made safe to store and log: escaped (no NUL, no control characters, which
    PostgreSQL text refuses or a log reader would be fooled by) and cut short."""
    text = repr(value) if not isinstance(value, str) else value
    safe = text.encode("unicode_escape").decode("ascii")
    return safe if len(safe) <= limit else safe[:limit] + "..."


class RecordingAccess:
    """Who reached (or tried to reach) which recording, from where: audit_log + a log line."""

    def __init__(self, audit: AuditStore):
        self.audit = audit

    async def record(self, *, actor: str, role: str, action: str, call_id: str | None,
                     origin: str, status: int, details: dict[str, Any]) -> None:
        target = f"recording {call_id}" if call_id else "recordings"
        after = {"status": status, **{k: v for k, v in details.items() if v is not None}}
        level = logging.INFO if status < 400 else logging.WARNING
        log.log(level, "event=recording_access action=%s call_id=%s actor=%s role=%s "
                "origin=%r status=%d %s", action, call_id or "-", actor, role or "-", origin,
                status, " ".join(f"{k}={v!r}" for k, v in after.items() if k != "status"))
        # Raises when the row cannot be written: a granted access is recorded before the
        # file is sent, so no audio leaves without its audit row.
        await self.audit.record(actor=actor, role=role, action=action, target=target,
                                after=after, origin=origin)
