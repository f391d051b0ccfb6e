"""The recording notice on disk: the fallback notice, and the start-up check that every
notice a caller can hear exists, in every language the journey offers.

A call whose notice file is missing still hears a notice: the controller and the fail-safe
dialplan play the fallback notice instead (`<prompts_dir>/fallback/notice.wav`, Japanese and
English in one file, rendered by `ivr setup` from the `prompts.notice` texts). The server
refuses to start when any of these files is missing or unusable.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from ivr.audio.prompts import render_prompts
from ivr.audio.wav import AudioError, read_wav_info
from ivr.journey import Journey

FALLBACK_DIR = "fallback"
FALLBACK_FILE = Path(FALLBACK_DIR) / "notice.wav"
LANGUAGE_ORDER = ("ja", "en")


class NoticeFilesError(ValueError):
    """Notice files a caller could need are missing or unusable; one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def fallback_path(prompts_dir: Path) -> Path:
    return prompts_dir / FALLBACK_FILE


def ordered(languages: Iterable[str], first: str | None = None) -> list[str]:
    """Languages in a stable order: `first`, then Japanese, English, then any other."""
    langs = set(languages)
    head = [first] if first in langs else []
    rest = [x for x in LANGUAGE_ORDER if x in langs and x not in head]
    return head + rest + sorted(langs - set(head) - set(rest))


def notice_prompts(journey: Journey | None, default_notice: str) -> set[str]:
    """Every prompt that serves as a recording notice: entries', desks' and the default."""
    names = {default_notice}
    if journey is not None:
        names.update(entry.notice for entry in journey.entries.values())
        names.update(desk.notice for desk in journey.desks.values() if desk.notice)
    return names


def journey_languages(journey: Journey | None, default_language: str) -> set[str]:
    """Every language a caller can be in: entries' own, their notices', and routes'."""
    langs = {default_language}
    if journey is None:
        return langs
    for entry in journey.entries.values():
        langs.add(entry.language)
        langs.update(entry.notice_langs)
        langs.update(r.language for r in (entry.start, entry.closed) if r.language)
    for menu in journey.menus.values():
        langs.update(r.language for r in (*menu.choices.values(), menu.default) if r.language)
    return langs


def failsafe_notice_languages(journey: Journey | None, default_language: str) -> list[str]:
    """The languages the fail-safe dialplan plays the notice in when it does not know the
    entry (controller down): every entry's notice languages."""
    langs = {default_language}
    if journey is not None:
        for entry in journey.entries.values():
            langs.update(entry.notice_langs)
    return ordered(langs, default_language)


def _problem(path: Path) -> str | None:
    if not path.is_file():
        return "no such file" if not path.exists() else "not a regular file"
    try:
        info = read_wav_info(path)
    except AudioError as exc:
        return str(exc).removeprefix(f"{path}: ")
    if info.frames == 0:
        return "no audio in the file"
    return None


def check_notice_files(
    journey: Journey | None, prompts_dir: Path, default_notice: str, default_language: str
) -> list[str]:
    """One line per notice file missing or unusable: prompt, language, path and problem."""
    problems = []
    for prompt in sorted(notice_prompts(journey, default_notice)):
        for lang in ordered(journey_languages(journey, default_language), default_language):
            path = prompts_dir / lang / f"{prompt}.wav"
            problem = _problem(path)
            if problem:
                problems.append(f"recording notice {prompt!r} [{lang}] cannot be played: "
                                f"{path}: {problem}")
    fallback = fallback_path(prompts_dir)
    problem = _problem(fallback)
    if problem:
        problems.append(f"fallback recording notice [ja+en] cannot be played: {fallback}: "
                        f"{problem} (`ivr setup` renders it)")
    return problems


def render_fallback_notice(
    texts: Mapping[str, Mapping[str, str]],
    prompts_dir: Path,
    notice: str,
    voices: Mapping[str, str] | None = None,
    engines: Mapping[str, str] | None = None,
) -> Path:
    """Render the notice's Japanese and English texts, one after the other, into the fallback
    file (cached like every prompt). The text is used, never an imported recording, so the
    fallback does not depend on the files it stands in for."""
    by_lang = texts[notice]
    text = "  ".join(by_lang[lang] for lang in ordered(by_lang))
    # The Japanese voice speaks the kana runs and the English voice the Latin ones.
    rendered = render_prompts({"notice": {"ja": text}}, prompts_dir / FALLBACK_DIR / "render",
                              voices=voices, engines=engines)
    source = rendered[("notice", "ja")]
    target = fallback_path(prompts_dir)
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
    return target
