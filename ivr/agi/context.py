"""What every FastAGI handler may use: explicit inputs, no globals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ivr.journey import Journey
from ivr.notice import fallback_path
from ivr.protection.service_outbound import OutboundService
from ivr.protection.settings import ProtectionSettings
from ivr.service import CallService


@dataclass(frozen=True)
class Prompts:
    """Rendered prompts on disk, as Asterisk names them (path without extension)."""

    folder: Path
    language: str

    def path(self, name: str, language: str | None = None) -> str:
        return str(self.folder / (language or self.language) / name)

    @property
    def fallback_notice(self) -> str:
        """The bilingual notice rendered at set-up (ivr/notice.py), played when a notice
        cannot be."""
        return str(fallback_path(self.folder).with_suffix(""))


@dataclass(frozen=True)
class HandlerContext:
    calls: CallService
    prompts: Prompts
    notice: str
    default_desk: str
    # The journey in service now; a reload swaps it, calls in progress keep theirs.
    journey: Callable[[], Journey | None] = lambda: None
    # The journey a call started with, by the version in its IVR_JOURNEY channel variable
    # (the current one when that version is no longer kept).
    journey_for: Callable[[str | None], Journey | None] | None = None
    # The protection settings in force now (the store's newest version).
    protection: Callable[[], ProtectionSettings] = ProtectionSettings
    # Outbound restrictions: the supervisor PIN and its audit (ivr/agi/outbound.py).
    outbound: OutboundService | None = None

    def call_journey(self, version: str | None) -> Journey | None:
        if self.journey_for is not None:
            return self.journey_for(version)
        return self.journey()
