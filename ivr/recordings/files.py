"""The recordings folder as the evidence side sees it: index paths to files, and hashing.

A path only ever comes from the index (relative, checked here); nothing a request or a
command line says reaches the file system except through a row.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20


class PathError(ValueError):
    pass


def index_path(root: Path, relative: str) -> Path:
    """The file an index path names under `root`; refuses absolute paths and `..`."""
    rel = PurePosixPath(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts or "\\" in relative \
            or "\0" in relative:
        raise PathError(f"{relative!r}: not a path inside the recordings folder")
    return root / Path(*rel.parts)


def sha256_of(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of the file's bytes, read in blocks. Blocking."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def hash_file(path: Path) -> tuple[int, str] | None:
    """(size, sha256 hex) of a regular file; None when there is none. Blocking."""
    try:
        return sha256_of(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


class FileHasher:
    """Hashes index paths in threads, a few at once (the event loop never reads a file)."""

    def __init__(self, root: Path, *, parallel: int = 4):
        self.root = root
        self._limit = asyncio.Semaphore(parallel)

    async def __call__(self, relative: str) -> tuple[int, str] | None:
        try:
            path = index_path(self.root, relative)
        except PathError:
            return None
        async with self._limit:
            return await asyncio.to_thread(hash_file, path)
