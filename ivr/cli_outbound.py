"""`ivr outbound pin`: set the supervisor PIN that unlocks one restricted outbound call.

The PIN is read from the terminal (hidden, asked twice) or one line of stdin (`--stdin`, for
scripts); it is never printed, logged or passed on the command line (where `ps` and shell
history would show it). Only its salted hash is kept (ivr/protection/service_outbound.py).
"""

from __future__ import annotations

import sys

import click

from ivr.cli_admin import _cli_actor, _with_services, config_option


@click.group("outbound")
def outbound_group() -> None:
    """Outbound restrictions (発信規制): the supervisor PIN."""


@outbound_group.command("pin")
@config_option
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the PIN from one line of stdin.")
def outbound_pin(config_path: str, from_stdin: bool) -> None:
    """Set (or replace) the supervisor PIN: 4-12 digits."""
    from ivr.cli import _load
    from ivr.protection.service_outbound import PinError, set_pin

    config = _load(config_path)
    if from_stdin:
        pin = sys.stdin.readline().strip()
    else:
        pin = click.prompt("New supervisor PIN", hide_input=True, confirmation_prompt=True)
    try:
        set_pin(config.secrets_path, pin)
    except PinError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2)
    actor = _cli_actor()

    async def audit(services) -> None:
        await services.audit.record(actor=actor.name, role=actor.role, action="outbound.pin_set",
                                    target="outbound.pin", after={"set": True},
                                    origin=actor.origin)

    _with_services(config_path, audit)
    click.echo(f"supervisor PIN set (hash in {config.secrets_path})")


def register(main: click.Group) -> None:
    main.add_command(outbound_group)
