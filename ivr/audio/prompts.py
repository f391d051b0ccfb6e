"""IVR prompt rendering (Open JTalk for Japanese, pyttsx3 + espeak-ng for English) and
admin recording import.

Every prompt ends up as ``<dir>/<lang>/<name>.wav``: 8 kHz, 16-bit, mono PCM, which
Asterisk plays without transcoding. The texts are read by :mod:`ivr.audio.prompt_texts`,
the engines run as child processes (:mod:`ivr.audio.engines`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from ivr.audio.engines import (
    ENGINE_LABELS,
    ENGINE_RATES,
    FALLBACK_ENGINE,
    PromptEngineError,
    probe_engine,
    resolve_engines,
    run_engine_partial,
)
from ivr.audio.manifest import load_manifest, locked, save_manifest
from ivr.audio.prompt_import import (
    EDGE_SILENCE_MS,
    PROMPT_RATE,
    TARGET_PEAK_DBFS,
    TRIM_THRESHOLD_DBFS,
    ImportResult,
    import_prompt,
)
from ivr.audio.prompt_texts import (
    LANGUAGES,
    NAME_RE,
    PromptFileError,
    load_prompt_texts,
    split_by_script,
)
from ivr.audio.wav import (
    AudioError,
    is_silent,
    normalize_peak,
    read_wav,
    resample,
    rms_dbfs,
    trim_silence,
    write_wav,
)

__all__ = [
    "DEFAULT_RATES_WPM",
    "DEFAULT_VOICES",
    "LANGUAGES",
    "PROMPT_RATE",
    "ImportResult",
    "PromptEngineError",
    "PromptFileError",
    "check_engine",
    "import_prompt",
    "load_prompt_texts",
    "render_prompts",
    "render_sound_set",
    "split_by_script",
]

log = logging.getLogger(__name__)

# espeak-ng voices and speeds (Open JTalk has one bundled voice, spoken at OPENJTALK_SPEED).
DEFAULT_VOICES: Final[Mapping[str, str]] = {"ja": "jpx/ja", "en": "gmw/en-us"}
# espeak-ng's default of 175 wpm is hard to follow through a narrow-band phone
# line; these are slower but still sound like a person reading, not dictation.
DEFAULT_RATES_WPM: Final[Mapping[str, int]] = {"ja": 170, "en": 150}
OPENJTALK_SPEED: Final = 1.0
# Edges of Asterisk's sound fragments, which it plays back to back.
SOUND_EDGE_MS: Final = 60.0
# Pause between the Japanese and the English part of a bilingual prompt.
LANGUAGE_GAP_MS: Final = 500.0
MANIFEST_NAME: Final = "manifest.json"
# Part of every cache key: bump it when the post-processing changes so
# existing renders are redone instead of silently kept.
PIPELINE_VERSION: Final = 3

# Asterisk sound names: "queue-thereare", "digits/3".
_SOUND_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)?$")


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Segment:
    lang: str
    engine: str
    voice: str
    rate: float  # words per minute for espeak-ng, a speed factor for Open JTalk
    text: str


@dataclass
class _Item:
    relname: str  # "notice", "digits/3"
    lang: str
    dest: Path
    key: str
    segments: list[_Segment]
    edge_ms: float = EDGE_SILENCE_MS
    job_refs: list[tuple[str, int]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.lang}/{self.relname}"


def _cache_key(segments: list[_Segment], edge_ms: float) -> str:
    material = {
        "pipeline": PIPELINE_VERSION,
        "rate": PROMPT_RATE,
        "peak_dbfs": TARGET_PEAK_DBFS,
        "segments": [[s.engine, s.voice, s.rate, s.text] for s in segments],
        "edge_ms": edge_ms,
    }
    blob = json.dumps(material, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class _Plan:
    """Which engine, voice and speed speak each language; unusable engines fall back."""

    def __init__(
        self,
        engines: Mapping[str, str] | None,
        voices: Mapping[str, str] | None,
        rates_wpm: Mapping[str, int] | None,
        edge_ms: float = EDGE_SILENCE_MS,
    ) -> None:
        self.edge_ms = edge_ms
        self.engine_for = resolve_engines(engines)
        self.voice_for = {**DEFAULT_VOICES, **(voices or {})}
        self.rate_for = {**DEFAULT_RATES_WPM, **(rates_wpm or {})}
        self._usable: dict[str, bool] = {}

    def segments(self, text: str, lang: str, *, fallback: bool = False) -> list[_Segment]:
        out = []
        for seg_lang, seg_text in split_by_script(text, lang):
            if seg_lang not in self.voice_for or seg_lang not in self.rate_for:
                raise ValueError(f"no voice/rate configured for {seg_lang!r}")
            engine = self.engine_for.get(seg_lang, FALLBACK_ENGINE)
            if fallback and not self.usable(engine, seg_lang):
                engine = FALLBACK_ENGINE
            if engine == "openjtalk":
                out.append(_Segment(seg_lang, engine, "default", OPENJTALK_SPEED, seg_text))
            else:
                voice, rate = self.voice_for[seg_lang], int(self.rate_for[seg_lang])
                out.append(_Segment(seg_lang, engine, voice, rate, seg_text))
        return out

    def usable(self, engine: str, lang: str) -> bool:
        """Probe a non-fallback engine once; warn and fall back if it cannot start."""
        if engine == FALLBACK_ENGINE:
            return True
        if engine not in self._usable:
            problem = probe_engine(engine)
            self._usable[engine] = problem is None
            if problem is not None:
                log.warning(
                    "prompts: %s is unavailable, rendering %s with %s instead "
                    "(which reads Japanese kana only): %s",
                    ENGINE_LABELS[engine], lang, ENGINE_LABELS[FALLBACK_ENGINE], problem,
                )
        return self._usable[engine]


def render_prompts(
    texts: Mapping[str, Mapping[str, str]],
    out_dir: str | os.PathLike[str],
    voices: Mapping[str, str] | None = None,
    *,
    engines: Mapping[str, str] | None = None,
    rates_wpm: Mapping[str, int] | None = None,
    timeout_s: float | None = None,
    force: bool = False,
) -> dict[tuple[str, str], Path]:
    """Render every (name, lang) text to ``out_dir/<lang>/<name>.wav``.

    ``engines`` chooses the TTS engine per language (default: Open JTalk for ja,
    espeak-ng for en); an engine that cannot start is replaced by espeak-ng with a
    warning. Outputs whose cache key (engine, voice, speed, text, pipeline) matches the
    manifest and whose file exists are left untouched. Each engine runs in a child
    process killed after ``timeout_s`` (default: generous, scaled by job count).
    Blocking; from async code run it in an executor.

    Raises :class:`PromptEngineError` if the engine is unusable or yields no speech.
    Prompts finished before a failure are kept and cached.
    """
    specs: list[tuple[Any, str, str, str]] = []
    for name, by_lang in texts.items():
        if not NAME_RE.match(name):
            raise ValueError(f"prompt name {name!r} is not a safe file name")
        for lang, text in by_lang.items():
            specs.append(((name, lang), lang, name, text))
    plan = _Plan(engines, voices, rates_wpm)
    return _render(specs, Path(out_dir), plan, timeout_s, force)


def render_sound_set(
    sounds: Mapping[str, str],
    lang: str,
    out_dir: str | os.PathLike[str],
    voices: Mapping[str, str] | None = None,
    *,
    engines: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Render Asterisk sounds (``{"queue-thereare": text, "digits/3": text}``) in one
    language to ``out_dir/<lang>/<sound>.wav``, cached like :func:`render_prompts`.

    Asterisk chains these fragments ("お客様は" "に" "番目に…"), so their edges of silence
    are shorter than a prompt's."""
    specs: list[tuple[Any, str, str, str]] = []
    for sound, text in sounds.items():
        if not _SOUND_RE.match(sound):
            raise ValueError(f"sound name {sound!r} is not a safe file name")
        specs.append((sound, lang, sound, text))
    plan = _Plan(engines, voices, None, SOUND_EDGE_MS)
    return _render(specs, Path(out_dir), plan, timeout_s, force)


def _render(
    specs: list[tuple[Any, str, str, str]],
    out: Path,
    plan: _Plan,
    timeout_s: float | None,
    force: bool,
) -> dict[Any, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results: dict[Any, Path] = {}
    with locked(out / ".render.lock"):
        manifest = load_manifest(out / MANIFEST_NAME)
        entries: dict[str, Any] = manifest["entries"]
        todo: list[_Item] = []
        for result_key, lang, relname, text in specs:
            dest = out / lang / f"{relname}.wav"
            results[result_key] = dest
            entry = entries.get(f"{lang}/{relname}.wav")
            try:
                segments = plan.segments(text, lang)
                if not segments:
                    raise ValueError("text is empty")
                key = _cache_key(segments, plan.edge_ms)
                cached = _is_cached(entry, key, dest, force)
                if not cached:
                    # Only now find out whether the preferred engines can start.
                    segments = plan.segments(text, lang, fallback=True)
                    key = _cache_key(segments, plan.edge_ms)
                    cached = _is_cached(entry, key, dest, force)
            except ValueError as e:
                raise ValueError(f"prompt {relname!r} [{lang}]: {e}") from e
            if not cached:
                todo.append(_Item(relname, lang, dest, key, segments, plan.edge_ms))

        if todo:
            try:
                _render_items(todo, entries, timeout_s)
            finally:
                save_manifest(out / MANIFEST_NAME, manifest)
        log.info("prompts in %s: %d rendered, %d cached", out, len(todo), len(results) - len(todo))
    return results


def _is_cached(entry: dict[str, Any] | None, key: str, dest: Path, force: bool) -> bool:
    return not force and entry is not None and entry.get("key") == key and dest.is_file()


def check_engine(
    voices: Mapping[str, str] | None = None,
    *,
    engines: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Start every configured engine once (espeak-ng with its voices); raise
    PromptEngineError if one is unusable."""
    wanted = sorted(set({**DEFAULT_VOICES, **(voices or {})}.values()))
    _, failure = run_engine_partial(
        FALLBACK_ENGINE, {"voices": wanted, "jobs": []}, timeout_s, str
    )
    if failure is not None:
        raise failure
    for engine in sorted(set(resolve_engines(engines).values()) - {FALLBACK_ENGINE}):
        problem = probe_engine(engine, timeout_s)
        if problem is not None:
            raise PromptEngineError(problem, "engine")


def _render_items(items: list[_Item], entries: dict[str, Any], timeout_s: float | None) -> None:
    with tempfile.TemporaryDirectory(prefix="ivr-tts-") as tmp:
        jobs: dict[str, list[dict[str, Any]]] = {}
        owner: dict[tuple[str, int], _Item] = {}
        for item in items:
            for seg in item.segments:
                engine_jobs = jobs.setdefault(seg.engine, [])
                ref = (seg.engine, len(engine_jobs))
                item.job_refs.append(ref)
                owner[ref] = item
                out = str(Path(tmp) / f"{seg.engine}-{len(engine_jobs)}.wav")
                if seg.engine == "openjtalk":
                    engine_jobs.append({"text": seg.text, "speed": seg.rate, "out": out})
                else:
                    engine_jobs.append(
                        {"text": seg.text, "voice": seg.voice, "rate": seg.rate, "out": out}
                    )

        done: set[tuple[str, int]] = set()
        failure: PromptEngineError | None = None
        for engine, engine_jobs in jobs.items():
            voices = sorted({j["voice"] for j in engine_jobs if "voice" in j})
            timeout = timeout_s if timeout_s is not None else 30.0 + 5.0 * len(engine_jobs)
            started = time.monotonic()
            finished, problem = run_engine_partial(
                engine,
                {"voices": voices, "jobs": engine_jobs},
                timeout,
                lambda i, e=engine: owner[(e, i)].label,  # type: ignore[misc]
            )
            log.info(
                "TTS %s rendered %d/%d parts in %.2f s",
                ENGINE_LABELS[engine], len(finished), len(engine_jobs), time.monotonic() - started,
            )
            done |= {(engine, i) for i in finished}
            failure = failure or problem

        # Finish whatever the children completed before any failure, so a retry
        # after fixing the problem does not redo them.
        for item in items:
            if not all(ref in done for ref in item.job_refs):
                continue
            parts = [Path(jobs[e][i]["out"]) for e, i in item.job_refs]
            duration = _finish(item, parts)
            entries[f"{item.lang}/{item.relname}.wav"] = {
                "key": item.key,
                "engines": [s.engine for s in item.segments],
                "voices": [s.voice for s in item.segments],
                "rates": [s.rate for s in item.segments],
                "text": " / ".join(s.text for s in item.segments),
                "duration_s": round(duration, 3),
                "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        if failure is not None:
            raise failure


def _finish(item: _Item, parts: list[Path]) -> float:
    """Turn the engines' parts into one trimmed, normalised 8 kHz prompt."""
    gap = np.zeros(round(PROMPT_RATE * LANGUAGE_GAP_MS / 1000.0), dtype=np.float32)
    edge = np.zeros(round(PROMPT_RATE * item.edge_ms / 1000.0), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for seg, part in zip(item.segments, parts, strict=True):
        label = ENGINE_LABELS[seg.engine]
        try:
            audio = read_wav(part)
        except AudioError as e:
            raise PromptEngineError(f"{item.label}: {label} wrote an unreadable file: {e}") from e
        if audio.rate != ENGINE_RATES[seg.engine]:
            log.warning(
                "%s: %s wrote %d Hz, expected %d",
                item.label, label, audio.rate, ENGINE_RATES[seg.engine],
            )
        x = resample(audio.samples, audio.rate, PROMPT_RATE)
        # 100 ms: a one-word sound (digits/1, いち) is short, a click is shorter.
        if is_silent(x, PROMPT_RATE, min_active_ms=100.0):
            raise PromptEngineError(
                f"{item.label}: {label} voice {seg.voice!r} produced no audible speech for "
                f"{seg.text!r} (level {rms_dbfs(x):.1f} dBFS); check the voice and text"
            )
        # Normalise before trimming so the trim threshold is relative to the speech;
        # trim tight because the engine's output has no noise floor to preserve.
        x = trim_silence(
            normalize_peak(x, TARGET_PEAK_DBFS), PROMPT_RATE, TRIM_THRESHOLD_DBFS, keep_ms=0.0
        )
        pieces.append(gap if pieces else edge)
        pieces.append(x)
    pieces.append(edge)
    samples = normalize_peak(np.concatenate(pieces), TARGET_PEAK_DBFS)
    item.dest.parent.mkdir(parents=True, exist_ok=True)
    write_wav(item.dest, samples, PROMPT_RATE)
    return len(samples) / PROMPT_RATE


