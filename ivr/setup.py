"""Everything `ivr setup` (and `ivr run`) prepares before Asterisk or the controller start."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ivr.asterisk.render import AsteriskPaths, render_asterisk_config
from ivr.asterisk.sounds import SOUNDS_SUBDIR, load_sound_texts
from ivr.audio.prompts import load_prompt_texts, render_prompts, render_sound_set
from ivr.config import Config
from ivr.credentials import Secrets, load_or_create
from ivr.journey import Journey, JourneyError, journey_files, load_journey
from ivr.live.sounds import write_live_sounds
from ivr.notice import NoticeFilesError, check_notice_files, render_fallback_notice
from ivr.prompt_store import apply_recordings

log = logging.getLogger("ivr.setup")


@dataclass(frozen=True)
class Prepared:
    secrets: Secrets
    asterisk: AsteriskPaths
    journey: Journey
    prompts_rendered: int


def load_current_journey(config: Config) -> Journey:
    """The journey in dialplan/, checked against ivr.toml's operators, desk and prompts."""
    texts = load_prompt_texts(config.path(config.prompts.texts), engines=config.prompts.engines)
    journey = load_journey(
        journey_files(config.journey_dir),
        operators=[o.endpoint for o in config.operators],
        prompts=texts,
    )
    if config.desk.default not in journey.desks:
        raise JourneyError([f"desk.default: the fail-safe desk {config.desk.default!r} is not a "
                            f"desk of the journey in {config.journey_dir}"])
    return journey


def journey_version(journey: Journey) -> str:
    """The digest of the journey's files, taken when it was loaded."""
    return journey.version


def render_all_prompts(config: Config) -> int:
    """Render new or changed prompt texts and Asterisk's sounds in our languages (cached),
    then put admins' recordings in place."""
    engines = dict(config.prompts.engines)
    voices = dict(config.prompts.voices)
    texts = load_prompt_texts(config.path(config.prompts.texts), engines=engines)
    rendered = render_prompts(texts, config.prompts_dir, voices=voices, engines=engines)
    sounds_file = config.sounds_path
    if sounds_file.is_file():
        for lang, sounds in load_sound_texts(sounds_file).items():
            done = render_sound_set(
                sounds, lang, config.prompts_dir / SOUNDS_SUBDIR, voices, engines=engines
            )
            rendered.update({(name, f"asterisk/{lang}"): path for name, path in done.items()})
    else:
        log.warning("event=no_asterisk_sounds file=%s: queue announcements stay in English",
                    sounds_file)
    render_fallback_notice(texts, config.prompts_dir, config.prompts.notice, voices=voices,
                           engines=engines)
    apply_recordings(config)
    write_live_sounds(config.prompts_dir)
    return len(rendered)


def check_notices(config: Config, journey: Journey) -> None:
    """Refuse to serve calls when a notice a caller could need cannot be played."""
    problems = check_notice_files(journey, config.prompts_dir, config.prompts.notice,
                                  config.prompts.language)
    if problems:
        raise NoticeFilesError(problems)


def prepare(config: Config) -> Prepared:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secrets = load_or_create(config.secrets_path, [o.endpoint for o in config.operators])
    journey = load_current_journey(config)
    rendered = render_all_prompts(config)
    check_notices(config, journey)
    paths = render_asterisk_config(config, secrets, journey)
    log.info("event=setup_done data_dir=%s prompts=%d desks=%d menus=%d entries=%d",
             config.data_dir, rendered, len(journey.desks), len(journey.menus),
             len(journey.entries))
    return Prepared(secrets=secrets, asterisk=paths, journey=journey, prompts_rendered=rendered)
