"""IVR prompt texts, TTS rendering (pyttsx3 + espeak-ng) and admin recording import.

Every prompt ends up as ``<dir>/<lang>/<name>.wav``: 8 kHz, 16-bit, mono PCM,
which Asterisk plays without transcoding.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

from ivr.audio.wav import (
    AudioError,
    frame_levels_dbfs,
    is_silent,
    normalize_peak,
    peak_dbfs,
    read_wav,
    read_wav_info,
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
]

log = logging.getLogger(__name__)

LANGUAGES: Final = ("ja", "en")
DEFAULT_VOICES: Final[Mapping[str, str]] = {"ja": "jpx/ja", "en": "gmw/en-us"}
# espeak-ng's default of 175 wpm is hard to follow through a narrow-band phone
# line; these are slower but still sound like a person reading, not dictation.
DEFAULT_RATES_WPM: Final[Mapping[str, int]] = {"ja": 170, "en": 150}
PROMPT_RATE: Final = 8000
TARGET_PEAK_DBFS: Final = -3.0
# Rendered prompts start and end with exactly this much digital silence:
# espeak-ng starts speaking in its first 10 ms (abrupt on a phone) and appends a
# long pause, and a fixed margin keeps chained prompts evenly spaced.
EDGE_SILENCE_MS: Final = 150.0
# Pause between the Japanese and the English part of a bilingual prompt.
LANGUAGE_GAP_MS: Final = 500.0
TRIM_THRESHOLD_DBFS: Final = -50.0
MANIFEST_NAME: Final = "manifest.json"
# Part of every cache key: bump it when the post-processing changes so
# existing renders are redone instead of silently kept.
PIPELINE_VERSION: Final = 2

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_KANJI_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_RENDER_SCRIPT = Path(__file__).with_name("render.py")
_ENGINE_RATE = 22050  # what pyttsx3's espeak driver always writes


class PromptFileError(ValueError):
    """prompts.yaml is malformed; the message is ``<file>:<line>: <problem>``."""


class PromptEngineError(RuntimeError):
    """The TTS engine is missing, misconfigured, crashed or produced no speech."""


# --------------------------------------------------------------------------- prompt texts


def load_prompt_texts(path: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Load and validate ``name -> {lang -> text}`` from a YAML file.

    Every prompt needs a non-empty string for each of :data:`LANGUAGES`.  Kanji are
    rejected because espeak-ng's Japanese voice only reads kana.
    """
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
        if not _NAME_RE.match(name):
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
            kanji = _KANJI_RE.findall(text)
            if kanji:
                raise fail(
                    text_node,
                    f"prompt {name!r} [{lang}]: contains kanji "
                    f"{''.join(kanji)!r}; espeak-ng's Japanese voice reads "
                    "kanji as 'Chinese letter', write them in kana",
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


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Segment:
    lang: str
    voice: str
    rate_wpm: int
    text: str


@dataclass
class _Item:
    name: str
    lang: str
    dest: Path
    key: str
    segments: list[_Segment]
    job_indices: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.lang}/{self.name}"


def _script(ch: str) -> str | None:
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "ja"
    if ch.isascii() and ch.isalpha():
        return "en"
    return None


def split_by_script(text: str, lang: str) -> list[tuple[str, str]]:
    """Split ``text`` into (language, text) runs of kana vs. Latin script.

    espeak-ng's Japanese voice spells Latin words letter by letter and its
    English voice says "Japanese letter" for kana, so a bilingual prompt such as
    language_select has to be spoken part by part.  Digits and punctuation stay
    with the run before them; a text without letters keeps ``lang``.
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


def _cache_key(segments: list[_Segment]) -> str:
    material = {
        "pipeline": PIPELINE_VERSION,
        "rate": PROMPT_RATE,
        "peak_dbfs": TARGET_PEAK_DBFS,
        "segments": [[s.voice, s.rate_wpm, s.text] for s in segments],
    }
    blob = json.dumps(material, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def render_prompts(
    texts: Mapping[str, Mapping[str, str]],
    out_dir: str | os.PathLike[str],
    voices: Mapping[str, str] | None = None,
    *,
    rates_wpm: Mapping[str, int] | None = None,
    timeout_s: float | None = None,
    force: bool = False,
) -> dict[tuple[str, str], Path]:
    """Render every (name, lang) text to ``out_dir/<lang>/<name>.wav``.

    Outputs whose cache key (text, voice, rate, pipeline) matches the manifest and
    whose file exists are left untouched.  The TTS engine runs in a child process
    that is killed after ``timeout_s`` (default: generous, scaled by job count).
    Blocking; from async code run it in an executor.

    Raises :class:`PromptEngineError` if espeak-ng/pyttsx3 is unusable or yields
    no speech.  Prompts finished before a failure are kept and cached.
    """
    voice_for = {**DEFAULT_VOICES, **(voices or {})}
    rate_for = {**DEFAULT_RATES_WPM, **(rates_wpm or {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    results: dict[tuple[str, str], Path] = {}
    with _locked(out / ".render.lock"):
        manifest = _load_manifest(out / MANIFEST_NAME)
        entries: dict[str, Any] = manifest["entries"]
        todo: list[_Item] = []
        for name, by_lang in texts.items():
            if not _NAME_RE.match(name):
                raise ValueError(f"prompt name {name!r} is not a safe file name")
            for lang, text in by_lang.items():
                if lang not in voice_for or lang not in rate_for:
                    raise ValueError(f"prompt {name!r}: no voice/rate configured for {lang!r}")
                segments = [
                    _Segment(seg_lang, voice_for[seg_lang], int(rate_for[seg_lang]), seg_text)
                    for seg_lang, seg_text in split_by_script(text, lang)
                ]
                if not segments:
                    raise ValueError(f"prompt {name!r} [{lang}]: text is empty")
                dest = out / lang / f"{name}.wav"
                results[(name, lang)] = dest
                key = _cache_key(segments)
                entry = entries.get(f"{lang}/{name}.wav")
                if not force and entry and entry.get("key") == key and dest.is_file():
                    continue
                todo.append(_Item(name, lang, dest, key, segments))

        if todo:
            try:
                _render_items(todo, entries, timeout_s)
            finally:
                _save_manifest(out / MANIFEST_NAME, manifest)
        log.info("prompts in %s: %d rendered, %d cached", out, len(todo), len(results) - len(todo))
    return results


def check_engine(voices: Mapping[str, str] | None = None, *, timeout_s: float = 30.0) -> None:
    """Start the TTS engine once and check the voices; raise PromptEngineError if unusable."""
    wanted = sorted(set({**DEFAULT_VOICES, **(voices or {})}.values()))
    _run_engine({"voices": wanted, "jobs": []}, timeout_s, describe=str)


def _render_items(items: list[_Item], entries: dict[str, Any], timeout_s: float | None) -> None:
    with tempfile.TemporaryDirectory(prefix="ivr-tts-") as tmp:
        jobs: list[dict[str, Any]] = []
        owner: list[_Item] = []
        for item in items:
            for seg in item.segments:
                item.job_indices.append(len(jobs))
                jobs.append(
                    {
                        "text": seg.text,
                        "voice": seg.voice,
                        "rate": seg.rate_wpm,
                        "out": str(Path(tmp) / f"{len(jobs)}.wav"),
                    }
                )
                owner.append(item)
        voices = sorted({seg.voice for item in items for seg in item.segments})
        timeout = timeout_s if timeout_s is not None else 30.0 + 5.0 * len(jobs)

        started = time.monotonic()
        done, failure = _run_engine_partial(
            {"voices": voices, "jobs": jobs}, timeout, lambda i: owner[i].label
        )
        log.debug(
            "TTS child rendered %d/%d parts in %.2f s",
            len(done),
            len(jobs),
            time.monotonic() - started,
        )

        # Finish whatever the child completed before any failure, so a retry
        # after fixing the problem does not redo them.
        for item in items:
            if not all(i in done for i in item.job_indices):
                break
            parts = [Path(jobs[i]["out"]) for i in item.job_indices]
            duration = _finish(item, parts)
            entries[f"{item.lang}/{item.name}.wav"] = {
                "key": item.key,
                "voices": [s.voice for s in item.segments],
                "rates_wpm": [s.rate_wpm for s in item.segments],
                "text": " / ".join(s.text for s in item.segments),
                "duration_s": round(duration, 3),
                "rendered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        if failure is not None:
            raise failure


def _finish(item: _Item, parts: list[Path]) -> float:
    """Turn the engine's 22 kHz parts into one trimmed, normalised 8 kHz prompt."""
    gap = np.zeros(round(PROMPT_RATE * LANGUAGE_GAP_MS / 1000.0), dtype=np.float32)
    edge = np.zeros(round(PROMPT_RATE * EDGE_SILENCE_MS / 1000.0), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for seg, part in zip(item.segments, parts, strict=True):
        try:
            audio = read_wav(part)
        except AudioError as e:
            raise PromptEngineError(f"{item.label}: espeak-ng wrote an unreadable file: {e}") from e
        if audio.rate != _ENGINE_RATE:
            log.warning("%s: engine wrote %d Hz, expected %d", item.label, audio.rate, _ENGINE_RATE)
        x = resample(audio.samples, audio.rate, PROMPT_RATE)
        if is_silent(x, PROMPT_RATE):
            raise PromptEngineError(
                f"{item.label}: espeak-ng voice {seg.voice!r} produced no audible speech for "
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


def _run_engine(job: dict[str, Any], timeout: float, describe: Callable[[int], str]) -> set[int]:
    done, failure = _run_engine_partial(job, timeout, describe)
    if failure is not None:
        raise failure
    return done


def _run_engine_partial(
    job: dict[str, Any], timeout: float, describe: Callable[[int], str]
) -> tuple[set[int], PromptEngineError | None]:
    """Run render.py on ``job``; return finished job indices and the failure, if any."""
    cmd = [sys.executable, str(_RENDER_SCRIPT)]
    payload = json.dumps(job, ensure_ascii=False).encode("utf-8")
    timed_out = False
    try:
        proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=timeout, check=False)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        timed_out = True
        stdout, stderr, code = e.stdout or b"", e.stderr or b"", None
    except OSError as e:
        return set(), PromptEngineError(f"cannot start the TTS child process {cmd}: {e}")

    done: set[int] = set()
    error: dict[str, Any] | None = None
    for line in _as_text(stdout).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "done":
            done.add(int(event["index"]))
        elif event.get("event") == "error":
            error = event

    pending = next((i for i in range(len(job["jobs"])) if i not in done), None)
    if not job["jobs"]:
        what = "starting the engine"
    elif pending is None:
        what = "exiting after the last prompt"
    else:
        what = f"rendering {describe(pending)}"
    tail = _tail(_as_text(stderr))
    if timed_out:
        return done, PromptEngineError(
            f"the TTS engine did not finish within {timeout:g} s while {what}; "
            f"the child process was killed{tail}"
        )
    if error is not None:
        message = str(error.get("message"))
        if error.get("kind") == "render":
            message = (
                f"rendering {describe(int(error.get('index', pending or 0)))} failed: {message}"
            )
        return done, PromptEngineError(message)
    if code:
        return done, PromptEngineError(
            f"the TTS child process {_exit_reason(code)} while {what}{tail}"
        )
    if pending is not None:
        return done, PromptEngineError(f"the TTS child process stopped before {what}{tail}")
    return done, None


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _as_text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data or ""


def _tail(stderr: str, lines: int = 5) -> str:
    kept = [ln for ln in stderr.strip().splitlines() if not ln.startswith("Audio saved to ")]
    return ("; stderr: " + " | ".join(kept[-lines:])) if kept else ""


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialise renders into one directory (e.g. web admin and startup at once)."""
    with lock_path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("entries"), dict):
            return data
        log.warning("%s: unexpected manifest layout; re-rendering everything", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable manifest (%s); re-rendering everything", path, e)
    return {"version": 1, "entries": {}}


def _save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, ensure_ascii=False, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    path: Path
    duration_s: float
    source_format: str  # e.g. "24-bit PCM, stereo, 48000 Hz"
    source_duration_s: float
    source_rms_dbfs: float
    source_peak_dbfs: float
    gain_db: float  # applied to reach TARGET_PEAK_DBFS


def import_prompt(
    src_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    *,
    max_seconds: float = 180.0,
    silence_threshold_dbfs: float = -45.0,
) -> ImportResult:
    """Convert an admin's WAV recording to an 8 kHz 16-bit mono prompt.

    Leading/trailing silence is trimmed to EDGE_SILENCE_MS and the peak is set to
    TARGET_PEAK_DBFS so recordings match the level of rendered prompts.  Raises
    :class:`AudioError` saying why a file is refused.
    """
    src = Path(src_path)
    info = read_wav_info(src)  # refuses non-WAV, unsupported, truncated and empty files
    # From the header, so an hour-long upload is refused before decoding it.
    if info.duration > max_seconds:
        raise AudioError(f"{src}: too long: {info.duration:.1f} s, the limit is {max_seconds:g} s")
    audio = read_wav(src)
    x = resample(audio.samples, audio.rate, PROMPT_RATE)
    if is_silent(x, PROMPT_RATE, silence_threshold_dbfs):
        loudest = float(np.max(frame_levels_dbfs(x, PROMPT_RATE, 10.0), initial=-120.0))
        raise AudioError(
            f"{src}: silent: overall level {rms_dbfs(x):.1f} dBFS, loudest 10 ms "
            f"{loudest:.1f} dBFS; need at least 0.2 s above {silence_threshold_dbfs:g} dBFS"
        )
    source_peak = peak_dbfs(x)
    y = normalize_peak(x, TARGET_PEAK_DBFS)
    y = trim_silence(y, PROMPT_RATE, TRIM_THRESHOLD_DBFS, EDGE_SILENCE_MS)
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_wav(dest, y, PROMPT_RATE)
    return ImportResult(
        path=dest,
        duration_s=len(y) / PROMPT_RATE,
        source_format=info.description,
        source_duration_s=info.duration,
        source_rms_dbfs=rms_dbfs(audio.samples),
        source_peak_dbfs=source_peak,
        gain_db=TARGET_PEAK_DBFS - source_peak,
    )
