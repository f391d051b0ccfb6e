"""The recording notice, proved from outside the controller: found by cross-correlation in
what the caller heard (the right side of the call's stereo archive), placed on the wall
clock through the caller's SIPp trace, and compared with the operator phone's own log of its INVITE.

Mapping the tx leg to the wall clock: the leg starts when MixMonitor starts, right after
Asterisk answers; with the caller sending RTP throughout, the leg is never compressed, so its
start lies at `BYE - leg length` on the caller's clock. That offset from the caller's 200 OK
is measured on every call (and compared with the controller's own greeting event), and the
notice's end is placed at `200 OK + max(offset, 0) + end in the leg`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.wav import frame_levels_dbfs, read_wav
from tests.e2e.conftest import support_desk_stack
from tests.e2e.journey_helpers import seconds, ts
from tests.e2e.recordings import call_recording
from tests.e2e.stack import SippPeer, Stack
from tests.e2e.xcorr import Match, answered_at, bye_at, find, find_in_pieces

DID = "0399000000"  # the example's 'other' entry: greeting, notice (ja), support desk
MIN_PEAK = 0.9  # a strong, unambiguous match: the prompt as the caller heard it
MIN_LEAD = 0.3  # ... well above the best correlation anywhere else


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prompt_cache):
    stack = support_desk_stack(tmp_path_factory, prompt_cache)
    yield stack
    stack.close()


def template(stack: Stack, rel: str, source: Path | None = None) -> np.ndarray:
    audio = read_wav(source or stack.data / "prompts" / f"{rel}.wav")
    assert audio.rate == 8000
    return audio.samples


@contextmanager
def removed(stack: Stack, *rels: str) -> Iterator[dict[str, Path]]:
    """Prompt files taken away (a prompt deleted by hand), put back afterwards."""
    kept = {}
    for rel in rels:
        path = stack.data / "prompts" / f"{rel}.wav"
        kept[rel] = path.with_suffix(".wav.kept")
        shutil.move(path, kept[rel])
    try:
        yield kept
    finally:
        for rel, path in kept.items():
            shutil.move(path, stack.data / "prompts" / f"{rel}.wav")


def call(stack: Stack, number: str, hangup_after: float | None) -> tuple[SippPeer, dict]:
    caller = stack.caller(number, DID, hangup_after=hangup_after)
    result = caller.wait(120)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    record = stack.call_record(lambda c: c["caller"] == number and c["recording_sha256"],
                               timeout=60, what=f"finalised record of {number}")
    return caller, record


def tone_onset(tx: np.ndarray, after: float, rate: int = 8000) -> float | None:
    """First 100 ms after `after` s dominated by the operator phone's 1 kHz tone."""
    step = rate // 10
    for i in range(int(after * rate), len(tx) - step, step):
        spectrum = np.abs(np.fft.rfft(tx[i:i + step])) ** 2
        freqs = np.fft.rfftfreq(step, 1 / rate)
        total = spectrum.sum()
        if total > 0 and spectrum[np.abs(freqs - 1000) < 50].sum() / total > 0.5:
            return i / rate
    return None


def heard(stack: Stack, caller: SippPeer, record: dict, templates: dict[str, np.ndarray],
          label: str) -> dict:
    """Find each template in the tx leg, in order; return the figures (printed for -s)."""
    tx = call_recording(record).heard.samples
    matches: dict[str, Match] = {}
    for name, samples in templates.items():
        match = find(tx, samples)
        if match.peak < MIN_PEAK:
            # Under load the recorder may slip a 20 ms frame (measured: up to ~0.1 s drift
            # over a 14 s prompt), which spoils one long correlation: then piece by piece.
            at, peak, _ = find_in_pieces(tx, samples, MIN_PEAK)
            match = Match(at, at + len(samples) / 8000, peak, 0.0)
        else:
            assert match.peak - match.runner_up >= MIN_LEAD, (label, name, match)
        matches[name] = match
    order = [m.start for m in matches.values()]
    assert order == sorted(order), (label, matches)
    answer, bye = answered_at(caller), bye_at(caller)
    offset = bye - len(tx) / 8000 - answer  # where the tx leg starts after the 200 OK
    assert -0.3 < offset < 0.5, (label, offset)
    last = list(matches.values())[-1]
    # The notice's last word: prompts end in a little digital silence.
    levels = frame_levels_dbfs(list(templates.values())[-1], 8000, 10.0)
    speech_end = last.start + (int(np.nonzero(levels > -40)[0][-1]) + 1) * 0.01
    figures = {
        "case": label, "call_id": record["id"],
        "matches": {k: {"start": round(m.start, 3), "end": round(m.end, 3),
                        "peak": round(m.peak, 4), "runner_up": round(m.runner_up, 4)}
                    for k, m in matches.items()},
        "tx_start_after_200ok": round(offset, 3),
        "notice_end_wall": answer + max(offset, 0.0) + last.end,
        "speech_end_wall": answer + max(offset, 0.0) + speech_end,
    }
    print(f"\nNOTICE-FIGURES {json.dumps(figures)}")
    return figures


def assert_operator_after(stack: Stack, record: dict, figures: dict, tx_end: float) -> None:
    phone = stack.phones["op1001"]
    invites = phone.invites_received(since=ts(record["started_at"]) - 1,
                                     caller=record["caller"])
    assert invites, f"the operator never rang for {record['id']}"
    margin = invites[0] - figures["notice_end_wall"]
    figures["invite_after_last_word"] = round(invites[0] - figures["speech_end_wall"], 3)
    tx = call_recording(record).heard.samples
    onset = tone_onset(tx, tx_end - 0.5)
    print("NOTICE-MARGIN " + json.dumps({
        "case": figures["case"], "invite_after_notice_end": round(margin, 3),
        "invite_after_last_word": figures["invite_after_last_word"],
        "operator_audio_after_notice_end_in_tx": None if onset is None else round(
            onset - tx_end, 3)}))
    assert margin > 0, (figures, invites)
    # Inside the one file, free of any clock: the operator is heard only after the notice.
    assert onset is not None and onset > tx_end, (onset, tx_end)


# ---- (a) the controller's own path ----

def test_a_controller_notice_ends_before_the_operator_rings(stack):
    stack.operator("op1001")
    caller, record = call(stack, "0355550001", seconds(stack, "welcome") +
                          seconds(stack, "notice") + 8)
    assert record["operator"] == "op1001" and record["source"] == "controller"
    figures = heard(stack, caller, record, {"welcome": template(stack, "ja/welcome"),
                                            "notice": template(stack, "ja/notice")}, "a")
    notice = figures["matches"]["notice"]
    # The controller's clock against the heard audio: its greeting event comes just before
    # the greeting starts in the leg; its notice_ended_at just after the notice's last frame.
    answer = answered_at(caller)
    greeting_event = next(e for e in record["events"] if e["kind"] == "prompt")
    invite = stack.phones["op1001"].invites_received(since=answer, caller=record["caller"])
    comparison = {
        "greeting_in_tx": figures["matches"]["welcome"]["start"],
        "greeting_event_after_200ok": round(float(greeting_event["at"]) - answer, 3),
        "notice_end_in_tx": notice["end"],
        "notice_ended_at_after_200ok": round(ts(record["notice_ended_at"]) - answer, 3),
        "invite_after_200ok": round(invite[0] - answer, 3) if invite else None,
    }
    print(f"NOTICE-CLOCKS {json.dumps(comparison)}")
    assert "notice_failed" not in [e["kind"] for e in record["events"]]
    assert_operator_after(stack, record, figures, notice["end"])


# ---- with the controller down: (b) the fail-safe notice, (c2) its fallback, (d2) neither ----

def test_b_c_d_failsafe_path(stack):
    stack.operator("op1001")
    ja, en = seconds(stack, "notice", "ja"), seconds(stack, "notice", "en")
    fallback = seconds(stack, "notice", "fallback")
    notice_ja = template(stack, "ja/notice")
    stack.stop_controller()
    try:
        # (b) the fail-safe plays the notice in every entry's languages: ja, then en.
        caller_b, _ = call_without_controller(stack, "0355550002", ja + en + 8)
        # (c2) the Japanese notice deleted by hand: the fallback notice instead.
        with removed(stack, "ja/notice"):
            caller_c, _ = call_without_controller(stack, "0355550003", fallback + 8)
        # (d2) the fallback gone too: Asterisk ends the call.
        with removed(stack, "ja/notice", "fallback/notice"):
            caller_d, _ = call_without_controller(stack, "0355550004", None)
    finally:
        stack.start_controller()

    record_b = imported(stack, "0355550002")
    figures = heard(stack, caller_b, record_b, {"ja": notice_ja,
                                                "en": template(stack, "en/notice")}, "b")
    assert_operator_after(stack, record_b, figures, figures["matches"]["en"]["end"])

    record_c = imported(stack, "0355550003")
    figures = heard(stack, caller_c, record_c,
                    {"fallback": template(stack, "fallback/notice")}, "c2")
    assert_operator_after(stack, record_c, figures, figures["matches"]["fallback"]["end"])
    assert "notice_fallback" in [e["kind"] for e in record_c["events"]]

    record_d = imported(stack, "0355550004", recording=False)
    assert record_d["outcome"] == "failed" and record_d["failsafe"] is True
    assert_no_operator(stack, record_d, caller_d)


def call_without_controller(stack: Stack, number: str, hangup_after: float | None):
    caller = stack.caller(number, DID, hangup_after=hangup_after)
    result = caller.wait(120)
    assert result.returncode == 0, (result.workdir / "screen.log").read_text()[-2000:]
    return caller, None


def imported(stack: Stack, number: str, *, recording: bool = True) -> dict:
    record = stack.call_record(
        lambda c: c["caller"] == number and c["outcome"] and (
            c["recording_sha256"] or not recording),
        timeout=60, what=f"record of {number} imported from the CDR")
    assert record["source"] == "cdr" and record["failsafe"] is True
    return record


def assert_no_operator(stack: Stack, record: dict, caller: SippPeer) -> None:
    assert record["operator"] is None and record["queue_joined_at"] is None
    phone = stack.phones["op1001"]
    assert not phone.invites_received(since=ts(record["started_at"]) - 1,
                                      caller=record["caller"])
    # Why, from Asterisk's own records: the CDR field and the UserEvent (in its log).
    cdr = (stack.data / "asterisk" / "log" / "cdr-custom" / "ivr-cdr.csv").read_text()
    row = next(x for x in cdr.splitlines() if f'"{record["id"]}"' in x.split(",")[1])
    assert '"failed: ' in row and "fallback/notice: Playback FAILED" in row, row
    log = (stack.data / "asterisk" / "log" / "messages.log").read_text(errors="replace")
    assert any("IvrNoticeFailed" in x and record["id"] in x for x in log.splitlines())
    bye = [body for _t, what, body in caller.messages() if "received" in what
           and "| BYE " in what]
    assert bye, "Asterisk should have hung up"
    print(f"NOTICE-FAILED {json.dumps({'call_id': record['id'], 'cdr': row[-160:]})}")


# ---- (c) and (d) on the controller's path ----

def test_c_controller_plays_fallback_when_notice_is_missing(stack):
    stack.operator("op1001")
    with removed(stack, "ja/notice"):
        caller, record = call(stack, "0355550005", seconds(stack, "welcome") +
                              seconds(stack, "notice", "fallback") + 8)
    figures = heard(stack, caller, record,
                    {"welcome": template(stack, "ja/welcome"),
                     "fallback": template(stack, "fallback/notice")}, "c")
    assert_operator_after(stack, record, figures, figures["matches"]["fallback"]["end"])
    events = record["events"]
    failed = next(e for e in events if e["kind"] == "notice_failed")
    print(f"NOTICE-AGI {json.dumps(failed['data'])}")
    assert failed["data"]["prompt"] == "ja/notice"
    assert "result=-1" in failed["data"]["problem"]
    kinds = [e["kind"] for e in events]
    # The controller's decision stands: no fail-safe although one STREAM FILE failed.
    assert "failsafe" not in kinds and record["failsafe"] is False, kinds
    assert kinds.index("notice_fallback") < kinds.index("notice_finished") < kinds.index(
        "operator_ringing")


def test_d_no_notice_at_all_means_no_operator(stack):
    stack.operator("op1001")
    started = time.time()
    with removed(stack, "ja/notice", "fallback/notice"):
        _caller, record = call(stack, "0355550006", None)
    assert record["outcome"] == "failed", record
    assert record["notice_started_at"] is not None and record["notice_ended_at"] is None
    assert record["disposition"] == "notice_failed"
    problems = [e["data"] for e in record["events"] if e["kind"] == "notice_failed"]
    assert [p["prompt"] for p in problems] == ["ja/notice", "fallback/notice"], problems
    assert record["hangup_cause"] == 41, record
    assert_no_operator_controller(stack, record, started)


def assert_no_operator_controller(stack: Stack, record: dict, started: float) -> None:
    phone = stack.phones["op1001"]
    assert not phone.invites_received(since=started, caller=record["caller"])
    cdr = (stack.data / "asterisk" / "log" / "cdr-custom" / "ivr-cdr.csv").read_text()
    row = next(x for x in cdr.splitlines() if f'"{record["id"]}"' in x.split(",")[1])
    assert '"failed: ja/notice: ' in row, row
    log = (stack.data / "asterisk" / "log" / "messages.log").read_text(errors="replace")
    assert any("IvrNoticeFailed" in x and record["id"] in x for x in log.splitlines())


# ---- (e) a bilingual entry: the notice in Japanese, then English, before the choice ----

def test_e_bilingual_entry_plays_both_languages_before_the_language_menu(stack):
    main = "0501234567"  # the example's main number: notice_languages [ja, en]
    menu_at = (seconds(stack, "welcome") + seconds(stack, "notice", "ja")
               + seconds(stack, "notice", "en"))
    caller = stack.caller("0355550007", main, hangup_after=menu_at + 3)
    assert caller.wait(60).returncode == 0
    record = stack.call_record(lambda c: c["caller"] == "0355550007" and c["recording_sha256"],
                               timeout=60, what="bilingual call")
    menu_start = template(stack, "ja/language_select")[:2 * 8000]
    figures = heard(stack, caller, record, {
        "welcome": template(stack, "ja/welcome"), "ja": template(stack, "ja/notice"),
        "en": template(stack, "en/notice"), "language_select": menu_start}, "e")
    m = figures["matches"]
    assert m["ja"]["start"] >= m["welcome"]["end"] - 0.05
    assert m["en"]["start"] >= m["ja"]["end"] - 0.05
    assert m["language_select"]["start"] >= m["en"]["end"] - 0.05
    assert record["outcome"] == "abandoned_in_menu" and not record["menu_path"]
