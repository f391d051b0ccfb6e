"""The `ivr` command: set up, run, and look at calls."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import click

from ivr.config import Config, ConfigError, load_config

DEFAULT_CONFIG = "ivr.toml"


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(2)


config_option = click.option(
    "--config", "-c", "config_path", default=DEFAULT_CONFIG, show_default=True,
    envvar="IVR_CONFIG", help="The server's TOML configuration file (env IVR_CONFIG).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Contact-centre IVR routing server on Asterisk 22.

    Every customer call is recorded from the first moment, hears the recording notice in
    full, and only then rings an operator's phone. Restrictions (block, rules), call-time
    limits, feature codes, live shouting protection and cool-downs protect the operators
    (protection.yaml, settings, audit); supervisors listen in, whisper or barge (spy).
    """
    # Nothing the server writes (database, secrets, rendered configuration) is for others.
    os.umask(0o027)


@main.command()
@config_option
def check(config_path: str) -> None:
    """Validate ivr.toml, the prompt texts and the journey (dialplan/); exit 2 if bad."""
    from ivr.setup import check_notices, load_current_journey

    config = _load(config_path)
    try:
        journey = load_current_journey(config)
        from ivr.cli_admin import check_protection
        check_protection(config, journey)
        # Before the first `ivr setup` nothing is rendered yet; afterwards the notices must be
        # there in every language, as `ivr run` requires.
        if config.prompts_dir.is_dir():
            check_notices(config, journey)
    except ValueError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(2)
    click.echo(f"{config_path}: ok; journey: {len(journey.entries)} entries, "
               f"{len(journey.menus)} menus, {len(journey.desks)} desks "
               f"({', '.join(journey.sources)})")


@main.command()
@config_option
def setup(config_path: str) -> None:
    """Generate secrets, render prompts and the Asterisk configuration (idempotent)."""
    from ivr.logs import setup_logging

    config = _load(config_path)
    setup_logging(config.server.log_level)
    prepared = _prepare_or_exit(config)
    click.echo(f"asterisk config: {prepared.asterisk.etc}")


def _prepare_or_exit(config: Config):
    from ivr.audio.prompts import PromptEngineError
    from ivr.cli_admin import check_protection
    from ivr.setup import prepare

    try:
        prepared = prepare(config)
        check_protection(config, prepared.journey)  # protection.yaml, before anything starts
        return prepared
    except PromptEngineError as exc:
        click.echo(f"set-up error: {exc}", err=True)
        sys.exit(3)
    except ValueError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(2)


@main.command()
@config_option
@click.option("--with-asterisk", is_flag=True,
              help="Also start Asterisk (deploy/asterisk.sh) and stop it on exit.")
def run(config_path: str, with_asterisk: bool) -> None:
    """Run the controller in the foreground (Ctrl-C stops it, and Asterisk if started here)."""
    from ivr.logs import setup_logging

    config = _load(config_path)
    setup_logging(config.server.log_level)
    prepared = _prepare_or_exit(config)
    try:
        asyncio.run(_serve(config, prepared, with_asterisk))
    except KeyboardInterrupt:
        pass


async def _serve(config: Config, prepared, with_asterisk: bool) -> None:
    from aiohttp import web

    from ivr.asterisk.process import AsteriskProcess
    from ivr.controller import Controller
    from ivr.loop_watch import freeze_startup_heap
    from ivr.web.app import create_app

    log = logging.getLogger("ivr")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()

    def reload() -> None:
        task = loop.create_task(controller.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)

    asterisk = AsteriskProcess(prepared.asterisk, config.data_dir) if with_asterisk else None
    if asterisk is not None:
        await asterisk.start()
    controller = Controller(config, prepared.secrets, prepared.journey)
    runner: web.AppRunner | None = None
    try:
        try:
            await controller.start()
            runner = web.AppRunner(create_app(controller), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, config.web.bind, config.web.port).start()
        except OSError as exc:
            # A port taken (another ivr running?) is the admin's to fix: say so, no traceback.
            raise click.ClickException(
                f"cannot start: {exc}; is another ivr running?"
            ) from exc
        config.pid_path.write_text(f"{os.getpid()}\n")
        frozen = freeze_startup_heap()
        log.info("event=ready frozen_objects=%d pid=%d agi=%s:%d web=http://%s:%d sip=%s:%d",
                 frozen, os.getpid(), config.agi.bind, controller.agi.port, config.web.bind,
                 config.web.port, config.asterisk.sip_bind, config.asterisk.sip_port)
        await stop.wait()
        log.info("event=stopping")
    finally:
        config.pid_path.unlink(missing_ok=True)
        if runner is not None:
            await runner.cleanup()
        await controller.stop()
        if asterisk is not None:
            await asterisk.stop()


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document (see README).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@click.option("--events", "with_events", is_flag=True, help="Include each call's timeline.")
def calls(config_path: str, as_json: bool, limit: int, with_events: bool) -> None:
    """Recent call records, newest first."""
    config = _load(config_path)
    records = asyncio.run(_recent(config, limit, with_events))
    if as_json:
        click.echo(json.dumps({"calls": records}, ensure_ascii=False, indent=2))
        return
    if not records:
        click.echo("no calls yet")
        return
    for r in records:
        click.echo(
            f"{r['started_at']}  {r['id']:<28} {r['caller'] or 'withheld':<16} "
            f"-> {r['did'] or '-':<14} {r['desk'] or '-':<10} {r['operator'] or '-':<10} "
            f"{r['outcome'] or 'in progress'}"
        )


async def _recent(config: Config, limit: int, with_events: bool) -> list[dict]:
    from ivr.service import CallService
    from ivr.store import CallStore, Database

    sqlite_file = config.database_file
    if sqlite_file is not None and not sqlite_file.exists():
        return []
    async with Database(config.database_url) as db:
        service = CallService(CallStore(db), node=config.server.node_name)
        out = []
        for record in await service.recent(limit):
            item = record.to_json()
            if with_events:
                item["events"] = await service.events(record.id)
            out.append(item)
        return out


@main.command()
@config_option
@click.option("--wait", default=15.0, show_default=True, help="Seconds to wait for the result.")
def reload(config_path: str, wait: float) -> None:
    """Apply changed dialplan/ files and protection.yaml to the running server.

    The files are checked here first; a bad journey is refused and the one in service stays.
    Calls in progress are not touched.
    """
    import time

    from ivr.setup import load_current_journey

    config = _load(config_path)
    try:
        from ivr.cli_admin import check_protection
        check_protection(config, load_current_journey(config))
    except ValueError as exc:
        click.echo(f"reload refused, the running journey stays:\n{exc}", err=True)
        sys.exit(2)
    try:
        pid = int(config.pid_path.read_text().strip())
        sent = time.time()
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        click.echo(f"no running server (no pid in {config.pid_path})", err=True)
        sys.exit(1)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            state = json.loads(config.journey_state_path.read_text())
        except (OSError, ValueError):
            state = {}
        if state.get("requested_at", 0) >= sent:
            if state.get("ok"):
                click.echo(f"reloaded: journey version {state.get('version')}")
                return
            click.echo("reload refused by the server:\n" + "\n".join(state.get("errors", [])),
                       err=True)
            sys.exit(2)
        time.sleep(0.1)
    click.echo("the server did not confirm the reload in time", err=True)
    sys.exit(1)


@main.group()
def operators() -> None:
    """Operators at desks: login, logout, pause, unpause, list (through AMI)."""


def _operator_call(config_path: str, work) -> None:
    from ivr.ami.client import AmiError, short_session
    from ivr.credentials import load_or_create
    from ivr.operators import OperatorError, OperatorService
    from ivr.service import CallService
    from ivr.setup import load_current_journey
    from ivr.store import CallStore, Database

    config = _load(config_path)
    try:
        journey = load_current_journey(config)
    except ValueError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(2)
    secrets = load_or_create(config.secrets_path, [o.endpoint for o in config.operators])

    async def run() -> None:
        async with short_session(port=config.asterisk.ami_port,
                                 username=config.asterisk.ami_user,
                                 secret=secrets.ami_secret) as ami, \
                Database(config.database_url) as db:
            calls = CallService(CallStore(db), node=config.server.node_name)
            service = OperatorService(ami.action, calls, journey,
                                      [o.endpoint for o in config.operators])
            await work(service)

    try:
        asyncio.run(run())
    except (OperatorError, AmiError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@operators.command("login")
@config_option
@click.argument("operator")
@click.option("--desk", "desks", multiple=True, help="Only these desks (default: all of the "
              "operator's desks).")
def operators_login(config_path: str, operator: str, desks: tuple[str, ...]) -> None:
    """Log OPERATOR in to their desks: their phone rings for those desks' callers."""
    async def work(service) -> None:
        done = await service.login(operator, list(desks) or None)
        click.echo(f"{operator} logged in to {', '.join(done)}")

    _operator_call(config_path, work)


@operators.command("logout")
@config_option
@click.argument("operator")
@click.option("--desk", "desks", multiple=True, help="Only these desks (default: all).")
def operators_logout(config_path: str, operator: str, desks: tuple[str, ...]) -> None:
    """Log OPERATOR out of their desks."""
    async def work(service) -> None:
        done = await service.logout(operator, list(desks) or None)
        click.echo(f"{operator} logged out of {', '.join(done)}")

    _operator_call(config_path, work)


@operators.command("pause")
@config_option
@click.argument("operator")
@click.option("--reason", default="", help="Shown to supervisors (break, training, ...).")
def operators_pause(config_path: str, operator: str, reason: str) -> None:
    """Pause OPERATOR on every desk (stays logged in, phone does not ring)."""
    async def work(service) -> None:
        await service.pause(operator, True, reason)
        click.echo(f"{operator} paused")

    _operator_call(config_path, work)


@operators.command("unpause")
@config_option
@click.argument("operator")
def operators_unpause(config_path: str, operator: str) -> None:
    """Unpause OPERATOR."""
    async def work(service) -> None:
        await service.pause(operator, False)
        click.echo(f"{operator} unpaused")

    _operator_call(config_path, work)


@operators.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def operators_list(config_path: str, as_json: bool) -> None:
    """Who is logged in to which desk, their phone's state and whether paused."""
    from dataclasses import asdict

    async def work(service) -> None:
        members = await service.members()
        if as_json:
            click.echo(json.dumps({"members": [asdict(m) for m in members]}, indent=2))
            return
        if not members:
            click.echo("nobody is logged in")
        for m in members:
            paused = f"paused ({m.pause_reason})" if m.paused else ""
            click.echo(f"{m.desk:<12} {m.operator:<10} {m.status:<12} calls={m.calls_taken} "
                       f"{paused}")

    _operator_call(config_path, work)


@main.group()
def prompts() -> None:
    """Prompts: replace one with your own recording."""


@prompts.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The prompt to replace, e.g. notice.")
@click.option("--lang", type=click.Choice(["ja", "en"]), required=True)
def prompts_import(config_path: str, file: Path, name: str, lang: str) -> None:
    """Replace prompt NAME in language LANG with FILE (WAV, FLAC, Ogg or MP3, any rate).

    The recording is converted to 8 kHz 16-bit mono and kept in <data_dir>/prompt-recordings;
    it takes precedence over the rendered text from the next call on. Refused, with the
    reason, if it is not audio, too long or silent.
    """
    from ivr.audio.prompts import load_prompt_texts
    from ivr.audio.wav import AudioError
    from ivr.prompt_store import import_recording

    config = _load(config_path)
    texts = load_prompt_texts(config.path(config.prompts.texts), engines=config.prompts.engines)
    if name not in texts:
        click.echo(f"error: no prompt named {name!r} in {config.prompts.texts}", err=True)
        sys.exit(2)
    try:
        result = import_recording(config, file, name, lang)
    except AudioError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)
    click.echo(f"imported {file} as {lang}/{name}: {result}")


@main.command("asterisk")
@config_option
@click.argument("command", nargs=-1, required=True)
def asterisk_cmd(config_path: str, command: tuple[str, ...]) -> None:
    """Run one Asterisk CLI command on this server's Asterisk, e.g. `ivr asterisk queue show`."""
    from ivr.asterisk.process import asterisk_cli
    from ivr.asterisk.render import AsteriskPaths

    config = _load(config_path)
    paths = AsteriskPaths(config.asterisk_dir)
    click.echo(asterisk_cli(paths, config.data_dir, " ".join(command)), nl=False)


from ivr.cli_admin import register  # noqa: E402  (admin subcommands: settings, tokens, audit)

register(main)
from ivr.cli_outbound import register as register_outbound  # noqa: E402  (ivr outbound pin)

register_outbound(main)

from ivr.cli_protection import register as register_protection  # noqa: E402

register_protection(main)
from ivr.cli_recordings import register as register_recordings  # noqa: E402

register_recordings(main)

from ivr.cli_spy import register as register_spy  # noqa: E402  (ivr spy: listen, whisper, barge)

register_spy(main)

if __name__ == "__main__":
    main()
