"""The `ivr` command: set up, run, and look at calls."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

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
    full, and only then rings an operator's phone.
    """


@main.command()
@config_option
def check(config_path: str) -> None:
    """Validate the configuration and the prompt texts; exit 2 with the problems if bad."""
    from ivr.audio.prompts import load_prompt_texts

    config = _load(config_path)
    try:
        load_prompt_texts(config.path(config.prompts.texts))
    except ValueError as exc:
        click.echo(f"configuration error:\n{exc}", err=True)
        sys.exit(2)
    click.echo(f"{config_path}: ok")


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
    from ivr.setup import prepare

    try:
        return prepare(config)
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
    from ivr.web.app import create_app

    log = logging.getLogger("ivr")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    asterisk = AsteriskProcess(prepared.asterisk, config.data_dir) if with_asterisk else None
    if asterisk is not None:
        await asterisk.start()
    controller = Controller(config, prepared.secrets)
    runner: web.AppRunner | None = None
    try:
        await controller.start()
        runner = web.AppRunner(create_app(controller), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, config.web.bind, config.web.port).start()
        log.info("event=ready pid=%d agi=%s:%d web=http://%s:%d sip=%s:%d",
                 os.getpid(), config.agi.bind, controller.agi.port, config.web.bind,
                 config.web.port, config.asterisk.sip_bind, config.asterisk.sip_port)
        await stop.wait()
        log.info("event=stopping")
    finally:
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

    if not config.database_path.exists():
        return []
    async with Database(config.database_path) as db:
        service = CallService(CallStore(db), node=config.server.node_name)
        out = []
        for record in await service.recent(limit):
            item = record.to_json()
            if with_events:
                item["events"] = await service.events(record.id)
            out.append(item)
        return out


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


if __name__ == "__main__":
    main()
