"""Text-to-speech engines, one per language, each run in a child process.

* ``openjtalk``: Open JTalk through ``pyopenjtalk-plus`` (its dictionary is bundled in the
  wheel, nothing is downloaded at run time). Reads ordinary Japanese (kanji and kana) with
  natural accents; 48 kHz output. Japanese only. Child: ``render_openjtalk.py``.
* ``espeak``: pyttsx3 + espeak-ng. Every language, but its Japanese voice reads only kana
  and sounds robotic. 22,050 Hz output. Child: ``render.py``. Also the fallback when the
  configured engine cannot start.

Both children speak the same line protocol (see ``render.py``), so the parent can kill a
stuck engine and keep whatever it finished before a failure.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_ENGINES",
    "ENGINES",
    "ENGINE_LABELS",
    "ENGINE_RATES",
    "ENGINE_SCRIPTS",
    "FALLBACK_ENGINE",
    "PromptEngineError",
    "probe_engine",
    "resolve_engines",
    "run_engine_partial",
]

log = logging.getLogger(__name__)

ENGINES: Final = ("openjtalk", "espeak")
DEFAULT_ENGINES: Final[Mapping[str, str]] = {"ja": "openjtalk", "en": "espeak"}
FALLBACK_ENGINE: Final = "espeak"
# Languages each engine can speak; Open JTalk reads Latin letters one by one.
ENGINE_LANGUAGES: Final[Mapping[str, tuple[str, ...]]] = {
    "openjtalk": ("ja",),
    "espeak": ("ja", "en"),
}
ENGINE_LABELS: Final[Mapping[str, str]] = {"openjtalk": "Open JTalk", "espeak": "espeak-ng"}
# The sample rate each engine writes (checked, then resampled to 8 kHz).
ENGINE_RATES: Final[Mapping[str, int]] = {"openjtalk": 48000, "espeak": 22050}
_HERE = Path(__file__).resolve().parent
ENGINE_SCRIPTS: dict[str, Path] = {
    "openjtalk": _HERE / "render_openjtalk.py",
    "espeak": _HERE / "render.py",
}
PROBE_TIMEOUT_S: Final = 30.0


class PromptEngineError(RuntimeError):
    """The TTS engine is missing, misconfigured, crashed or produced no speech.

    ``kind`` is ``engine`` when the engine could not start at all, ``voice`` for an unknown
    voice, ``render`` when it failed on a text."""

    def __init__(self, message: str, kind: str = "render") -> None:
        super().__init__(message)
        self.kind = kind


def resolve_engines(engines: Mapping[str, str] | None) -> dict[str, str]:
    """The engine per language: the defaults with ``engines`` on top, checked."""
    merged = {**DEFAULT_ENGINES, **(engines or {})}
    for lang, engine in merged.items():
        if engine not in ENGINES:
            raise ValueError(f"unknown TTS engine {engine!r} for {lang} (use {', '.join(ENGINES)})")
        if lang not in ENGINE_LANGUAGES[engine]:
            raise ValueError(f"{ENGINE_LABELS[engine]} cannot speak {lang!r}")
    return merged


def probe_engine(engine: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Start the engine's child without work: None if it is usable, else the problem."""
    _, failure = run_engine_partial(engine, {"voices": [], "jobs": []}, timeout_s, str)
    return None if failure is None else str(failure)


def run_engine_partial(
    engine: str, job: dict[str, Any], timeout: float, describe: Callable[[int], str]
) -> tuple[set[int], PromptEngineError | None]:
    """Run the engine's child on ``job``; return finished job indices and the failure."""
    cmd = [sys.executable, str(ENGINE_SCRIPTS[engine])]
    label = ENGINE_LABELS[engine]
    payload = json.dumps(job, ensure_ascii=False).encode("utf-8")
    timed_out = False
    try:
        proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=timeout, check=False)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        timed_out = True
        stdout, stderr, code = e.stdout or b"", e.stderr or b"", None
    except OSError as e:
        problem = f"cannot start the {label} child process {cmd}: {e}"
        return set(), PromptEngineError(problem, "engine")

    done: set[int] = set()
    error: dict[str, Any] | None = None
    ready = False
    for line in _as_text(stdout).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "done":
            done.add(int(event["index"]))
        elif event.get("event") == "ready":
            ready = True
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
    # A child that never said it was ready could not start its engine at all.
    kind = "render" if ready else "engine"
    if timed_out:
        return done, PromptEngineError(
            f"the TTS engine ({label}) did not finish within {timeout:g} s while {what}; "
            f"the child process was killed{tail}",
            kind,
        )
    if error is not None:
        message = str(error.get("message"))
        if error.get("kind") == "render":
            message = (
                f"rendering {describe(int(error.get('index', pending or 0)))} failed: {message}"
            )
        return done, PromptEngineError(message, str(error.get("kind") or kind))
    if code:
        return done, PromptEngineError(
            f"the TTS child process ({label}) {_exit_reason(code)} while {what}{tail}", kind
        )
    if pending is not None:
        return done, PromptEngineError(
            f"the TTS child process ({label}) stopped before {what}{tail}", kind
        )
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
    kept = [
        ln
        for ln in stderr.strip().splitlines()
        if not ln.startswith("Audio saved to ") and "ONNX Runtime" not in ln
    ]
    return ("; stderr: " + " | ".join(kept[-lines:])) if kept else ""
