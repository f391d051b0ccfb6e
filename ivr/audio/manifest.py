"""The render cache's manifest (``<prompt dir>/manifest.json``) and its lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("ivr.audio.prompts")


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Serialise renders into one directory (e.g. web admin and startup at once)."""
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("entries"), dict):
            return data
        log.warning("%s: unexpected manifest layout; re-rendering everything", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable manifest (%s); re-rendering everything", path, e)
    return {"version": 1, "entries": {}}


def save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, ensure_ascii=False, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
