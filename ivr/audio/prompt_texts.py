"""Prompt texts: ``prompts/prompts.yaml`` read and checked, errors with file and line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import yaml

from ivr.audio.engines import resolve_engines

__all__ = ["LANGUAGES", "NAME_RE", "PromptFileError", "load_prompt_texts", "split_by_script"]

LANGUAGES: Final = ("ja", "en")
NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_KANJI_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


class PromptFileError(ValueError):
    """prompts.yaml is malformed; the message is ``<file>:<line>: <problem>``."""


def load_prompt_texts(
    path: str | os.PathLike[str], *, engines: Mapping[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Load and validate ``name -> {lang -> text}`` from a YAML file.

    Every prompt needs a non-empty string for each of :data:`LANGUAGES`.  Kanji are
    refused only for a language rendered with espeak-ng (``engines``, defaults from
    :data:`ivr.audio.engines.DEFAULT_ENGINES`): its Japanese voice reads only kana.
    """
    engine_for = resolve_engines(engines)
    p = Path(path)
    try:
        source = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PromptFileError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise PromptFileError(f"{p}: cannot read prompt file: {e.strerror or e}") from e
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise PromptFileError(f"{where}: invalid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise PromptFileError(f"{p}: invalid YAML: {e}") from e

    def fail(node: yaml.Node, problem: str) -> PromptFileError:
        return PromptFileError(f"{p}:{node.start_mark.line + 1}: {problem}")

    if root is None:
        raise PromptFileError(f"{p}: empty; expected a mapping of prompt name -> {{ja:, en:}}")
    if not isinstance(root, yaml.MappingNode):
        raise fail(root, f"top level must be a mapping of prompt names, got {_kind(root)}")

    texts: dict[str, dict[str, str]] = {}
    first_seen: dict[str, int] = {}
    for key_node, value_node in root.value:
        if not _is_str(key_node):
            raise fail(key_node, f"prompt name must be a string, got {_kind(key_node)}")
        name = key_node.value
        if not NAME_RE.match(name):
            raise fail(
                key_node,
                f"prompt name {name!r} must be lower-case letters, digits "
                "and '_' (it becomes a file name)",
            )
        if name in first_seen:
            raise fail(
                key_node, f"duplicate prompt {name!r} (first defined on line {first_seen[name]})"
            )
        first_seen[name] = key_node.start_mark.line + 1
        if not isinstance(value_node, yaml.MappingNode):
            raise fail(
                value_node,
                f"prompt {name!r} must be a mapping of language -> text, got {_kind(value_node)}",
            )
        by_lang: dict[str, str] = {}
        for lang_node, text_node in value_node.value:
            lang = lang_node.value if _is_str(lang_node) else None
            if lang not in LANGUAGES:
                raise fail(
                    lang_node,
                    f"prompt {name!r}: unknown language {lang_node.value!r} "
                    f"(expected one of: {', '.join(LANGUAGES)})",
                )
            if lang in by_lang:
                raise fail(lang_node, f"prompt {name!r}: duplicate language {lang!r}")
            if isinstance(text_node, yaml.ScalarNode) and text_node.tag.endswith(":null"):
                raise fail(text_node, f"prompt {name!r} [{lang}]: text is empty")
            if not _is_str(text_node):
                raise fail(
                    text_node,
                    f"prompt {name!r} [{lang}]: text must be a string, got {_kind(text_node)}",
                )
            text = " ".join(text_node.value.split())
            if not text:
                raise fail(text_node, f"prompt {name!r} [{lang}]: text is empty")
            # Japanese runs of every text (also in a bilingual en text) go to the ja engine.
            kanji = _KANJI_RE.findall(text) if engine_for.get("ja") == "espeak" else []
            if kanji:
                raise fail(
                    text_node,
                    f"prompt {name!r} [{lang}]: contains kanji "
                    f"{''.join(kanji)!r}; espeak-ng's Japanese voice reads "
                    "kanji as 'Chinese letter': write them in kana, or render "
                    "Japanese with Open JTalk ([prompts] engines = { ja = \"openjtalk\" })",
                )
            by_lang[lang] = text
        missing = [lang for lang in LANGUAGES if lang not in by_lang]
        if missing:
            raise fail(key_node, f"prompt {name!r} has no text for: {', '.join(missing)}")
        texts[name] = by_lang
    return texts


def _is_str(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    kind = node.tag.rsplit(":", 1)[-1]
    if kind == "null":
        return "nothing (null)"
    if kind == "str":
        return "a string"
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} ({node.value}); quote it"


def _script(ch: str) -> str | None:
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "ja"
    if 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return "ja"  # kanji
    if ch.isascii() and ch.isalpha():
        return "en"
    return None


def split_by_script(text: str, lang: str) -> list[tuple[str, str]]:
    """Split ``text`` into (language, text) runs of Japanese vs. Latin script.

    Neither engine reads the other language (Open JTalk and espeak-ng's Japanese voice
    spell Latin words letter by letter, its English voice says "Japanese letter" for
    kana), so a bilingual prompt such as language_select is spoken part by part.
    Digits and punctuation stay with the run before them; a text without letters
    keeps ``lang``.
    """
    runs: list[tuple[str, str]] = []
    current: str | None = None
    buf: list[str] = []
    for ch in text:
        script = _script(ch)
        if script is not None and current is not None and script != current:
            runs.append((current, "".join(buf)))
            buf = []
        if script is not None:
            current = script
        buf.append(ch)
    runs.append((current or lang, "".join(buf)))
    return [(run_lang, s.strip()) for run_lang, s in runs if s.strip()]
