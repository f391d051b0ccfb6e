"""A Japanese caller waiting in a queue hears Asterisk's position announcement in Japanese:
the sounds rendered from prompts/asterisk-sounds.yaml, found in the caller's heard audio
(the MixMonitor -tx leg) by cross-correlation, and not Asterisk's stock English sound; an
English caller still hears the stock English one."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ivr.audio.wav import read_wav
from tests.e2e.conftest import make_stack
from tests.e2e.journey_helpers import by_caller, seconds
from tests.e2e.recordings import call_recording
from tests.e2e.stack import example_journey
from tests.e2e.xcorr import find

JA_LINE = "0501230001"
EN_LINE = "0501230002"
RING_TIMEOUT = 40  # the operator's phone rings this long, unanswered


def journey() -> dict:
    data = example_journey(open_now=True)
    data["desks"]["waiting"] = {
        "members": ["op1001"], "ring_timeout": RING_TIMEOUT, "max_wait": 90,
        "announce_position": True, "announce_frequency": 30,
        "periodic_announce": None, "overflow": {"hangup": True},
    }
    data["entries"]["ja_queue"] = {
        "numbers": [JA_LINE], "language": "ja", "greeting": None,
        "start": {"desk": "waiting"},
    }
    data["entries"]["en_queue"] = {
        "numbers": [EN_LINE], "language": "en", "greeting": None,
        "start": {"desk": "waiting"},
    }
    return data


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = make_stack(tmp_path_factory, prompt_cache, ["op1001", "op1002", "op1003", "sv2001"],
                       journey=journey())
    stack.start_controller()
    stack.login("op1001", "waiting")
    stack.operator("op1001", scenario="operator_noanswer.xml")  # rings, never answers
    yield stack
    stack.close()


def match(signal: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """The best normalised cross-correlation of ``ref`` (from its first sound, not its
    silent edge) in ``signal``, and where it starts in seconds."""
    r = np.asarray(ref, dtype=np.float64)
    found = find(signal, r[np.flatnonzero(np.abs(r) > 1e-4)[0]:])
    return found.peak, found.start


def heard_in_position_two(stack, line: str, first: str, second: str) -> np.ndarray:
    """The first caller rings the operator (who never answers); the second waits behind it
    in position 2 and is told so at once. Returns what the second caller heard."""
    wait_at = seconds(stack, "notice") + 1.0
    ringing = stack.caller(first, line, hangup_after=wait_at + 30)
    time.sleep(3.0)
    waiting = stack.caller(second, line, hangup_after=wait_at + 20)
    assert waiting.wait(120).returncode == 0
    assert ringing.wait(120).returncode == 0
    record = by_caller(stack, second)
    assert record["outcome"] == "abandoned_in_queue", record
    assert record["desk"] == "waiting"
    done = stack.call_record(lambda c: c["id"] == record["id"] and c["recording_sha256"],
                             timeout=30, what="recording finalised")
    return call_recording(done).heard.samples


def stock_english(stack, sound: str) -> np.ndarray:
    """Asterisk's own English sound, decoded by Asterisk (res_convert, loaded for this)."""
    # Asterisk runs as its own user: it writes the decoded file into its own spool folder.
    target = stack.data / "asterisk" / "spool" / f"en-{sound}.wav"
    if not target.exists():
        stack.cli("module load res_convert.so")
        stock = stack.data / "asterisk" / "share" / "sounds" / "en" / f"{sound}.gsm"
        out = stack.cli(f"file convert {stock} {target}")
        assert target.exists(), out
    return read_wav(target).samples


def test_japanese_caller_hears_position_in_japanese(stack):
    heard = heard_in_position_two(stack, JA_LINE, "0344100001", "0344100002")
    sounds = stack.data / "prompts" / "asterisk" / "ja"
    found = {}
    for name in ("queue-thereare", "digits/2", "queue-callswaiting", "queue-thankyou"):
        found[name] = match(heard, read_wav(sounds / f"{name}.wav").samples)
    print("ja", {k: (round(p, 3), round(t, 2)) for k, (p, t) in found.items()})
    for name, (peak, _) in found.items():
        assert peak > 0.9, (name, found)
    # In Japanese order: ただいま、お客様は / に / 番目にお待ち… / thanks.
    at = [found[n][1] for n in ("queue-thereare", "digits/2", "queue-callswaiting",
                                "queue-thankyou")]
    assert at == sorted(at), found
    assert at[0] >= seconds(stack, "notice") - 0.5  # after the notice, in the queue
    # Asterisk's stock English sound is not what the caller heard.
    peak_en, _ = match(heard, stock_english(stack, "queue-thereare"))
    print("en queue-thereare in the ja caller's audio", round(peak_en, 3))
    assert peak_en < 0.5


def test_english_caller_keeps_asterisks_english_sounds(stack):
    heard = heard_in_position_two(stack, EN_LINE, "0344100003", "0344100004")
    peak_en, _ = match(heard, stock_english(stack, "queue-thereare"))
    ja = stack.data / "prompts" / "asterisk" / "ja" / "queue-thereare.wav"
    peak_ja, _ = match(heard, read_wav(ja).samples)
    print("en caller: en", round(peak_en, 3), "ja", round(peak_ja, 3))
    assert peak_en > 0.9
    assert peak_ja < 0.5
