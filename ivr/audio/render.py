"""Child-process side of prompt rendering: drives pyttsx3 + espeak-ng and nothing else.

pyttsx3's espeak driver initialises libespeak-ng once per process, keeps global
callback state, swallows errors into notifications and can spin forever if a
callback raises.  :mod:`ivr.audio.engines` therefore runs this file as a separate
process (by path, so the child imports neither numpy nor the ``ivr`` package) and
can kill it on a timeout.

Protocol: a JSON job on stdin::

    {"voices": ["jpx/ja", ...], "jobs": [{"text": ..., "voice": ..., "rate": 160,
                                          "out": "/tmp/x/0.wav"}, ...]}

and one JSON object per line on stdout: ``{"event": "ready"}``, then
``{"event": "done", "index": i, "seconds": s}`` per job, or a single
``{"event": "error", "kind": "engine"|"voice"|"render", "message": ..., "index": i}``.

By hand: ``python -m ivr.audio.render --voices`` lists the installed voices.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_BAD_JOB = 1
EXIT_ENGINE = 2
EXIT_VOICE = 3
EXIT_RENDER = 4

# A RIFF/WAVE header alone is 44 bytes; anything not larger holds no audio.
_WAV_HEADER_BYTES = 44
# Per utterance; the parent's overall timeout is longer, so a stuck engine is
# reported from here with a precise message rather than by being killed.
ITEM_TIMEOUT_S = 20.0
# An utterance that came out empty (the race described in run()) is rendered again.
EMPTY_RETRIES = 2


class EngineUnavailable(Exception):
    pass


def _protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol; send everything else to stderr.

    The driver prints "Audio saved to ..." and espeak-ng may write to fd 1 from C,
    which would corrupt the JSON lines the parent parses.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(saved, "w", encoding="utf-8", buffering=1)


def _emit(out: TextIO, **event: Any) -> None:
    out.write(json.dumps(event) + "\n")


def init_engine() -> Any:
    try:
        import pyttsx3
    except ImportError as e:
        raise EngineUnavailable(
            f"pyttsx3 is not installed for {sys.executable}: pip install pyttsx3==2.99 ({e})"
        ) from e
    try:
        return pyttsx3.init("espeak")
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        if "eSpeak" in str(e) or isinstance(e, OSError):
            raise EngineUnavailable(
                "espeak-ng is not installed (pyttsx3 could not load libespeak-ng.so.1): "
                f"apt-get install espeak-ng  [{text}]"
            ) from e
        if "could not initialize espeak" in str(e):
            raise EngineUnavailable(
                "espeak-ng is installed but could not start, its voice data is probably "
                f"missing: apt-get install --reinstall espeak-ng-data  [{text}]"
            ) from e
        raise EngineUnavailable(f"pyttsx3 could not start its espeak driver: {text}") from e


def installed_voices(engine: Any) -> list[str]:
    return sorted({str(v.id).lower() for v in engine.getProperty("voices")})


def check_voice(voice: str, installed: list[str]) -> str | None:
    """Return a problem description, or None if ``voice`` can be used."""
    base = voice.split("+", 1)[0].lower()
    if base.startswith("mb/"):
        # pyttsx3 hard-codes 22,050 Hz in the WAV header, but MBROLA voices
        # produce 16 kHz, so the result would play back at the wrong pitch.
        return f"espeak-ng voice {voice!r} is an MBROLA voice, which pyttsx3 cannot save correctly"
    if base in installed:
        return None
    lang = base.rsplit("/", 1)[-1].split("-", 1)[0]
    similar = [v for v in installed if v.rsplit("/", 1)[-1].startswith(lang)]
    hint = (
        f"installed voices for {lang!r}: {', '.join(similar)}"
        if similar
        else (f"no voice for {lang!r} is installed: apt-get install espeak-ng-data")
    )
    return f"espeak-ng voice {voice!r} is not available ({hint})"


def _idle_waiter() -> Callable[[], object]:
    try:
        from pyttsx3.drivers import _espeak

        return _espeak.Synchronize
    except (ImportError, AttributeError):
        # A private module; should it move, a pause covers the same short window.
        return lambda: time.sleep(0.05)


def run(job: dict[str, Any], out: TextIO) -> int:
    try:
        engine = init_engine()
    except EngineUnavailable as e:
        _emit(out, event="error", kind="engine", message=str(e))
        return EXIT_ENGINE

    installed = installed_voices(engine)
    for voice in job.get("voices", []):
        problem = check_voice(voice, installed)
        if problem:
            _emit(out, event="error", kind="voice", message=problem)
            return EXIT_VOICE
    _emit(out, event="ready")

    errors: list[BaseException] = []

    def on_error(**kwargs: Any) -> None:
        errors.append(kwargs.get("exception") or RuntimeError("unknown pyttsx3 error"))

    # espeak_Synth() is asynchronous and pyttsx3's runAndWait() can return before
    # the utterance is done (its loop is told to end before synthesis starts), so
    # completion is taken from the notification sent after the file is written.
    finished = threading.Event()
    wait_idle = _idle_waiter()
    # pyttsx3 reports driver exceptions only through this notification.
    engine.connect("error", on_error)
    engine.connect("finished-utterance", lambda **_kw: finished.set())
    for index, item in enumerate(job.get("jobs", [])):
        started = time.monotonic()
        target = Path(item["out"])
        engine.setProperty("voice", item["voice"])
        engine.setProperty("rate", int(item["rate"]))
        engine.setProperty("volume", 1.0)
        # espeak-ng queues parameter changes on its synthesis thread.  If they are
        # still pending when runAndWait() starts, the driver takes espeak as busy,
        # cancels, and the new utterance comes out empty (about 1 run in 100; seen in
        # 3 set-ups in a row once, then not again): an empty result is rendered again.
        for attempt in range(1, EMPTY_RETRIES + 2):
            wait_idle()
            # One utterance per runAndWait: the espeak driver keeps only the last
            # save_to_file() queued before the loop runs.
            finished.clear()
            engine.save_to_file(item["text"], str(target))
            engine.runAndWait()
            if not finished.wait(ITEM_TIMEOUT_S):
                _emit(
                    out,
                    event="error",
                    kind="render",
                    index=index,
                    message=f"espeak-ng did not finish within {ITEM_TIMEOUT_S:g} s",
                )
                return EXIT_RENDER
            # The notification fires inside espeak-ng's callback, before the driver
            # has finished with that callback (it still ends its run loop).
            wait_idle()
            if errors:
                e = errors[0]
                _emit(
                    out, event="error", kind="render", index=index,
                    message=f"{type(e).__name__}: {e}",
                )
                return EXIT_RENDER
            if target.is_file() and target.stat().st_size > _WAV_HEADER_BYTES:
                break
            time.sleep(0.1 * attempt)
        else:
            _emit(
                out,
                event="error",
                kind="render",
                index=index,
                message=f"espeak-ng produced no audio ({EMPTY_RETRIES + 1} attempts)",
            )
            return EXIT_RENDER
        _emit(out, event="done", index=index, seconds=round(time.monotonic() - started, 4))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = _protocol_stream()
    try:
        return _main(args, out)
    finally:
        out.flush()


def _main(args: list[str], out: TextIO) -> int:
    if args == ["--voices"]:
        try:
            engine = init_engine()
        except EngineUnavailable as e:
            print(e, file=sys.stderr)
            return EXIT_ENGINE
        out.write("\n".join(installed_voices(engine)) + "\n")
        return EXIT_OK
    if args:
        print("usage: render.py [--voices] < job.json", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        _emit(out, event="error", kind="job", message=f"bad job on stdin: {e}")
        return EXIT_BAD_JOB
    return run(job, out)


if __name__ == "__main__":
    # Skip interpreter teardown: pyttsx3's espeak driver deliberately never
    # terminates espeak-ng because it asserts on close; don't let __del__ try.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(main())
