"""Catching up on calls the controller never saw (it was down): Asterisk's own CDR file.

asterisk/cdr_custom.conf.j2 writes one CSV row per call leg. Rows are grouped by the call's
linked id; a call already in the store is left alone, so importing twice changes nothing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ivr.ami.events import _endpoint
from ivr.model import Outcome, Source
from ivr.service import CallService

log = logging.getLogger("ivr.cdr")

COLUMNS = (
    "linkedid", "uniqueid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
    "start", "answer", "end", "disposition", "did", "recording", "desk", "path", "notice",
)
# Rows written before the notice column existed are still read.
OLD_COLUMNS = len(COLUMNS) - 1


@dataclass(frozen=True)
class CdrCall:
    call_id: str
    caller: str | None
    did: str | None
    started_at: float
    ended_at: float
    desk: str | None
    operator: str | None
    recording: str | None
    failsafe: bool
    outcome: Outcome
    notice: str = ""  # "fallback: <problem>" or "failed: <problem>" (CDR ivr_notice)
    direction: str = "inbound"  # "outbound": an operator dialled out (CDR ivr_path outbound*)


def _float(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CdrPosition:
    """How far the CDR file has been read: its inode (a rotated file is a new one) and the
    byte offset after the last complete line."""

    inode: int
    offset: int

    def encode(self) -> str:
        return f"{self.inode}:{self.offset}"

    @classmethod
    def decode(cls, text: str | None) -> CdrPosition:
        try:
            inode, offset = (int(x) for x in (text or "").split(":"))
        except ValueError:
            return cls(0, 0)
        return cls(inode, offset)


def read_cdr_rows(path: Path, since: CdrPosition) -> tuple[list[dict[str, str]], CdrPosition]:
    """The rows written after `since` (from the start when the file was rotated or
    truncated), and the new position. Blocking: run it in a worker thread."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return [], since
    offset = since.offset
    if stat.st_ino != since.inode or stat.st_size < offset:
        offset = 0
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
    rows: list[dict[str, str]] = []
    text = complete.decode("utf-8", "replace")
    for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if len(row) == OLD_COLUMNS:  # written before the notice column existed
            row = [*row, ""]
        if len(row) != len(COLUMNS):
            log.warning("event=cdr_bad_row file=%s line=%d fields=%d", path, number, len(row))
            continue
        rows.append(dict(zip(COLUMNS, row, strict=True)))
    return rows, CdrPosition(stat.st_ino, offset + len(complete))


def parse_cdr_file(path: Path) -> list[CdrCall]:
    rows, _ = read_cdr_rows(path, CdrPosition(0, 0))
    return calls_from_rows(rows)


def calls_from_rows(rows: list[dict[str, str]]) -> list[CdrCall]:
    legs: dict[str, list[dict[str, str]]] = defaultdict(list)
    for rec in rows:
        if rec["linkedid"]:
            legs[rec["linkedid"]].append(rec)
    calls = []
    for call_id, group in legs.items():
        own = [r for r in group if r["uniqueid"] == call_id]
        if not own:
            continue  # only another leg of the call: its customer row is what counts
        first = own[0]
        started = min(_float(r["start"]) or 0.0 for r in own)
        ended = max(_float(r["end"]) or started for r in own)
        answered = [r for r in own if r["dstchannel"] and r["disposition"] == "ANSWERED"
                    and r["lastapp"] == "Queue"]
        desk = _first(own, "desk")
        notice = _first(own, "notice") or ""
        if answered:
            outcome = Outcome.ANSWERED
        elif desk:
            outcome = Outcome.ABANDONED_IN_QUEUE
        else:
            outcome = Outcome.ABANDONED_IN_MENU
        if notice.startswith("failed") and not answered:
            outcome = Outcome.FAILED
        outbound = any(r["path"].startswith("outbound") for r in own)
        if outbound:
            calls.append(_outbound_call(call_id, own, started, ended))
            continue
        calls.append(
            CdrCall(
                call_id=call_id,
                caller=first["src"] or None,  # normalised by the call service
                did=_first(own, "did") or first["dst"] or None,
                started_at=started,
                ended_at=ended,
                desk=desk,
                operator=_endpoint(answered[-1]["dstchannel"]) if answered else None,
                recording=_first(own, "recording"),
                failsafe=any(r["path"] == "failsafe" for r in own),
                outcome=outcome,
                notice=notice,
            )
        )
    return calls


def _first(rows: list[dict[str, str]], field: str) -> str | None:
    """The first value of a field the call's rows have (the dialplan writes some of them at
    the hang-up: they are on its last row only)."""
    return next((r[field] for r in rows if r[field]), None)


def _outbound_call(call_id: str, own: list[dict[str, str]], started: float,
                   ended: float) -> CdrCall:
    """An operator's outbound call (the fail-safe let only emergency numbers out)."""
    dialled = [r for r in own if r["lastapp"] == "Dial" and r["dstchannel"]]
    answered = any(r["disposition"] == "ANSWERED" for r in dialled)
    return CdrCall(
        call_id=call_id, caller=None, did=_first(own, "did"), started_at=started,
        ended_at=ended, desk=None, operator=_endpoint(own[0]["channel"]) or None,
        recording=_first(own, "recording"),
        failsafe=any(r["path"].endswith("failsafe") for r in own),
        outcome=(Outcome.ANSWERED if answered else
                 Outcome.UNANSWERED if dialled else Outcome.REFUSED),
        direction="outbound")


CDR_POSITION = "cdr_position"


async def import_missed_calls(path: Path, calls: CallService, *, node: str) -> list[str]:
    """Add the calls the store does not know, reading only what was written since the last
    import (the position is kept in the store, per node); returns their ids."""
    since = CdrPosition.decode(await calls.store.get_state(node, CDR_POSITION))
    rows, position = await asyncio.to_thread(read_cdr_rows, path, since)
    imported = []
    for call in calls_from_rows(rows):
        if await calls.is_known(call.call_id):
            continue
        await calls.call_started(
            call.call_id, caller=call.caller, did=call.did, recording_path=call.recording,
            source=Source.CDR, started_at=call.started_at, direction=call.direction,
        )
        await calls.store.update(
            call.call_id, desk=call.desk, operator=call.operator, failsafe=int(call.failsafe),
            ended_at=call.ended_at, outcome=call.outcome.value,
        )
        kind, _, problem = call.notice.partition(": ")
        if kind == "fallback":
            await calls.notice_fallback(call.call_id, problem.split(":")[0], "fallback/notice",
                                        at=call.ended_at)
        elif kind == "failed":
            await calls.notice_failed(call.call_id, "notice", "", problem, at=call.ended_at)
        imported.append(call.call_id)
        log.info("event=cdr_imported call_id=%s outcome=%s", call.call_id, call.outcome)
    if position != since:
        await calls.store.set_state(node, CDR_POSITION, position.encode())
    return imported
