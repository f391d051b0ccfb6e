"""`ivr recordings ...`: the recordings index from the command line (search, show) and the
evidence commands (verify, export, expire, hold, release: ivr/cli_evidence.py).

Like `ivr calls`, these work on the database (and the recordings folder) directly; the actor
in the audit log is the OS user, the origin `cli`.
"""

from __future__ import annotations

import click


@click.group()
def recordings() -> None:
    """Recorded calls: search, verify the hash chain, export evidence, retention."""


def register(main: click.Group) -> None:
    from ivr.cli_evidence import add_commands as add_evidence

    add_evidence(recordings)
    main.add_command(recordings)
