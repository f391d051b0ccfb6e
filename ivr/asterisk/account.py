"""Who Asterisk runs as, and who may read what it writes.

Asterisk starts as root (deploy/asterisk.sh needs root to enter the chroot) and drops to its
own unprivileged `asterisk` user at once (runuser/rungroup in asterisk.conf). In chroot mode
that user is the sid root's own (its /etc/passwd; uid 101 on these machines, which may be a
different name on the host); with a system Asterisk it is the host's `asterisk` user.

Modes after `ivr setup`:

- folders Asterisk writes (asterisk/run, log, spool, lib, recordings): owned by asterisk,
  0750; what it writes there is 0640 (deploy/asterisk.sh runs it with umask 027);
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


def asterisk_account(config: Config) -> Account | None:
    """Asterisk's own user, where Asterisk will look it up (the chroot's files or the host)."""
    if asterisk_mode(config) == "chroot":
        root = Path(os.environ.get("IVR_ASTERISK_ROOT") or config.asterisk.chroot)
        return _from_files(root, USER)
    return _from_host(USER)


def _chown(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid, follow_symlinks=False)
    else:
        try:
            os.chown(path, -1, gid, follow_symlinks=False)
        except PermissionError:
            pass  # not root and not in the group: the folder keeps what root gave it


def _private(path: Path, mode: int) -> None:
    if path.exists():
        os.chmod(path, mode)


def secure_data_dir(config: Config, account: Account | None) -> None:
    """Apply the modes described above (ownership only when running as root)."""
    from ivr.asterisk.render import AsteriskPaths

    paths = AsteriskPaths(config.asterisk_dir)
    for secret in (config.secrets_path, config.database_path,
                   config.database_path.with_name(config.database_path.name + "-wal"),
                   config.database_path.with_name(config.database_path.name + "-shm")):
        _private(secret, 0o600)
    if account is None:
        log.warning("event=no_asterisk_user detail=Asterisk runs as root; install its "
                    "'asterisk' user (deploy/asterisk.sh provision)")
        for folder in (config.data_dir, paths.etc, config.prompts_dir):
            _private(folder, 0o750)
        return
    uid, gid = account.uid, account.gid
    _chown(config.data_dir, os.stat(config.data_dir).st_uid, gid)
    os.chmod(config.data_dir, 0o750)
    _chown(config.asterisk_dir, os.stat(config.asterisk_dir).st_uid, gid)
    os.chmod(config.asterisk_dir, 0o750)
    # Asterisk's own folders: everything in them is Asterisk's (an earlier run as root
    # may have left files it could not write now).
    for top in (paths.run, paths.log, paths.spool, paths.lib, config.recordings_dir):
        top.mkdir(parents=True, exist_ok=True)
        walk_files = top != config.recordings_dir  # recordings: folders only (many files)
        for folder, _dirs, files in os.walk(top):
            here = Path(folder)
            if os.geteuid() == 0:
                os.chown(here, uid, gid, follow_symlinks=False)
            os.chmod(here, 0o750)
            if walk_files and os.geteuid() == 0:
                for name in files:
                    os.chown(here / name, uid, gid, follow_symlinks=False)
    # Read-only for Asterisk: configuration and prompts.
    for top in (paths.etc, config.prompts_dir):
        if not top.exists():
            continue
        for folder, _dirs, files in os.walk(top):
            here = Path(folder)
            _chown(here, os.stat(here).st_uid, gid)
            os.chmod(here, 0o2750)
            for name in files:
                path = here / name
                _chown(path, os.stat(path).st_uid, gid)
                os.chmod(path, 0o640)
