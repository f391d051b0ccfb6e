"""`ivr recordings verify|export|expire|hold|release`: the evidence side of the recordings.

Like `ivr calls`, these work on the database and the recordings folder directly; the actor in
the audit log is the OS user, the origin `cli`.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click

from ivr.cli_protection import _run, config_option
from ivr.config import Config
from ivr.model import iso


def _actor() -> Any:
    from ivr.protection.service_settings import Actor

    return Actor(name=getpass.getuser(), role="admin", origin="cli")


def _services(config: Config, db: Any) -> tuple[Any, Any]:
    from ivr.protection.store_audit import AuditStore
    from ivr.recordings.retention import RetentionService
    from ivr.recordings.service_evidence import EvidenceService
    from ivr.recordings.store_chain import ChainStore
    from ivr.recordings.store_index import RecordingIndex
    from ivr.store import CallStore

    index, chain, audit, calls = (RecordingIndex(db), ChainStore(db), AuditStore(db),
                                  CallStore(db))
    evidence = EvidenceService(index, chain, config.recordings_dir, audit=audit, calls=calls)
    retention = RetentionService(index, chain, config.recordings_dir, config.recording,
                                 audit=audit, calls=calls)
    return evidence, retention


def _refused(exc: Exception) -> None:
    click.echo(f"refused: {exc}", err=True)
    sys.exit(2)


def add_commands(group: click.Group) -> None:
    """Attach this module's commands to `ivr recordings`."""
    for command in (verify, export, expire, hold, release):
        group.add_command(command)


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--anchor", help="A head hash written down earlier: it must still be in the "
              "chain.")
def verify(config_path: str, as_json: bool, anchor: str | None) -> None:
    """Check the hash chain against the index and the files; name what is wrong.

    Exit 0 when intact, 1 with one line per problem. Prints the chain head's hash: write it
    down (an anchor) and check it later with --anchor."""
    async def work(config: Config, db: Any):
        evidence, _ = _services(config, db)
        return await evidence.verify(anchor=anchor)

    report = _run(config_path, work)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for p in report.problems:
            click.echo(f"{p.kind}: {p.message}")
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        head = report.head
        click.echo(f"{'intact' if report.intact else 'NOT INTACT'}: {report.entries} chain "
                   f"entries, {report.rows} index rows, {report.files} files hashed, "
                   f"{report.tombstones} tombstones, {len(report.problems)} problems; head "
                   f"seq {head.seq if head else 0} hash {report.head_hash}")
    sys.exit(0 if report.intact else 1)


@click.command()
@config_option
@click.argument("call_id")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Where the bundle folder goes.")
@click.option("--tar", "as_tar", is_flag=True, help="Write a .tar of the bundle instead.")
def export(config_path: str, call_id: str, out_dir: Path, as_tar: bool) -> None:
    """Write CALL_ID's evidence bundle (recording, call record, analysis, chain entries,
    verify_chain.py, README.txt, SHA256SUMS); audited."""
    from ivr.recordings.service_evidence import ExportError

    async def work(config: Config, db: Any):
        evidence, _ = _services(config, db)
        if as_tar:
            return await evidence.export_tar(call_id, actor=_actor(), out_dir=out_dir)
        return await evidence.export(call_id, out_dir, actor=_actor())

    try:
        result = _run(config_path, work)
    except (ExportError, OSError) as exc:
        _refused(exc)
    for problem in result.problems:
        click.echo(f"note: {problem}", err=True)
    click.echo(f"{result.tar or result.folder}: {len(result.sums)} files, chain head "
               f"{result.head_hash}")


@click.command()
@config_option
@click.option("--dry-run", is_flag=True, help="List what would expire; change nothing.")
def expire(config_path: str, dry_run: bool) -> None:
    """Delete recordings past their retention (tombstones stay, chained); held recordings,
    live calls and files not final are never touched. The server does this hourly."""
    async def work(config: Config, db: Any):
        _, retention = _services(config, db)
        return await retention.expire(dry_run=dry_run, actor=_actor())

    done = _run(config_path, work)
    for e in done:
        what = f"NOT expired ({e.refused})" if e.refused else (
            "would expire" if dry_run else "expired")
        click.echo(f"{what} {e.call_id} {e.path} (desk {e.desk or '-'}, kept until "
                   f"{iso(e.keep_until)})")
    count = sum(1 for e in done if not e.refused)
    click.echo(f"{count} recording(s) {'due' if dry_run else 'expired'}"
               + (f", {len(done) - count} refused: see `ivr recordings verify`"
                  if len(done) > count else ""))


def _hold_command(name: str, hold: bool) -> click.Command:
    @click.command(name, help=(
        "Keep CALL_ID's recordings until released (a supervisor's action)." if hold else
        "Release CALL_ID's recordings: retention applies again."))
    @config_option
    @click.argument("call_id")
    @click.option("--reason", required=True, help="Why (kept in the audit log).")
    def command(config_path: str, call_id: str, reason: str) -> None:
        from ivr.recordings.retention import RetentionError

        async def work(config: Config, db: Any):
            _, retention = _services(config, db)
            method = retention.hold if hold else retention.release
            return await method(call_id, reason=reason, actor=_actor())

        try:
            rows = _run(config_path, work)
        except RetentionError as exc:
            _refused(exc)
        for row in rows:
            click.echo(f"{row.call_id} {row.path}: "
                       f"{'held (' + (row.hold_reason or '') + ')' if row.hold else 'released'}")

    return command


hold = _hold_command("hold", True)
release = _hold_command("release", False)
