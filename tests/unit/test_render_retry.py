"""The espeak-ng child (ivr/audio/render.py): an utterance that comes out empty (the driver
taking espeak as busy and cancelling it) is rendered again, and reported after the retries."""

from __future__ import annotations

import io
import json

from ivr.audio import render


class FakeEngine:
    """Writes `results` in turn: a header alone (no audio) or a header and samples."""

    def __init__(self, results: list[int]):
        self.results = results
        self.callbacks: dict[str, object] = {}
        self.target = ""
        self.renders = 0

    def connect(self, name, callback):
        self.callbacks[name] = callback

    def setProperty(self, _name, _value):  # pyttsx3's names
        pass

    def save_to_file(self, _text, path):
        self.target = path

    def runAndWait(self):
        size = self.results[min(self.renders, len(self.results) - 1)]
        self.renders += 1
        with open(self.target, "wb") as f:
            f.write(b"\0" * size)
        self.callbacks["finished-utterance"]()


def render_with(monkeypatch, tmp_path, results: list[int]) -> tuple[int, list[dict], FakeEngine]:
    engine = FakeEngine(results)
    monkeypatch.setattr(render, "init_engine", lambda: engine)
    monkeypatch.setattr(render, "installed_voices", lambda _e: ["gmw/en"])
    monkeypatch.setattr(render, "_idle_waiter", lambda: (lambda: None))
    monkeypatch.setattr(render.time, "sleep", lambda _s: None)
    out = io.StringIO()
    job = {"voices": ["gmw/en"], "jobs": [{"out": str(tmp_path / "a.wav"), "text": "Hello",
                                           "voice": "gmw/en", "rate": 150}]}
    code = render.run(job, out)
    return code, [json.loads(x) for x in out.getvalue().splitlines()], engine


def test_an_empty_utterance_is_rendered_again(monkeypatch, tmp_path):
    code, events, engine = render_with(monkeypatch, tmp_path, [44, 44, 1044])
    assert code == render.EXIT_OK and engine.renders == 3
    assert events[-1]["event"] == "done", events
    assert (tmp_path / "a.wav").stat().st_size == 1044


def test_always_empty_is_an_error_naming_the_attempts(monkeypatch, tmp_path):
    code, events, engine = render_with(monkeypatch, tmp_path, [44])
    assert code == render.EXIT_RENDER and engine.renders == render.EMPTY_RETRIES + 1
    assert events[-1]["message"] == "espeak-ng produced no audio (3 attempts)", events
