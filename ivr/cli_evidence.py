"""`ivr recordings verify|export|expire|hold|release`: the evidence side of the recordings."""

from __future__ import annotations

import click


def add_commands(group: click.Group) -> None:
    """Attach this module's commands to `ivr recordings`."""
