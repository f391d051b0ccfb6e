"""The evidence bundle on disk (blocking: run it in a thread): a folder a lawyer or the police
can check with standard tools, and a .tar of it for the API.

Layout (all files at the top level, names from the index, never from a request):

- the recording file(s) of the call, as archived (``<call id>.flac``, ``<call id>-called.flac``)
- ``call.json``: the call record, its event timeline and the index rows
- ``analysis.json``: the analysis of each recording (and ``<file>.png``/``.svg`` pictures when
  the analysis can draw them)
- ``chain.json``: the call's chain entries, the entries before and after each, the head
- ``verify_chain.py``: recomputes the links and the files' hashes (Python 3 stdlib only)
- ``README.txt``: what the recipient has and how to check it
- ``SHA256SUMS``: ``sha256sum -c SHA256SUMS`` checks every other file
"""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.recordings.files import sha256_of

SUMS = "SHA256SUMS"
SCRIPT = Path(__file__).with_name("bundle_verify_chain.py")


@dataclass(frozen=True)
class BundleFile:
    """One file of the bundle: copied from `source`, or written from `data`."""

    name: str
    source: Path | None = None
    data: bytes | None = None


def json_bytes(document: Any) -> bytes:
    return (json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def write_bundle(folder: Path, files: list[BundleFile]) -> dict[str, str]:
    """Write `files`, the checker script and SHA256SUMS into a new `folder`; the sums by name.
    A half-written bundle is removed (never left looking complete)."""
    names = [f.name for f in files]
    if len(set(names)) != len(names) or any("/" in n or n.startswith(".") for n in names):
        raise ValueError(f"bundle file names must be unique plain names: {names}")
    folder.mkdir(parents=True, exist_ok=False)
    try:
        for f in files:
            target = folder / f.name
            if f.source is not None:
                shutil.copyfile(f.source, target)
            else:
                target.write_bytes(f.data or b"")
        shutil.copyfile(SCRIPT, folder / "verify_chain.py")
        # The sums are over what was written, so the bundle is consistent even if a source
        # changed while it was copied (then verify_chain.py shows the file no longer matches
        # its chain entry).
        sums = {name: sha256_of(folder / name)[1] for name in sorted([*names, "verify_chain.py"])}
        (folder / SUMS).write_text("".join(f"{sha}  {name}\n" for name, sha in sums.items()))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return sums


def write_tar(folder: Path, tar_path: Path) -> Path:
    """An uncompressed tar of the bundle folder (audio is compressed already), the folder's
    name as its top directory."""
    partial = tar_path.with_name(tar_path.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=folder.name, recursive=True)
    partial.replace(tar_path)
    return tar_path


def readme(*, call_id: str, exported_at: str, exported_by: str, head_hash: str,
           head_seq: int | None, recordings: list[str], notes: list[str]) -> bytes:
    listing = "\n".join(f"  {line}" for line in recordings) or "  (none)"
    remarks = "".join(f"\nNote: {n}\n" for n in notes)
    return f"""Evidence bundle for call {call_id}
Exported {exported_at} by {exported_by}.

Recordings (stereo: left = the caller, right = the operator/IVR, what the caller heard):
{listing}

Files
  call.json        the call record and its event timeline, and the recordings index rows
  analysis.json    loudness, shouting episodes, silence/talk/overlap per side
  *.svg            the analysis drawn per side over time (for analysed recordings)
  chain.json       the hash-chain entries that vouch for the recordings
  verify_chain.py  recomputes the chain links and the recordings' hashes (Python 3 only)
  SHA256SUMS       the sha256 of every other file in this folder
{remarks}
How to check this bundle (any Linux or macOS shell, in this folder)

1. Nothing was changed since the export:
       sha256sum -c SHA256SUMS          (macOS: shasum -a 256 -c SHA256SUMS)
   Every line must say OK.

2. The recordings are the ones the server's hash chain vouches for:
       python3 verify_chain.py
   It must end with "OK". It recomputes each chain entry's hash and checks that the
   entries before and after the call's entries link to them and that each recording's
   sha256 is the one its entry names.

3. By hand, for any entry in chain.json (its prev_hash, its entry text, its hash):
       printf '%s\\n%s' PREV_HASH 'ENTRY_TEXT' | sha256sum
   prints the entry's hash. Each entry's prev_hash is the hash of the entry before it, so
   changing, removing or reordering an entry breaks every link after it.

4. The chain head at export time was seq {head_seq} with hash
       {head_hash}
   The operator of the recording server can confirm that this hash is still in its chain
   (and compare it with any head hash a supervisor wrote down earlier):
       ivr recordings verify --anchor {head_hash}
""".encode()
