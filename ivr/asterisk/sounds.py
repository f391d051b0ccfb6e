"""Asterisk's own sounds in the callers' languages: queue announcements and numbers.

Asterisk plays ``queue-thereare``, ``digits/3`` and the like from
``<astdatadir>/sounds/<CHANNEL(language)>/``, falling back to English. The stock sounds
are English only, so ``prompts/asterisk-sounds.yaml`` holds their texts per language; they
are rendered with the prompt engine into ``<data_dir>/prompts/asterisk/<lang>/``.

Why a data folder of our own rather than queues.conf settings: app_queue's sound options
(``queue-thereare = /abs/path``) do follow the channel language for absolute paths
(``/abs/ja/path``), but the numbers come from ``ast_say_number``, which always reads
``digits/N`` under ``<astdatadir>/sounds``. So each instance gets its own
``astdatadir`` (``<data_dir>/asterisk/share``): symbolic links to the system's data folder
for everything (moh, documentation, the stock sounds), and ``sounds/<lang>`` linked to the
rendered set. Nothing is written into the system's (or the shared chroot's) Asterisk files,
and the links resolve the same inside the chroot, which mounts the data folder at its own
path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import yaml

from ivr.audio.prompt_texts import LANGUAGES

log = logging.getLogger("ivr.asterisk.sounds")

SOUNDS_SUBDIR: Final = "asterisk"  # under the prompts folder
# Where the Debian package (the chroot's and a system one) keeps Asterisk's data; a source
# build uses /var/lib/asterisk.
SYSTEM_DATA_DIRS: Final = ("/usr/share/asterisk", "/var/lib/asterisk")
# Linked when the system folder cannot be listed from here (a missing chroot).
_DATA_ENTRIES: Final = (
    "agi-bin", "documentation", "firmware", "images", "keys", "moh", "phoneprov",
    "rest-api", "static-http", "third-party",
)


class SoundFileError(ValueError):
    """asterisk-sounds.yaml is malformed; the message is ``<file>:<line>: <problem>``."""


def load_sound_texts(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """``lang -> {sound -> text}`` from the YAML file; errors name the file and line."""
    p = Path(path)
    try:
        root = yaml.compose(p.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as e:
        raise SoundFileError(f"{p}: cannot read: {e}") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise SoundFileError(f"{where}: invalid YAML: {e.problem or e.context}") from e

    def fail(node: yaml.Node, problem: str) -> SoundFileError:
        return SoundFileError(f"{p}:{node.start_mark.line + 1}: {problem}")

    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode):
        raise fail(root, "expected a mapping of language -> {sound: text}")
    out: dict[str, dict[str, str]] = {}
    for lang_node, sounds_node in root.value:
        lang = str(lang_node.value)
        if lang not in LANGUAGES:
            raise fail(lang_node, f"unknown language {lang!r} (expected {', '.join(LANGUAGES)})")
        if not isinstance(sounds_node, yaml.MappingNode):
            raise fail(sounds_node, f"{lang}: expected a mapping of sound -> text")
        sounds: dict[str, str] = {}
        for name_node, text_node in sounds_node.value:
            name = str(name_node.value)
            text = text_node.value if isinstance(text_node, yaml.ScalarNode) else None
            if not isinstance(text, str) or not text.strip() or text_node.tag.endswith(":null"):
                raise fail(text_node, f"{lang}.{name}: expected a text")
            if name in sounds:
                raise fail(name_node, f"{lang}.{name}: given twice")
            sounds[name] = " ".join(text.split())
        out[lang] = sounds
    return out


def system_data_dir(chroot: Path | None) -> str:
    """Asterisk's own data folder as Asterisk sees it (inside the chroot, if any)."""
    for candidate in SYSTEM_DATA_DIRS:
        for base in ([chroot] if chroot else []) + [Path("/")]:
            if (base / candidate.lstrip("/") / "sounds").is_dir():
                return candidate
    return SYSTEM_DATA_DIRS[0]


def link_share_dir(
    share: Path, sounds_dir: Path, languages: list[str], chroot: Path | None
) -> None:
    """Make ``share`` an astdatadir: the system's data by link, ``sounds/<lang>`` ours."""
    system = system_data_dir(chroot)
    visible = (chroot / system.lstrip("/")) if chroot and (chroot / system.lstrip("/")).is_dir() \
        else Path(system)
    entries = _listing(visible) or list(_DATA_ENTRIES)
    share.mkdir(parents=True, exist_ok=True)
    for name in entries:
        if name != "sounds":
            _link(share / name, f"{system}/{name}")
    sounds = share / "sounds"
    sounds.mkdir(exist_ok=True)
    targets = {name: f"{system}/sounds/{name}" for name in _listing(visible / "sounds")}
    if not targets:
        targets = {"en": f"{system}/sounds/en"}
    for lang in languages:
        targets[lang] = str(sounds_dir / lang)
    for name, target in targets.items():
        _link(sounds / name, target)
    for stale in sounds.iterdir():
        if stale.is_symlink() and stale.name not in targets:
            stale.unlink()


def _listing(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return []


def _link(path: Path, target: str) -> None:
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        log.warning("%s is a folder, not a link; leaving it", path)
        return
    path.symlink_to(target)


def rendered_languages(sounds_dir: Path) -> list[str]:
    return sorted(p.name for p in sounds_dir.iterdir() if p.is_dir()) if sounds_dir.is_dir() \
        else []


def sound_set_summary(texts: Mapping[str, Mapping[str, str]]) -> str:
    return ", ".join(f"{lang}: {len(s)}" for lang, s in sorted(texts.items()))
