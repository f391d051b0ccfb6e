"""The `outbound` section of the protection settings (protection.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OutboundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def unknown_names(self, *, desks: set[str] | None, entries: set[str] | None,
                      operators: set[str] | None) -> list[str]:
        """Desks, entries and operators this section names that do not exist."""
        return []
