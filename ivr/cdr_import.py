"""Catching up on calls the controller never saw (it was down): Asterisk's own CDR file.

asterisk/cdr_custom.conf.j2 writes one CSV row per call leg. Rows are grouped by the call's
linked id; a call already in the store is left alone, so importing twice changes nothing.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ivr.ami.events import _endpoint
from ivr.model import Outcome, Source
from ivr.policy.callerid import normalise_number
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


def _float(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def parse_cdr_file(path: Path) -> list[CdrCall]:
    if not path.exists():
        return []
    legs: dict[str, list[dict[str, str]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            if len(row) == OLD_COLUMNS:
                row = [*row, ""]
            if len(row) != len(COLUMNS):
                log.warning("event=cdr_bad_row file=%s line=%d fields=%d", path, number, len(row))
                continue
            rec = dict(zip(COLUMNS, row, strict=True))
            if rec["linkedid"]:
                legs[rec["linkedid"]].append(rec)
    calls = []
    for call_id, rows in legs.items():
        own = [r for r in rows if r["uniqueid"] == call_id] or rows
        first = own[0]
        started = min(_float(r["start"]) or 0.0 for r in own)
        ended = max(_float(r["end"]) or started for r in own)
        answered = [r for r in own if r["dstchannel"] and r["disposition"] == "ANSWERED"
                    and r["lastapp"] == "Queue"]
        desk = next((r["desk"] for r in own if r["desk"]), None)
        notice = next((r["notice"] for r in own if r["notice"]), "")
        if answered:
            outcome = Outcome.ANSWERED
        elif desk:
            outcome = Outcome.ABANDONED_IN_QUEUE
        else:
            outcome = Outcome.ABANDONED_IN_MENU
        if notice.startswith("failed") and not answered:
            outcome = Outcome.FAILED
        calls.append(
            CdrCall(
                call_id=call_id,
                caller=normalise_number(first["src"]),
                did=first["did"] or first["dst"] or None,
                started_at=started,
                ended_at=ended,
                desk=desk,
                operator=_endpoint(answered[-1]["dstchannel"]) if answered else None,
                recording=next((r["recording"] for r in own if r["recording"]), None),
                failsafe=any(r["path"] == "failsafe" for r in own),
                outcome=outcome,
                notice=notice,
            )
        )
    return calls


async def import_missed_calls(path: Path, calls: CallService) -> list[str]:
    """Add the calls the store does not know; returns their ids."""
    imported = []
    for call in parse_cdr_file(path):
        if await calls.is_known(call.call_id):
            continue
        await calls.call_started(
            call.call_id, caller=call.caller, did=call.did, recording_path=call.recording,
            source=Source.CDR, started_at=call.started_at,
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
    return imported
