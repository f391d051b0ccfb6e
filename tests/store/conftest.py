"""Store tests run on both engines: SQLite (a file per test) and PostgreSQL (a throw-away
server for the session, a database per test).

The server is Debian's `postgresql` package (deploy/setup.sh --test installs it): initdb into
a temporary folder, listening on a Unix socket in that folder only (no TCP port, so parallel
runs and a system PostgreSQL do not collide), fsync off. initdb refuses to run as root, so as
root the server runs as the `postgres` system user (the package creates it), which owns the
folder. A missing PostgreSQL fails the tests: `make test` installs it, so it is never optional.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ivr.store import Database

SUPERUSER = "ivr"


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        pytest.fail("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): "
                    "run deploy/setup.sh --test", pytrace=False)
    return found[-1].parent


class PostgresServer:
    def __init__(self, bin_dir: Path, root: Path, as_user: str | None):
        self.bin = bin_dir
        self.root = root
        self.data = root / "data"
        self.as_user = as_user
        self._names = itertools.count(1)

    def run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync")
        options = (f"-k {self.root} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                 "-t", "60", "-o", options, "start")

    def watch(self) -> None:
        """A killed pytest (timeout, Ctrl-C twice) runs no teardown: a small watchdog stops
        the server and removes its folder once this process is gone."""
        stop = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        if self.as_user:
            stop = ["runuser", "-u", self.as_user, "--", *stop]
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"{shlex.join(stop)} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.root))}")
        subprocess.Popen(["sh", "-c", script], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL (asyncpg over the Unix socket)."""
        name = f"t{next(self._names)}"
        self.run("createdb", "-h", str(self.root), "-U", SUPERUSER, name)
        return f"postgresql+asyncpg://{SUPERUSER}@/{name}?host={self.root}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
    as_user = None
    if os.geteuid() == 0:
        as_user = "postgres"
        shutil.chown(root, user=as_user, group=as_user)
    server = PostgresServer(bin_dir, root, as_user)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')}"
                    f"{log.read_text() if log.exists() else ''}", pytrace=False)
    server.watch()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each engine in turn."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An open, migrated database on each engine in turn."""
    database = await Database(db_url).open()
    yield database
    await database.close()


class Clock:
    """A settable clock for services that take one (`clock=`)."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
