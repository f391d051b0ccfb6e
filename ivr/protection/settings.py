"""The protection settings as one validated document: restrictions, limits, feature codes,
live protection, cool-down.

The file (`[protection] file` in ivr.toml, protection.yaml in the example) is the starting
point; changes made through the CLI or the API are new versions of the same document in the
store (table settings_versions), so every node applies the newest one to its next call.
Each section is its own model in its own module; this one puts them together and checks
what only the whole can check (desks and entries that exist in the journey).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ivr.cooldown.settings import CooldownSettings
from ivr.live.settings import LiveSettings
from ivr.protection.settings_features import FeatureSettings
from ivr.protection.settings_inbound import InboundSettings
from ivr.protection.settings_limits import LimitSettings
from ivr.protection.settings_outbound import OutboundSettings
from ivr.yaml_lines import LocatedYaml, YamlFileError, read_yaml_mapping

SECTIONS = ("numbers", "inbound", "outbound", "limits", "features", "live", "cooldown")


class SettingsError(ValueError):
    """One or more problems, each naming the field (and the file's line when from a file)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class NumberSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The country whose national form numbers are kept in (see ivr/policy/callerid.py).
    country_code: str = Field(default="81", pattern=r"^[1-9][0-9]{0,2}$")


class ProtectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    numbers: NumberSettings = NumberSettings()
    inbound: InboundSettings = InboundSettings()
    outbound: OutboundSettings = OutboundSettings()
    limits: LimitSettings = LimitSettings()
    features: FeatureSettings = FeatureSettings()
    live: LiveSettings = LiveSettings()
    cooldown: CooldownSettings = CooldownSettings()

    def document(self) -> dict[str, Any]:
        """The JSON document kept in the store and returned by the API."""
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        text = json.dumps(self.document(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def describe(error: dict[str, Any], located: LocatedYaml | None = None,
             source: str = "") -> str:
    loc = tuple(error["loc"])
    field = ".".join(str(p) for p in loc) or "(document)"
    where = source
    if located is not None:
        where = f"{source}:{located.line(loc) or 1}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {field}: {message}" if where else f"{field}: {message}"


def parse_settings(data: Any, *, desks: set[str] | None = None, entries: set[str] | None = None,
                   operators: set[str] | None = None, located: LocatedYaml | None = None,
                   source: str = "") -> ProtectionSettings:
    """Validate a document (from the file, the store or an API payload); SettingsError lists
    every problem. With the journey's desks/entries and the operators given, names that do
    not exist there are problems too."""
    try:
        settings = ProtectionSettings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError([describe(e, located, source) for e in exc.errors()]) from exc
    problems = _unknown_names(settings, desks, entries, operators)
    if problems:
        raise SettingsError([f"{source}: {p}" if source else p for p in problems])
    return settings


def _unknown_names(settings: ProtectionSettings, desks: set[str] | None,
                   entries: set[str] | None, operators: set[str] | None) -> list[str]:
    problems: list[str] = []
    for section in (settings.inbound, settings.outbound, settings.limits, settings.features,
                    settings.live, settings.cooldown):
        check = getattr(section, "unknown_names", None)
        if check is not None:
            problems += check(desks=desks, entries=entries, operators=operators)
    return problems


def load_settings_file(path: Path, **known: set[str] | None) -> ProtectionSettings:
    """protection.yaml; a missing file is the defaults (no restriction beyond emergency
    numbers always allowed)."""
    if not path.exists():
        return ProtectionSettings()
    try:
        data, located = read_yaml_mapping(path)
    except YamlFileError as exc:
        raise SettingsError([str(exc)]) from exc
    return parse_settings(data, located=located, source=str(path), **known)
