"""Child-process side of prompt rendering with Open JTalk (``pyopenjtalk-plus``).

Run by path from :mod:`ivr.audio.engines`, like ``render.py`` and with the same protocol:
a JSON job on stdin (``{"jobs": [{"text": ..., "out": "/tmp/x/0.wav", "speed": 1.0}]}``),
one JSON event per line on stdout (``ready``, ``done`` per job, or one ``error``).
Writes 16-bit mono WAV at the engine's own rate (48 kHz); the parent resamples.

pyopenjtalk-plus ships Open JTalk's dictionary inside its wheel; nothing is downloaded.
By hand: ``python ivr/audio/render_openjtalk.py --g2p 録音`` prints the reading.
"""

from __future__ import annotations

import json
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_BAD_JOB = 1
EXIT_ENGINE = 2
EXIT_RENDER = 4


def _protocol_stream() -> TextIO:
    """Keep the real stdout for the protocol; anything else printed goes to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(saved, "w", encoding="utf-8", buffering=1)


def _emit(out: TextIO, **event: Any) -> None:
    out.write(json.dumps(event, ensure_ascii=False) + "\n")


def _load() -> Any:
    import pyopenjtalk

    return pyopenjtalk


def run(job: dict[str, Any], out: TextIO) -> int:
    try:
        pyopenjtalk = _load()
        import numpy as np
    except Exception as e:  # ImportError, or a broken native extension
        _emit(
            out,
            event="error",
            kind="engine",
            message=(
                f"Open JTalk is not usable for {sys.executable}: pip install "
                f"pyopenjtalk-plus (see pyproject.toml) [{type(e).__name__}: {e}]"
            ),
        )
        return EXIT_ENGINE
    _emit(out, event="ready")
    for index, item in enumerate(job.get("jobs", [])):
        started = time.monotonic()
        try:
            samples, rate = pyopenjtalk.tts(item["text"], speed=float(item.get("speed", 1.0)))
            pcm = np.clip(np.asarray(samples, dtype=np.float64), -32768, 32767).astype("<i2")
            if pcm.size == 0:
                raise RuntimeError("no audio")
            target = Path(item["out"])
            with wave.open(str(target), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(int(rate))
                w.writeframes(pcm.tobytes())
        except Exception as e:
            _emit(
                out, event="error", kind="render", index=index, message=f"{type(e).__name__}: {e}"
            )
            return EXIT_RENDER
        _emit(out, event="done", index=index, seconds=round(time.monotonic() - started, 4))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = _protocol_stream()
    try:
        if args[:1] == ["--g2p"]:
            out.write(_load().g2p(" ".join(args[1:]), kana=True) + "\n")
            return EXIT_OK
        if args:
            print("usage: render_openjtalk.py [--g2p TEXT] < job.json", file=sys.stderr)
            return EXIT_BAD_JOB
        try:
            job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            _emit(out, event="error", kind="job", message=f"bad job on stdin: {e}")
            return EXIT_BAD_JOB
        return run(job, out)
    finally:
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
