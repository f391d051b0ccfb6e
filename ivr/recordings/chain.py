"""The hash chain over the recordings index (pure: no I/O).

Each chain entry is a small JSON document (the facts it vouches for) written in one
canonical form; its hash is sha256 over the previous entry's hash, a newline, and that text.
Editing a file changes its sha256 (no longer the one its entry names); editing, deleting or
reordering entries breaks the links after them. A third party recomputes a link with
standard tools: ``printf '%s\\n%s' PREV_HASH ENTRY_JSON | sha256sum``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64

#: What a `final` entry vouches for: the file and the facts a search or a court relies on.
FINAL_FIELDS = ("recording_id", "call_id", "recording_kind", "path", "format", "sha256", "size",
                "duration", "started_at", "finalised_at", "caller", "did", "desk", "operator")
#: What a `tombstone` entry vouches for: that retention deleted exactly this file, by whom.
TOMBSTONE_FIELDS = ("recording_id", "call_id", "path", "sha256", "deleted_at", "deleted_by",
                    "deleted_reason")


def canonical(entry: dict[str, Any]) -> str:
    """One text per document: sorted keys, no spaces, UTF-8 kept (hashes are over bytes)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link_hash(prev_hash: str, entry_text: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{entry_text}".encode()).hexdigest()


def _value(value: Any) -> Any:
    # Times and lengths to the millisecond: both engines give them back that precisely.
    return round(value, 3) if isinstance(value, float) else value


def final_entry(fields: dict[str, Any]) -> dict[str, Any]:
    """fields: an index row's (its `kind`, call | called, is vouched for as recording_kind;
    the entry's own kind is `final`)."""
    facts = {**fields, "recording_kind": fields.get("kind")}
    return {**{k: _value(facts.get(k)) for k in FINAL_FIELDS}, "kind": "final"}


def tombstone_entry(fields: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "tombstone", **{k: _value(fields.get(k)) for k in TOMBSTONE_FIELDS}}
