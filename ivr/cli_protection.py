"""`ivr block`, `ivr unblock`, `ivr blocks list`, `ivr rules test`: the block list and the
inbound rules from the command line.

Like `ivr calls`, these work on the database directly (a running server reads the blocks
for every call, so a change applies to the next call on every node). The actor in the audit
log is the OS user, the origin `cli`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from ivr.config import Config

T = TypeVar("T")

config_option = click.option(
    "--config", "-c", "config_path", default="ivr.toml", show_default=True,
    envvar="IVR_CONFIG", help="The server's TOML configuration file (env IVR_CONFIG).",
)


def _run(config_path: str, work: Callable[[Config, Any], Awaitable[T]]) -> T:
    """Open the store, run `work(config, db)`; bad input is one line on stderr, exit 2."""
    from ivr.cli import _load
    from ivr.protection.errors import ProtectionError
    from ivr.store import Database

    config = _load(config_path)

    async def run() -> T:
        async with Database(config.database_url) as db:
            return await work(config, db)

    try:
        return asyncio.run(run())
    except ProtectionError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)


def _actor():
    from ivr.protection.service_blocks import Actor

    return Actor(name=getpass.getuser(), role="admin", origin="cli")


def _entries(config: Config) -> set[str] | None:
    from ivr.setup import load_current_journey

    try:
        return set(load_current_journey(config).entries)
    except ValueError:  # a broken journey is `ivr check`'s to report; entries go unchecked
        return None


async def _settings(config: Config, db: Any):
    """The protection settings in force: the newest stored version, else the file."""
    from ivr.protection.service_settings import SettingsService
    from ivr.protection.settings import load_settings_file
    from ivr.protection.store_audit import AuditStore
    from ivr.protection.store_settings import SettingsStore

    service = SettingsService(SettingsStore(db), AuditStore(db))
    if await service.refresh():
        return service.current()
    return load_settings_file(config.protection_file)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).astimezone().strftime(
        "%Y-%m-%d %H:%M")


@click.command("block")
@config_option
@click.argument("value")
@click.option("--prefix", "kind", flag_value="prefix", help="VALUE is a prefix (0120).")
@click.option("--pattern", "kind", flag_value="pattern",
              help="VALUE is a pattern: _0990XXXXXX (X Z N [1-5] . !).")
@click.option("--reason", required=True, help="Why (kept with the block, shown in lists).")
@click.option("--expires", help="30d, 12h, 2w, or a date 2026-12-31 (through that day).")
@click.option("--entry", help="Only calls to this entry point (default: all).")
def block_cmd(config_path: str, value: str, kind: str | None, reason: str,
              expires: str | None, entry: str | None) -> None:
    """Block a NUMBER (any form: 03-1234-5678, +81312345678), a --prefix or a --pattern."""
    from ivr.protection.service_blocks import BlockService, parse_expiry
    from ivr.protection.store_audit import AuditStore
    from ivr.protection.store_blocks import BlockStore

    async def work(config: Config, db: Any):
        settings = await _settings(config, db)
        service = BlockService(BlockStore(db), AuditStore(db),
                               country=settings.numbers.country_code,
                               entries=_entries(config) if entry else None)
        return await service.block(value, kind=kind or "exact", reason=reason,
                                   actor=_actor(), entry=entry,
                                   expires_at=parse_expiry(expires, time.time()))

    added = _run(config_path, work)
    click.echo(f"{added.rule_id}: {added.kind} {added.value} blocked"
               f"{' at ' + added.entry if added.entry else ''}, until "
               f"{_when(added.expires_at) if added.expires_at else 'removed'}")


@click.command("unblock")
@config_option
@click.argument("block_id", type=int)
@click.option("--reason", required=True, help="Why the block is lifted.")
def unblock_cmd(config_path: str, block_id: int, reason: str) -> None:
    """Lift block ID (kept in the list with --all, with who lifted it and why)."""
    from ivr.protection.service_blocks import BlockService
    from ivr.protection.store_audit import AuditStore
    from ivr.protection.store_blocks import BlockStore

    async def work(config: Config, db: Any):
        service = BlockService(BlockStore(db), AuditStore(db))
        return await service.unblock(block_id, reason=reason, actor=_actor())

    removed = _run(config_path, work)
    click.echo(f"{removed.rule_id}: {removed.kind} {removed.value} unblocked")


@click.group("blocks")
def blocks_group() -> None:
    """The block list."""


@blocks_group.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Removed and expired blocks too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def blocks_list(config_path: str, show_all: bool, as_json: bool) -> None:
    """Blocks in force, oldest first."""
    from ivr.protection.store_blocks import BlockStore

    async def work(_config: Config, db: Any):
        return await BlockStore(db).list(include_removed=show_all, include_expired=show_all)

    found = _run(config_path, work)
    if as_json:
        click.echo(json.dumps({"blocks": [b.as_dict() for b in found]}, ensure_ascii=False,
                              indent=2))
        return
    if not found:
        click.echo("no blocks")
    now = time.time()
    for b in found:
        state = "" if b.is_active(now) else (" removed" if b.removed_at else " expired")
        click.echo(f"{b.rule_id:<10} {b.kind:<7} {b.value:<16} {b.entry or '*':<8} "
                   f"until {_when(b.expires_at):<16} {b.source}/{b.added_by}  "
                   f"{b.reason}{state}")


@click.group("rules")
def rules_group() -> None:
    """Which restriction rule applies to a call, and why."""


@rules_group.command("test")
@config_option
@click.argument("number")
@click.option("--entry", help="The entry point the call comes in on.")
@click.option("--withheld", type=click.Choice(["anonymous", "payphone", "unavailable",
                                               "unknown"]),
              help="Test a withheld caller with this reason (NUMBER is then ignored).")
@click.option("--outbound", is_flag=True, help="An operator's outbound call instead.")
@click.option("--desk", help="Outbound: the desk dialling (default: the operator's desks).")
@click.option("--operator", help="Outbound: the operator dialling.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def rules_test(config_path: str, number: str, entry: str | None, withheld: str | None,
               outbound: bool, desk: str | None, operator: str | None,
               as_json: bool) -> None:
    """The decision for a call from NUMBER now, from the same rules a call goes through
    (blocks and repeat counts from the store; nothing is added)."""
    if outbound or desk or operator:
        _outbound_test(config_path, number, desk, operator, as_json)
        return
    from ivr.protection.service_inbound import InboundService

    async def work(config: Config, db: Any):
        settings = await _settings(config, db)
        return await InboundService(db).decide(
            settings, caller=None if withheld else number, entry=entry, withheld=withheld,
            add_blocks=False)

    decision, _ = _run(config_path, work)
    p = decision.protection
    shown = {"action": decision.action, "rule": decision.rule, "prompt": decision.prompt,
             "desk": decision.desk, "withheld": decision.withheld,
             "flags": sorted(p.flags), "repeat_count": p.repeat_count,
             "talk_limit": p.talk_limit, "ring_prefix": p.ring_prefix,
             "alert_info": p.alert_info,
             "auto_block": decision.auto_block.__dict__ if decision.auto_block else None,
             "why": decision.why}
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    what = {"refuse": f"refuse ({decision.prompt})", "desk": f"route to desk {decision.desk}",
            "allow": "allow"}[decision.action]
    click.echo(f"{what}  rule={decision.rule or '-'}  flags={' '.join(sorted(p.flags)) or '-'}"
               f"  repeat={p.repeat_count if p.repeat_count is not None else '-'}"
               f"  talk_limit={p.talk_limit or '-'}  ring={p.ring_prefix or '-'}")
    for line in decision.why:
        click.echo(f"  {line}")


def _outbound_test(config_path: str, number: str, desk: str | None, operator: str | None,
                   as_json: bool) -> None:
    """An operator's outbound call (ivr/protection/rules_outbound.py): the operator's desks
    from the journey unless --desk names one."""
    from ivr.protection.rules_outbound import explain_outbound, operator_desks
    from ivr.setup import load_current_journey

    async def work(config: Config, db: Any):
        settings = await _settings(config, db)
        desks = [desk] if desk else operator_desks(
            {n: d.members for n, d in load_current_journey(config).desks.items()}, operator)
        return explain_outbound(settings, number, desk_names=desks, operator=operator)

    decision = _run(config_path, work)
    if as_json:
        click.echo(json.dumps(decision.event(), ensure_ascii=False, indent=2))
        return
    what = "allow" if decision.allowed else (
        "deny (a supervisor PIN unlocks it)" if decision.pin_may_unlock else "deny")
    click.echo(f"{what}  rule={decision.rule}  number={decision.number or '-'}")
    click.echo(f"  {decision.reason}")


def register(main: click.Group) -> None:
    for command in (block_cmd, unblock_cmd, blocks_group, rules_group):
        main.add_command(command)
