"""What every FastAGI handler may use: explicit inputs, no globals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr.service import CallService


@dataclass(frozen=True)
class Prompts:
    """Rendered prompts on disk, as Asterisk names them (path without extension)."""

    folder: Path
    language: str

    def path(self, name: str, language: str | None = None) -> str:
        return str(self.folder / (language or self.language) / name)


@dataclass(frozen=True)
class HandlerContext:
    calls: CallService
    prompts: Prompts
    notice: str
    default_desk: str
