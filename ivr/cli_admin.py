"""`ivr settings`, `ivr tokens`, `ivr audit`: the admin services from the command line.

The CLI changes the shared store directly (the same services as the API); a running server
takes a settings change within a second (it polls the newest version), on every node.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import yaml

from ivr.config import Config
from ivr.journey import Journey

T = TypeVar("T")


def check_protection(config: Config, journey: Journey) -> None:
    """`ivr check`: protection.yaml against the journey and operators (SettingsError)."""
    from ivr.protection.settings import load_settings_file

    load_settings_file(config.protection_file, desks=set(journey.desks),
                       entries=set(journey.entries),
                       operators={o.endpoint for o in config.operators})


def _cli_actor():
    from ivr.protection.service_settings import Actor

    return Actor(name=getpass.getuser(), role="admin", origin="cli")


def _with_services(config_path: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store, build the services as the server does, run `work(services)`; a bad
    input (AdminError) is one line on stderr and exit 2."""
    from ivr.cli import _load
    from ivr.protection.errors import ProtectionError
    from ivr.protection.service_blocks import BlockService
    from ivr.protection.service_rules import RulesService
    from ivr.protection.service_settings import KnownNames, SettingsService
    from ivr.protection.service_tokens import TokenService
    from ivr.protection.settings import load_settings_file
    from ivr.protection.store_audit import AuditStore
    from ivr.protection.store_blocks import BlockStore
    from ivr.protection.store_settings import SettingsStore
    from ivr.protection.store_tokens import TokenStore
    from ivr.service import CallService
    from ivr.setup import load_current_journey
    from ivr.store import CallStore, Database
    from ivr.web.api import AdminServices

    config = _load(config_path)

    def known() -> KnownNames:
        journey = load_current_journey(config)
        return KnownNames(desks=set(journey.desks), entries=set(journey.entries),
                          operators={o.endpoint for o in config.operators})

    async def run() -> T:
        async with Database(config.database_url) as db:
            audit = AuditStore(db)
            settings = SettingsService(SettingsStore(db), audit, known,
                                       file=lambda: load_settings_file(config.protection_file))
            await settings.refresh()
            services = AdminServices(
                settings=settings, tokens=TokenService(TokenStore(db), audit), audit=audit,
                calls=CallService(CallStore(db), node=config.server.node_name),
                blocks=BlockService(BlockStore(db), audit,
                                    country=settings.current().numbers.country_code),
                rules_test=RulesService(db, settings.current, known).test)
            return await work(services)

    try:
        return asyncio.run(run())
    except ProtectionError as exc:  # its message names the field
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)
    except ValueError as exc:  # the journey itself is bad
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(2)


config_option = click.option(
    "--config", "-c", "config_path", default="ivr.toml", show_default=True,
    envvar="IVR_CONFIG", help="The server's TOML configuration file (env IVR_CONFIG).",
)


@click.group("settings")
def settings_group() -> None:
    """Protection settings in force (restrictions, limits, feature codes, live protection,
    cool-down): show, set."""


@settings_group.command("show")
@config_option
@click.argument("section", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@click.option("--version", "version_id", type=int, help="An earlier version (ivr settings "
              "history).")
def settings_show(config_path: str, section: str | None, as_json: bool,
                  version_id: int | None) -> None:
    """The settings in force (or one SECTION): version, who made it, the document."""
    shown = _with_services(config_path, lambda s: s.settings.show(section, version_id))
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    at = _time(shown["at"]) if shown.get("at") else "-"
    click.echo(f"# version {shown['version']} ({shown['source']}, {shown.get('actor', '-')}, "
               f"{at})")
    body = shown["settings"] if section is None else {section: shown["settings"]}
    click.echo(yaml.safe_dump(body, allow_unicode=True, sort_keys=False), nl=False)


@settings_group.command("set")
@config_option
@click.argument("section")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--patch", is_flag=True, help="Merge FILE into the section (JSON merge patch: "
              "null removes a key) instead of replacing it.")
def settings_set(config_path: str, section: str, file, patch: bool) -> None:
    """Replace SECTION with FILE's content (YAML or JSON; `-` reads stdin).

    FILE may hold the section's content or `SECTION: {...}`. Checked as a whole with the
    journey and the operators; refused with the field named, and nothing changes. A running
    server applies it to its next call within a second.
    """
    try:
        data = yaml.safe_load(file.read())
    except yaml.YAMLError as exc:
        click.echo(f"refused: {file.name}: not valid YAML: {exc}", err=True)
        sys.exit(2)
    if isinstance(data, dict) and set(data) == {section}:
        data = data[section]
    actor = _cli_actor()

    async def work(s):
        if patch:
            return await s.settings.patch(section, data, actor)
        return await s.settings.replace(section, data, actor)

    result = _with_services(config_path, work)
    if result["changed"]:
        click.echo(f"settings version {result['version']}: {section} changed")
    else:
        click.echo(f"no change (version {result['version']} stays)")


@settings_group.command("history")
@config_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
def settings_history(config_path: str, limit: int) -> None:
    """The settings versions, newest first (the first line is in force)."""
    for v in _with_services(config_path, lambda s: s.settings.history(limit)):
        click.echo(f"{v['version']:>6}  {_time(v['at'])}  {v['source']:<5} {v['actor']:<16} "
                   f"{v['sha256'][:12]}")


@click.group("tokens")
def tokens_group() -> None:
    """API tokens: create (shown once), list, revoke."""


@tokens_group.command("create")
@config_option
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "supervisor", "operator"]), required=True)
def tokens_create(config_path: str, name: str, role: str) -> None:
    """Make an API token NAME with ROLE; it is printed once and only its hash is kept."""
    actor = _cli_actor()
    token = _with_services(config_path, lambda s: s.tokens.create(name, role, actor))
    click.echo(token)
    click.echo(f"# token {name!r} ({role}): keep it now, it cannot be shown again", err=True)


@tokens_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def tokens_list(config_path: str, as_json: bool) -> None:
    """Tokens by name: role, made by and when, last use, revoked."""
    tokens = _with_services(config_path, lambda s: s.tokens.list())
    if as_json:
        click.echo(json.dumps({"tokens": [t.to_json() for t in tokens]}, indent=2))
        return
    if not tokens:
        click.echo("no tokens")
    for t in tokens:
        state = f"revoked {_time(t.revoked_at)}" if t.revoked_at else "live"
        used = _time(t.last_used_at) if t.last_used_at else "never"
        click.echo(f"{t.name:<20} {t.role:<10} by {t.created_by:<10} {_time(t.created_at)}  "
                   f"last used {used}  {state}")


@tokens_group.command("revoke")
@config_option
@click.argument("name")
def tokens_revoke(config_path: str, name: str) -> None:
    """Revoke token NAME: the API refuses it from its next request."""
    actor = _cli_actor()
    _with_services(config_path, lambda s: s.tokens.revoke(name, actor))
    click.echo(f"token {name!r} revoked")


@click.command("audit")
@config_option
@click.option("--since", help="Epoch seconds, an ISO time, or an age: 30m, 12h, 7d.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True)
def audit_cmd(config_path: str, since: str | None, limit: int, as_json: bool) -> None:
    """The audit log, newest first: who changed what, before and after, when, from where."""
    start = _since(since)
    async def work(s):
        return [r.as_dict() for r in await s.audit.list(since=start, limit=limit)]

    rows = _with_services(config_path, work)
    if as_json:
        click.echo(json.dumps({"audit": rows}, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no audit entries")
    for r in rows:
        click.echo(f"{_time(r['at'])}  {r['actor']:<12} {r['role']:<10} {r['action']:<18} "
                   f"{r['target']:<24} {r['origin']}")
        for label in ("before", "after"):
            if r[label] is not None:
                click.echo(f"    {label}: {json.dumps(r[label], ensure_ascii=False)}")


def _since(value: str | None) -> float | None:
    if not value:
        return None
    match = re.fullmatch(r"(\d+)([smhd])", value)
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time() - int(match.group(1)) * unit
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("use epoch seconds, an ISO time or 30m/12h/7d",
                                 param_hint="--since") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def register(main: click.Group) -> None:
    for command in (settings_group, tokens_group, audit_cmd):
        main.add_command(command)
