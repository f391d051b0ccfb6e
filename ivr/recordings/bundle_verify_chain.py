#!/usr/bin/env python3
"""verify_chain.py: check an evidence bundle's chain entries (Python 3 standard library only).

Run it inside the bundle folder:  python3 verify_chain.py
It recomputes every chain entry's hash (sha256 of the previous entry's hash, a newline and the
entry's text, as `printf '%s\\n%s' PREV ENTRY | sha256sum` does), checks that the entries
before and after each of the call's entries link to it, and that each recording file in the
bundle has the sha256 its entry vouches for. Exit status 0: all checks pass; 1: a check
failed (each failure is printed).
"""

import hashlib
import json
import os
import sys

GENESIS = "0" * 64


def link_hash(prev_hash, entry_text):
    return hashlib.sha256((prev_hash + "\n" + entry_text).encode("utf-8")).hexdigest()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(folder):
    """A list of (ok, message)."""
    with open(os.path.join(folder, "chain.json"), encoding="utf-8") as f:
        chain = json.load(f)
    results = []
    entries = chain["entries"]
    by_hash = {e["hash"]: e for e in entries}
    by_prev = {e["prev_hash"]: e for e in entries}
    for e in entries:
        ok = link_hash(e["prev_hash"], e["entry"]) == e["hash"]
        verb = "gives" if ok else "does NOT give"
        results.append((ok, f"seq {e['seq']}: sha256(prev_hash + newline + entry) {verb} "
                            "its hash"))
    head = chain.get("head") or {}
    for e in entries:
        if e.get("role") != "covers":
            continue
        if e["prev_hash"] != GENESIS:
            ok = e["prev_hash"] in by_hash
            state = "is in the bundle and links to it" if ok else "is MISSING"
            results.append((ok, f"seq {e['seq']}: the entry before it "
                                f"(hash {e['prev_hash'][:16]}...) {state}"))
        if e["hash"] != head.get("hash"):
            ok = e["hash"] in by_prev
            state = "links to it" if ok else "is MISSING or does not link to it"
            results.append((ok, f"seq {e['seq']}: the entry after it {state}"))
    for rec in chain.get("recordings", []):
        name, seq = rec.get("file"), rec.get("final_seq")
        if not name or seq is None:
            continue
        entry = next((e for e in entries if e["seq"] == seq), None)
        if entry is None:
            results.append((False, f"{name}: its chain entry seq {seq} is not in the bundle"))
            continue
        vouched = json.loads(entry["entry"]).get("sha256")
        path = os.path.join(folder, name)
        actual = file_sha256(path) if os.path.isfile(path) else None
        ok = actual == vouched
        verb = "is" if ok else "is NOT"
        results.append((ok, f"{name}: sha256 {actual} {verb} the one chain seq {seq} "
                            "vouches for"))
    return results


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    try:
        results = check(folder)
    except (OSError, ValueError, KeyError) as exc:
        print(f"FAIL: cannot read the bundle: {exc}")
        return 1
    for ok, message in results:
        print(("ok    " if ok else "FAIL  ") + message)
    failed = sum(1 for ok, _ in results if not ok)
    with open(os.path.join(folder, "chain.json"), encoding="utf-8") as f:
        head = json.load(f).get("head") or {}
    print(f"chain head at export: seq {head.get('seq')} hash {head.get('hash')}")
    print(f"{'FAILED' if failed else 'OK'}: {len(results)} checks, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
