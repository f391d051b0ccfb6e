"""Who Asterisk runs as, and who may read what it writes.

Asterisk starts as root (deploy/asterisk.sh needs root to enter the chroot) and drops to its
own unprivileged `asterisk` user at once (runuser/rungroup in asterisk.conf). In chroot mode
that user is the sid root's own (its /etc/passwd; uid 101 on these machines, which may be a
different name on the host); with a system Asterisk it is the host's `asterisk` user.

Modes after `ivr setup`:

- folders Asterisk writes (asterisk/run, log, spool, lib): owned by asterisk, 0750;
  recordings: owned by asterisk, group asterisk, 0770 (the controller rebuilds each
  recording on the wall-clock timeline in place); what Asterisk writes is 0660 / 0770
  (deploy/asterisk.sh runs it with umask 007): never readable by other users;
- asterisk/etc (rendered configuration, holds the AMI secret and phone passwords) and
  prompts: owned by whoever renders them, group asterisk, folders 2750 (new files inherit the
  group), files 0640: Asterisk reads them, cannot rewrite them;
- the data folder: 0750, group asterisk (so Asterisk can reach its folders);
- secrets.toml and the database: 0600, the controller's own.

Nothing in the data folder is readable by other users. The controller reads recordings and
the CDR file as root or through membership of the asterisk group.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ivr.config import Config

log = logging.getLogger("ivr.asterisk")

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_DIR / "deploy" / "asterisk.sh"
USER = "asterisk"


@dataclass(frozen=True)
class Account:
    user: str
    group: str
    uid: int
    gid: int


def _from_files(root: Path, user: str) -> Account | None:
    try:
        passwd = (root / "etc" / "passwd").read_text().splitlines()
        groups = (root / "etc" / "group").read_text().splitlines()
    except OSError:
        return None
    for line in passwd:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user:
            uid, gid = int(fields[2]), int(fields[3])
            group = next((g.split(":")[0] for g in groups
                          if len(g.split(":")) >= 3 and g.split(":")[2] == str(gid)), user)
            return Account(user, group, uid, gid)
    return None


def _from_host(user: str) -> Account | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = user
    return Account(user, group, entry.pw_uid, entry.pw_gid)


def asterisk_mode(config: Config) -> str:
    env = {**os.environ}
    env.setdefault("IVR_ASTERISK_MODE", config.asterisk.mode)
    try:
        run = subprocess.run([str(SCRIPT), "mode"], capture_output=True, text=True,
                             timeout=30, env=env, check=False)
    except OSError:
        return "system"
    return run.stdout.strip() if run.returncode == 0 else "system"


_found: dict[tuple[str, Path], Account | None] = {}


def asterisk_account(config: Config) -> Account | None:
    """Asterisk's own user, where Asterisk will look it up (the chroot's files or the host).
    Looked up once per process (a reload runs inside the controller's event loop)."""
    key = (config.asterisk.mode, config.asterisk.chroot)
    if key not in _found:
        if asterisk_mode(config) == "chroot":
            root = Path(os.environ.get("IVR_ASTERISK_ROOT") or config.asterisk.chroot)
            _found[key] = _from_files(root, USER)
        else:
            _found[key] = _from_host(USER)
    return _found[key]


def _chown(path: Path, uid: int, gid: int) -> None:
    """As root: set both. Otherwise only the group, where allowed (a reload run by the
    controller's own user keeps whatever root set up)."""
    try:
        if os.geteuid() == 0:
            os.chown(path, uid, gid, follow_symlinks=False)
        else:
            os.chown(path, -1, gid, follow_symlinks=False)
    except PermissionError:
        pass


def _chmod(path: Path, mode: int) -> None:
    try:
        if path.exists():
            os.chmod(path, mode)
    except PermissionError:
        pass  # not ours (an Asterisk folder seen by the controller's user): root set it up


def secure_data_dir(config: Config, account: Account | None) -> None:
    """Apply the modes described above. The controller's files (secrets, database,
    configuration, prompts) belong to the data folder's owner: root in tests and
    `make run`, the controller's own user under systemd (see README)."""
    from ivr.asterisk.render import AsteriskPaths

    paths = AsteriskPaths(config.asterisk_dir)
    owner = os.stat(config.data_dir).st_uid
    database = config.database_path
    for secret in (config.secrets_path, database, database.with_name(database.name + "-wal"),
                   database.with_name(database.name + "-shm"), config.journey_state_path):
        if secret.exists():
            _chown(secret, owner, -1)
            _chmod(secret, 0o600)
    if account is None:
        log.warning("event=no_asterisk_user detail=Asterisk runs as root; install its "
                    "'asterisk' user (deploy/asterisk.sh provision)")
        for folder in (config.data_dir, paths.etc, config.prompts_dir):
            _chmod(folder, 0o750)
        return
    uid, gid = account.uid, account.gid
    for folder in (config.data_dir, config.asterisk_dir):
        _chown(folder, owner, gid)
        _chmod(folder, 0o750)
    # Asterisk's own folders: everything in them is Asterisk's (an earlier run as root
    # may have left files it could not write now). Recordings: folders only (many files).
    for top in (paths.run, paths.log, paths.spool, paths.lib, config.recordings_dir):
        top.mkdir(parents=True, exist_ok=True)
        for folder, _dirs, files in os.walk(top):
            here = Path(folder)
            if os.geteuid() == 0:
                os.chown(here, uid, gid, follow_symlinks=False)
                if top != config.recordings_dir:
                    for name in files:
                        os.chown(here / name, uid, gid, follow_symlinks=False)
            _chmod(here, 0o770 if top == config.recordings_dir else 0o750)
    # Asterisk's data folder of links (ivr/asterisk/sounds.py): the controller re-links it on
    # reload, Asterisk reads through it. Only the folders themselves: the rest are links.
    for folder in (paths.share, paths.share / "sounds"):
        if folder.is_dir() and not folder.is_symlink():
            _chown(folder, owner, gid)
            _chmod(folder, 0o2750)
    # Read-only for Asterisk: configuration and prompts.
    for top in (paths.etc, config.prompts_dir):
        if not top.exists():
            continue
        for folder, _dirs, files in os.walk(top):
            here = Path(folder)
            _chown(here, owner, gid)
            _chmod(here, 0o2750)
            for name in files:
                _chown(here / name, owner, gid)
                _chmod(here / name, 0o640)
