"""Check the hash chain against the recordings index and the files, and name what is wrong.

Pure except for the file hashing, which the caller supplies (service_evidence.py hashes in
threads). What each finding means:

- ``edited_file``: the file's sha256 is not the one its chain entry vouches for.
- ``deleted_file``: a recording the chain vouches for has no file and no tombstone.
- ``deleted_index_row``: a chain entry names a recording whose index row is gone.
- ``deleted_chain_row``: an entry's prev_hash names no entry (the one before it was removed),
  or a row's chain entry is gone.
- ``altered_row``: an index row's fields differ from what its chain entry vouches for.
- ``altered_entry``: an entry's text (or prev_hash) no longer gives its hash.
- ``reordered``: the links put entries in another order than their sequence numbers.
- ``unchained``: a final row without a chain entry; an expired row without a tombstone.
- ``anchor_missing``: a head hash written down earlier is not in the chain any more.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.recordings.chain import GENESIS, final_entry, link_hash, tombstone_entry
from ivr.recordings.store_chain import ChainEntry
from ivr.recordings.store_index import RecordingRow, State

# Times are vouched for to the millisecond; a value that rounded the other way at the
# half-millisecond between the archiver's clock and the stored timestamp is not tampering.
TIME_TOLERANCE = 0.0011
HASH_AHEAD = 64  # rows whose files are hashed together


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    recording_id: int | None = None
    call_id: str | None = None
    seq: int | None = None
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "recording_id": self.recording_id,
                "call_id": self.call_id, "seq": self.seq, "path": self.path}


@dataclass
class Report:
    head: ChainEntry | None
    entries: int = 0
    rows: int = 0
    files: int = 0
    tombstones: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def head_hash(self) -> str:
        return self.head.hash if self.head is not None else GENESIS

    def as_dict(self) -> dict[str, Any]:
        return {"intact": self.intact, "head": self.head_hash,
                "head_seq": self.head.seq if self.head else None, "entries": self.entries,
                "rows": self.rows, "files": self.files, "tombstones": self.tombstones,
                "problems": [p.as_dict() for p in self.problems], "notes": self.notes}


def row_fields(row: RecordingRow) -> dict[str, Any]:
    """The facts of a row in the form chain.final_entry/tombstone_entry take them."""
    return {**row.as_dict(), "recording_id": row.id}


def expected_final(row: RecordingRow) -> dict[str, Any]:
    return final_entry(row_fields(row))


def expected_tombstone(row: RecordingRow) -> dict[str, Any]:
    return tombstone_entry(row_fields(row))


def differences(vouched: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Field names whose values differ (numbers within TIME_TOLERANCE count as equal)."""
    out = []
    for key in sorted(set(vouched) | set(actual)):
        a, b = vouched.get(key), actual.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) \
                and not isinstance(a, bool) and not isinstance(b, bool):
            if abs(a - b) <= TIME_TOLERANCE:
                continue
        elif a == b:
            continue
        out.append(key)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- the chain alone ----

def check_links(entries: list[ChainEntry], report: Report) -> None:
    """Every entry's text gives its hash; the links run in sequence order with no gap."""
    by_hash = {e.hash: e for e in entries}
    for e in entries:
        if link_hash(e.prev_hash, e.entry) != e.hash:
            report.problems.append(Problem(
                "altered_entry", f"chain seq {e.seq}: its text and prev_hash do not give its "
                f"hash (the entry was edited)", e.recording_id, e.call_id, e.seq))
        try:
            doc = json.loads(e.entry)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("recording_id") != e.recording_id \
                or doc.get("call_id") != e.call_id:
            report.problems.append(Problem(
                "altered_entry", f"chain seq {e.seq}: the row's recording_id/call_id "
                f"({e.recording_id}, {e.call_id}) are not the ones its text vouches for",
                e.recording_id, e.call_id, e.seq))
    # The order the links give: follow prev_hash -> hash from each segment's start.
    nexts = {e.prev_hash: e for e in entries}
    starts = [e for e in entries if e.prev_hash not in by_hash]
    linked: list[ChainEntry] = []
    for start in starts:  # in sequence order
        if start.prev_hash != GENESIS:
            before = max((x.seq for x in entries if x.seq < start.seq), default=None)
            where = f"between seq {before} and seq {start.seq}" if before is not None \
                else f"before seq {start.seq}"
            report.problems.append(Problem(
                "deleted_chain_row", f"chain row(s) deleted {where}: seq {start.seq} links to "
                f"{start.prev_hash[:16]}..., which no entry has", start.recording_id,
                start.call_id, start.seq))
        elif linked or start is not entries[0]:
            report.problems.append(Problem(
                "reordered", f"chain seq {start.seq} starts the chain (links to genesis) but "
                f"is not the first entry", start.recording_id, start.call_id, start.seq))
        node: ChainEntry | None = start
        seen: set[int] = set()
        while node is not None and node.seq not in seen:
            seen.add(node.seq)
            linked.append(node)
            node = nexts.get(node.hash)
    # A loop (only possible by editing prev_hash) leaves entries unreached: already reported
    # as altered entries above.
    order = [e.seq for e in linked]
    if order != sorted(order):
        moved = sorted({a for a, b in zip(order, sorted(order), strict=False) if a != b})
        report.problems.append(Problem(
            "reordered", f"chain rows out of order: seq {', '.join(map(str, moved))} (the links "
            f"run {' -> '.join(map(str, order[:20]))}{' ...' if len(order) > 20 else ''})",
            seq=moved[0]))


# ---- the chain against the index and the files ----

@dataclass
class _Vouched:
    final: ChainEntry | None = None
    tombstone: ChainEntry | None = None
    final_doc: dict[str, Any] = field(default_factory=dict)
    tombstone_doc: dict[str, Any] = field(default_factory=dict)


def _vouched(entries: list[ChainEntry]) -> dict[int, _Vouched]:
    out: dict[int, _Vouched] = {}
    for e in entries:
        try:
            doc = json.loads(e.entry)
        except ValueError:
            continue  # reported by check_links
        v = out.setdefault(e.recording_id, _Vouched())
        if e.kind == "tombstone":
            v.tombstone, v.tombstone_doc = e, doc
        else:  # the latest final entry is what the file must match
            v.final, v.final_doc = e, doc
    return out


FileHash = Callable[[str], Awaitable[tuple[int, str] | None]]


async def check_index(entries: list[ChainEntry], rows: list[RecordingRow],
                      file_hash: FileHash, report: Report) -> None:
    """`file_hash(path)` -> (size, sha256) of the file at the index path, None if absent."""
    vouched = _vouched(entries)
    by_seq = {e.seq: e for e in entries}
    by_id = {r.id: r for r in rows}
    for rid, v in vouched.items():
        if rid in by_id:
            continue
        e = v.tombstone or v.final
        assert e is not None
        doc = v.tombstone_doc or v.final_doc
        report.problems.append(Problem(
            "deleted_index_row", f"recording {rid} (call {e.call_id}, {doc.get('path')}) is "
            f"vouched for by chain seq {e.seq} but its index row is gone", rid, e.call_id,
            e.seq, doc.get("path")))
    for start in range(0, len(rows), HASH_AHEAD):
        chunk = rows[start:start + HASH_AHEAD]
        # The chunk's files hashed side by side (file_hash bounds how many at once).
        paths = sorted({p for row in chunk if (p := _file_of(row, vouched.get(row.id)))})
        hashed = dict(zip(paths, await asyncio.gather(*(file_hash(p) for p in paths)),
                          strict=True))

        async def cached(path: str, hashed: dict = hashed) -> tuple[int, str] | None:
            return hashed[path] if path in hashed else await file_hash(path)

        for row in chunk:
            await _check_row(row, vouched.get(row.id, _Vouched()), by_seq, cached, report)


def _file_of(row: RecordingRow, v: _Vouched | None) -> str | None:
    """The path whose file a row is checked against: the one its final entry names (a
    tombstone's, to see it is gone); None for a row the chain does not cover."""
    if v is None:
        return None
    if v.final is not None and v.tombstone is None:
        return str(v.final_doc.get("path") or row.path)
    return row.path if v.tombstone is not None else None


async def _check_row(row: RecordingRow, v: _Vouched, by_seq: dict[int, ChainEntry],
                     file_hash: FileHash, report: Report) -> None:
    if v.tombstone is not None:
        report.tombstones += 1
        _check_tombstone(row, v, report)
        if await file_hash(row.path) is not None:
            report.notes.append(f"recording {row.id} ({row.path}) is expired but its file "
                                "is still there: `ivr recordings expire` removes it")
        return
    if row.state == State.EXPIRED:
        report.problems.append(Problem(
            "unchained", f"recording {row.id} (call {row.call_id}) is marked expired but "
            "no tombstone entry is chained for it", row.id, row.call_id, path=row.path))
        return
    if v.final is None:
        if row.state == State.FINAL or row.chain_seq is not None:
            gone = row.chain_seq is not None and row.chain_seq not in by_seq
            report.problems.append(Problem(
                "deleted_chain_row" if gone else "unchained",
                f"recording {row.id} (call {row.call_id}, {row.path}): its chain entry "
                f"seq {row.chain_seq} is gone" if gone else
                f"recording {row.id} (call {row.call_id}, {row.path}) is final but has no "
                "chain entry", row.id, row.call_id, row.chain_seq, row.path))
        return
    await _check_final(row, v, file_hash, report)


def _check_tombstone(row: RecordingRow, v: _Vouched, report: Report) -> None:
    assert v.tombstone is not None
    diff = differences(v.tombstone_doc, expected_tombstone(row))
    if v.final is not None:  # the call's facts stay vouched for after the file is gone
        diff += [k for k in differences(v.final_doc, expected_final(row)) if k not in diff]
    if row.state != State.EXPIRED:
        diff.append("state")
    if diff:
        report.problems.append(Problem(
            "altered_row", f"recording {row.id} (call {row.call_id}): {', '.join(diff)} "
            f"differ from the tombstone at chain seq {v.tombstone.seq}", row.id, row.call_id,
            v.tombstone.seq, row.path))


async def _check_final(row: RecordingRow, v: _Vouched, file_hash: FileHash,
                       report: Report) -> None:
    assert v.final is not None
    e, doc = v.final, v.final_doc
    diff = differences(doc, expected_final(row))
    details = [f"{k} is {_short(expected_final(row).get(k))} in the row, "
               f"{_short(doc.get(k))} in the entry" for k in diff]
    if row.chain_seq != e.seq:
        details.append(f"chain_seq is {row.chain_seq} in the row, the entry is seq {e.seq}")
    if row.state not in (State.FINAL, State.MISSING):
        details.append(f"state is {row.state!r} in the row, the chain holds it final")
    if details:
        report.problems.append(Problem(
            "altered_row", f"recording {row.id} (call {row.call_id}) differs from chain seq "
            f"{e.seq}: {'; '.join(details)}", row.id, row.call_id, e.seq, row.path))
    # The file named by the entry (the row's path may itself have been altered).
    path = str(doc.get("path") or row.path)
    found = await file_hash(path)
    if found is None:
        report.problems.append(Problem(
            "deleted_file", f"recording {row.id} (call {row.call_id}): file {path} is gone "
            f"and no tombstone says why (chain seq {e.seq})", row.id, row.call_id, e.seq,
            path))
        return
    report.files += 1
    size, sha = found
    if sha != doc.get("sha256"):
        vouched_size = doc.get("size")
        sizes = "" if size == vouched_size else f" (size {size}, vouched {vouched_size})"
        report.problems.append(Problem(
            "edited_file", f"recording {row.id} (call {row.call_id}): file {path} has sha256 "
            f"{sha[:16]}..., chain seq {e.seq} vouches for {str(doc.get('sha256'))[:16]}..."
            f"{sizes}", row.id, row.call_id, e.seq, path))


def check_anchor(entries: list[ChainEntry], anchor: str, report: Report) -> None:
    """A head hash written down earlier must still be in the chain (else the chain was cut
    back or rewritten since)."""
    if anchor != GENESIS and anchor not in {e.hash for e in entries}:
        report.problems.append(Problem(
            "anchor_missing", f"the anchor {anchor[:16]}... is not in the chain: entries up to "
            "it were deleted or rewritten"))
