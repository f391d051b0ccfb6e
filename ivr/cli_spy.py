"""`ivr spy CALL_ID --phone sv2001 --mode listen|whisper|barge`: a supervisor's phone rings and,
answered, joins the live call (ivr/spy/service.py, the same service as the API).

Like `ivr operators`, this acts on live calls through Asterisk's AMI directly (the running
controller need not be asked: what the call's channels are is Asterisk's to say) and writes
the store (audit row, the call's timeline). The actor in the audit log is the OS user, the
origin `cli`.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from ivr.config import Config
from ivr.spy.checks import Mode

config_option = click.option(
    "--config", "-c", "config_path", default="ivr.toml", show_default=True,
    envvar="IVR_CONFIG", help="The server's TOML configuration file (env IVR_CONFIG).",
)


async def _with_ami(config: Config, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Log in to this server's AMI (the generated secret), run work(action), log out."""
    from ivr.ami.client import short_session
    from ivr.credentials import load_or_create

    secrets = load_or_create(config.secrets_path, [o.endpoint for o in config.operators])
    async with short_session(port=config.asterisk.ami_port, username=config.asterisk.ami_user,
                             secret=secrets.ami_secret) as ami:
        return await work(ami.action)


AmiRunner = Callable[[Config, Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


def run_spy(config: Config, call_id: str, phone: str, mode: str,
            ami: AmiRunner | None = None) -> dict[str, str]:
    """The CLI's work, apart from click (tests pass a fake `ami`). SpyError when refused."""
    from ivr.ami.client import AmiError
    from ivr.protection.service_settings import Actor
    from ivr.protection.store_audit import AuditStore
    from ivr.service import CallService
    from ivr.spy.checks import SpyError
    from ivr.spy.service import SpyService, refused
    from ivr.store import CallStore, Database

    who = Actor(name=getpass.getuser(), role="admin", origin="cli")
    operators = [o.endpoint for o in config.operators]

    async def go() -> dict[str, str]:
        async with Database(config.database_url) as db:
            audit = AuditStore(db)
            calls = CallService(CallStore(db), node=config.server.node_name)

            async def work(action: Any) -> dict[str, str]:
                service = SpyService(action, calls, audit, lambda: operators)
                return (await service.spy(call_id, phone, mode, who)).as_dict()

            try:
                return await (ami or _with_ami)(config, work)
            except AmiError as exc:  # no AMI at all: refused before the service ran
                error = SpyError(503, f"cannot reach Asterisk's AMI: {exc}")
                await refused(audit, who, call_id=call_id, phone=phone, mode=mode,
                              status=error.status, reason=error.message)
                raise error from exc

    return asyncio.run(go())


def register(main: click.Group) -> None:
    @main.command("spy")
    @config_option
    @click.argument("call_id")
    @click.option("--phone", required=True,
                  help="The supervisor's phone: an operator endpoint in ivr.toml (sv2001).")
    @click.option("--mode", type=click.Choice([m.value for m in Mode]), default="listen",
                  show_default=True, help="listen: hear both sides; whisper: the operator "
                  "hears you, the caller does not; barge: both hear you.")
    @click.option("--json", "as_json", is_flag=True, help="The result as JSON.")
    def spy(config_path: str, call_id: str, phone: str, mode: str, as_json: bool) -> None:
        """Ring PHONE into the live call CALL_ID (`ivr calls`: the id of a call in progress)
        to listen, whisper to the operator or barge in. Every use is in the audit log."""
        import logging

        from ivr.cli import _load
        from ivr.spy.checks import SpyError

        config = _load(config_path)
        # The use's log line (`event=spy ...`) on stderr, as the server logs it for the API;
        # only this logger, only while the command runs.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s "
                                               "%(message)s"))
        spy_log = logging.getLogger("ivr.spy")
        spy_log.addHandler(handler)
        spy_log.setLevel(logging.INFO)
        try:
            result = run_spy(config, call_id, phone, mode)
        except SpyError as exc:
            click.echo(f"refused: {exc.message}", err=True)
            sys.exit(2 if exc.status == 400 else 1)
        finally:
            spy_log.removeHandler(handler)
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False))
            return
        click.echo(f"{phone} is ringing: answered, it will {mode} on call {call_id} "
                   f"({result['channel']})")
