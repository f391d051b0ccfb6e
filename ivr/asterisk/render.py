"""Render the project's asterisk/ templates into the data folder's Asterisk configuration."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ivr.asterisk.account import Account, asterisk_account, secure_data_dir
from ivr.asterisk.sounds import SOUNDS_SUBDIR, link_share_dir, rendered_languages
from ivr.config import Config
from ivr.credentials import Secrets
from ivr.journey import Desk, Journey
from ivr.notice import failsafe_notice_languages, fallback_path
from ivr.protection.rules_limits import talk_limit
from ivr.protection.settings import ProtectionSettings, load_settings_file

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "asterisk"


@dataclass(frozen=True)
class AsteriskPaths:
    """Where one Asterisk instance keeps its files; all inside the data folder."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def share(self) -> Path:
        """This instance's astdatadir: links to the system's, plus our sounds."""
        return self.root / "share"

    @property
    def main_conf(self) -> Path:
        return self.etc / "asterisk.conf"

    @property
    def control_socket(self) -> Path:
        return self.run / "asterisk.ctl"

    @property
    def cdr_csv(self) -> Path:
        return self.log / "cdr-custom" / "ivr-cdr.csv"

    def make(self) -> None:
        # spool/monitor: ChanSpy's r() path is relative to it, so it must exist.
        for folder in (self.etc, self.run, self.log / "cdr-custom", self.spool / "monitor",
                       self.lib):
            folder.mkdir(parents=True, exist_ok=True)


def desk_context(journey: Journey | None, default_desk: str) -> list[dict]:
    desks = dict(journey.desks) if journey else {}
    if default_desk not in desks:
        desks[default_desk] = Desk()
    return [{"name": name, **desk.model_dump()} for name, desk in sorted(desks.items())]


class RenderError(ValueError):
    """A value would change the structure of a rendered Asterisk file."""


_LINE_BREAK = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(value: Any) -> Any:
    """Every value put into a template: never a line break (a new line could add a setting
    or a [section]); config.py and journey.py refuse such values with the key's name first."""
    if value is None:
        return ""
    text = str(value)
    if _LINE_BREAK.search(text):
        raise RenderError(f"refusing to write {text[:60]!r} into Asterisk's configuration: "
                          "it contains a line break or control character")
    return value


def template_context(config: Config, secrets: Secrets, journey: Journey | None = None,
                     account: Account | None = None,
                     protection: ProtectionSettings | None = None) -> dict:
    """`protection`: the settings in force (the store's newest version, from the controller);
    protection.yaml when not given (set-up, before any version is stored)."""
    if protection is None:
        protection = load_settings_file(config.protection_file)
    paths = AsteriskPaths(config.asterisk_dir)
    desk = config.desk
    return {
        "etc_dir": paths.etc,
        "run_dir": paths.run,
        "log_dir": paths.log,
        "spool_dir": paths.spool,
        "lib_dir": paths.lib,
        "share_dir": paths.share,
        "node_name": config.server.node_name,
        # Asterisk drops to its own user right after start (None: stays root, see account.py).
        "run_user": account.user if account else None,
        "run_group": account.group if account else None,
        # Asterisk counts every channel running dialplan: a customer call is three
        # (the caller, and the two halves of its recorder, extensions.conf [ivr-recorder]).
        "max_calls": 1200,
        "sip_bind": config.asterisk.sip_bind,
        "sip_port": config.asterisk.sip_port,
        "rtp_start": config.asterisk.rtp_start,
        "rtp_end": config.asterisk.rtp_end,
        "ami_port": config.asterisk.ami_port,
        "ami_user": config.asterisk.ami_user,
        "ami_secret": secrets.ami_secret,
        "trunk_match": config.trunk.match,
        "trunk_codecs": config.trunk.codecs,
        "trunk_outbound_uri": config.trunk.outbound_uri,
        "trunk_outbound_callerid": config.trunk.outbound_callerid,
        # Dialled by the outbound fail-safe (controller down) and nothing else.
        "emergency_numbers": "&".join(protection.outbound.emergency),
        "operators": [
            {
                "endpoint": op.endpoint,
                "name": op.name,
                "contact": op.contact,
                "password": secrets.operator_passwords[op.endpoint],
            }
            for op in config.operators
        ],
        "agi_host": config.agi.bind,
        "agi_port": config.agi.port,
        "recordings_dir": config.recordings_dir,
        "recordings_from_monitor": os.path.relpath(config.recordings_dir,
                                                   paths.spool / "monitor"),
        "prompts_dir": config.prompts_dir,
        "language": config.prompts.language,
        "notice": config.prompts.notice,
        "notice_languages": "&".join(failsafe_notice_languages(journey,
                                                               config.prompts.language)),
        "notice_guard": 0.5,
        "fallback_notice": fallback_path(config.prompts_dir).with_suffix(""),
        "failsafe": config.prompts.failsafe,
        "default_desk": desk.default,
        # The fail-safe path waits at the default desk as long as the desk itself says.
        "default_wait": (journey.desks[desk.default] if journey and desk.default in
                         journey.desks else Desk()).max_wait,
        "split_legs": config.recording.split_legs,
        "recording_timeline": config.recording.timeline,
        "desks": desk_context(journey, desk.default),
        # Operator feature codes ([applicationmap]), from the settings in force.
        "feature_codes": protection.features.applicationmap(),
        **limit_globals(config, protection),
    }


def asterisk_protection(config: Config, protection: ProtectionSettings) -> tuple:
    """What of the protection settings is written into Asterisk's files: when this changes,
    the controller renders again and reloads features and the dialplan."""
    return (tuple(protection.outbound.emergency),
            tuple(tuple(sorted(entry.items())) for entry in protection.features.applicationmap()),
            tuple(sorted(limit_globals(config, protection).items())))


def limit_globals(config: Config, protection: ProtectionSettings | None = None) -> dict:
    """The fail-safe's call-time limits: the default desk's (protection settings, limits);
    the controller sets each call's own. A bad file fails the render (SettingsError)."""
    if protection is None:
        protection = load_settings_file(config.protection_file)
    limits = protection.limits
    chosen = talk_limit(limits, config.desk.default)
    return {
        "talk_limit_ms": chosen.limit_ms,
        "talk_warning_ms": chosen.warning_ms,
        "talk_warn_operator": chosen.warn_operator,
        "talk_warning_prompt": chosen.warning_prompt,
        "talk_closing_prompt": chosen.closing_prompt,
        "max_ivr_seconds": f"{limits.max_ivr_time:g}" if limits.max_ivr_time else 0,
    }


def render_asterisk_config(
    config: Config, secrets: Secrets, journey: Journey | None = None,
    protection: ProtectionSettings | None = None,
) -> AsteriskPaths:
    """Write every template (0640, group asterisk: it holds secrets), then set the data
    folder's owners and modes (account.py)."""
    paths = AsteriskPaths(config.asterisk_dir)
    paths.make()
    sounds = config.prompts_dir / SOUNDS_SUBDIR
    link_share_dir(paths.share, sounds, rendered_languages(sounds), config.asterisk.chroot)
    config.recordings_dir.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_one_line,
    )
    account = asterisk_account(config)
    context = template_context(config, secrets, journey, account, protection)
    # Every file rendered before any is written: a refused value leaves the old set whole.
    texts = {template.name.removesuffix(".j2"): env.get_template(template.name).render(context)
             for template in sorted(TEMPLATE_DIR.glob("*.conf.j2"))}
    for name, text in texts.items():
        target = paths.etc / name
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    secure_data_dir(config, account)
    return paths
