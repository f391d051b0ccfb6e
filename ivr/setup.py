"""Everything `ivr setup` (and `ivr run`) prepares before Asterisk or the controller start."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ivr.asterisk.render import AsteriskPaths, render_asterisk_config
from ivr.audio.prompts import load_prompt_texts, render_prompts
from ivr.config import Config
from ivr.secrets import Secrets, load_or_create

log = logging.getLogger("ivr.setup")


@dataclass(frozen=True)
class Prepared:
    secrets: Secrets
    asterisk: AsteriskPaths
    prompts_rendered: int


def prepare(config: Config) -> Prepared:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secrets = load_or_create(config.secrets_path, [o.endpoint for o in config.operators])
    texts = load_prompt_texts(config.path(config.prompts.texts))
    rendered = render_prompts(texts, config.prompts_dir, voices=dict(config.prompts.voices))
    paths = render_asterisk_config(config, secrets)
    log.info("event=setup_done data_dir=%s prompts=%d", config.data_dir, len(rendered))
    return Prepared(secrets=secrets, asterisk=paths, prompts_rendered=len(rendered))
