"""Timing and checks shared by the caller-journey end-to-end tests."""

from __future__ import annotations

from datetime import datetime

from ivr.audio.wav import wav_duration
from tests.e2e.stack import SippPeer, Stack

MAIN = "0501234567"  # the example journey's main number


def ts(iso: str | None) -> float:
    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def seconds(stack: Stack, prompt: str, lang: str = "ja") -> float:
    return wav_duration(stack.data / "prompts" / lang / f"{prompt}.wav")


def notice_seconds(stack: Stack, prompt: str = "notice") -> float:
    """The main entry's notice: Japanese, then English (notice_languages: [ja, en])."""
    return seconds(stack, prompt, "ja") + seconds(stack, prompt, "en")


def language_menu_at(stack: Stack) -> float:
    """When, after the answer, the language menu is playing (greeting and notice done)."""
    return seconds(stack, "welcome") + notice_seconds(stack) + 1.2


def check_answered(record: dict, desk: str, operator: str, phone: SippPeer) -> None:
    assert record["outcome"] == "answered", record
    assert record["desk"] == desk
    assert record["operator"] == operator
    assert record["notice_ended_at"] is not None
    rang = [t for t in phone.invites_received(since=ts(record["started_at"]),
                                              caller=record["caller"])
            if t <= ts(record["ended_at"])]
    assert rang, f"{operator} never rang for {record['id']}"
    # The notice finished before this desk's operator's phone rang (SIPp's clock).
    assert rang[0] >= ts(record["notice_ended_at"]) - 0.05, (rang, record)


def not_rung(phone: SippPeer, record: dict) -> None:
    """This call never rang that phone (other, simultaneous calls may have)."""
    start, end = ts(record["started_at"]), ts(record["ended_at"])
    assert not [t for t in phone.invites_received(since=start, caller=record["caller"])
                if t <= end], f"{phone.workdir.name} rang for {record['caller']}"


def by_caller(stack: Stack, caller: str, timeout: float = 60) -> dict:
    return stack.call_record(lambda c: c["caller"] == caller and c["outcome"], timeout=timeout,
                             what=f"record of {caller}")
