"""Live protection: the detector's decisions, its settings, reading the growing recording,
and what the service asks Asterisk for (fake AMI)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ivr.ami import events as ev
from ivr.live import detector as det
from ivr.live.service import WINDOW_BYTES, LiveProtection, read_levels
from ivr.live.settings import LiveRule, LiveSettings
from ivr.protection.settings import SettingsError, parse_settings

CALM, LOUD = -30.0, -12.0


def windows(*parts: tuple[float, float]) -> np.ndarray:
    """(level dBFS, seconds) pieces as 100 ms window levels."""
    return np.concatenate([np.full(round(s * 10), lv) for lv, s in parts])


def rule(**kw) -> LiveRule:
    return LiveRule(enabled=True, **kw)


# ---- the detector ----

def test_calm_talk_raises_nothing_and_sets_the_baseline():
    d = det.ShoutDetector(rule())
    assert d.feed(windows((CALM, 20), (-60, 5), (CALM - 3, 10))) == []
    assert d.baseline is not None and CALM - 3 <= d.baseline <= CALM
    assert d.threshold() == pytest.approx(max(-20.0, d.baseline + 10))


def test_a_shout_starts_after_sustain_softens_in_steps_warns_and_ends_after_release():
    d = det.ShoutDetector(rule(soften_db=(6, 12), soften_every=2.0, warning_after=3.0,
                               second_stage="offer_end", second_after=2.0), start=100.0)
    actions = d.feed(windows((CALM, 5), (LOUD, 8), (CALM, 5)))
    kinds = [type(a).__name__ for a in actions]
    assert kinds == ["ShoutStarted", "Soften", "Soften", "Warn", "SecondStage", "ShoutEnded"]
    started, first, second, warn, stage, ended = actions
    # The onset is the first loud window (smoothing makes the first one cross at once here).
    assert started.offset == pytest.approx(105.0, abs=0.11)
    assert started.baseline == CALM and started.threshold == -20.0
    assert (first.step, first.gain_db) == (1, -6) and (second.step, second.gain_db) == (2, -12)
    # One soften step per soften_every of loud time after the onset.
    assert second.offset - first.offset == pytest.approx(2.0, abs=0.11)
    assert warn.loud_s == pytest.approx(3.0) and stage.loud_s == pytest.approx(5.0)
    assert stage.kind == "offer_end"
    # It ends `release` after the last loud window (the 0.5 s smoothing outlasts the shout).
    assert ended.restore and 113.0 <= ended.offset <= 113.6
    assert ended.loud_s == pytest.approx(8.0, abs=0.6)


def test_before_a_baseline_only_a_voice_well_over_the_floor_counts():
    """No 3 s of talk yet: -15 dBFS is a loud voice, -6 dBFS is shouting."""
    assert det.ShoutDetector(rule()).feed(windows((-15, 2.5))) == []
    d = det.ShoutDetector(rule())
    started = [a for a in d.feed(windows((-6, 2))) if isinstance(a, det.ShoutStarted)]
    assert started and started[0].baseline is None and started[0].threshold == -10.0


def test_talk_before_the_answer_seeds_the_baseline():
    """A caller who talked in the queue has a baseline at once: -14 dBFS is found at the
    first second with the operator (without the seed it is under the -10 dBFS bar)."""
    d = det.ShoutDetector(rule())
    d.seed(windows((CALM, 4), (-70, 20)))
    assert d.baseline == CALM
    assert isinstance(d.feed(windows((-14, 1.5)))[0], det.ShoutStarted)
    assert det.ShoutDetector(rule()).feed(windows((-14, 1.5))) == []


def test_too_short_a_shout_is_not_one():
    d = det.ShoutDetector(rule(sustain=1.0))
    assert d.feed(windows((CALM, 5), (LOUD, 0.4), (CALM, 5), (LOUD, 0.4), (CALM, 3))) == []


def test_a_quiet_speakers_raised_voice_below_the_floor_is_not_shouting():
    """15 dB over their own baseline, still under -20 dBFS: a quiet caller speaking up."""
    d = det.ShoutDetector(rule())
    assert d.feed(windows((-42, 6), (-27, 5), (-42, 3))) == []


def test_the_baseline_follows_the_caller_not_the_floor():
    """A loud-voiced caller (-18 dBFS normal talk) is not shouting at -15, is at -6."""
    d = det.ShoutDetector(rule())
    assert d.feed(windows((-18, 6), (-15, 3))) == []
    assert [type(a) for a in d.feed(windows((-6, 2)))][:1] == [det.ShoutStarted]


def test_warning_once_per_call_second_stage_once():
    d = det.ShoutDetector(rule(warning_after=1.0, second_stage="escalate", second_after=1.0,
                               soften_db=()))
    actions = d.feed(windows((CALM, 5), (LOUD, 4), (CALM, 4), (LOUD, 4), (CALM, 4)))
    assert [type(a).__name__ for a in actions].count("Warn") == 1
    assert [type(a).__name__ for a in actions].count("SecondStage") == 1
    assert [type(a).__name__ for a in actions].count("ShoutStarted") == 2
    assert not any(isinstance(a, det.Soften) for a in actions)
    assert all(not a.restore for a in actions if isinstance(a, det.ShoutEnded))


def test_no_warning_when_none_is_set():
    d = det.ShoutDetector(rule(warning=False))
    assert not any(isinstance(a, det.Warn) for a in d.feed(windows((CALM, 5), (LOUD, 20))))


@pytest.mark.parametrize(("gain", "value", "db"), [(-6.0, "-1.995", -6.0), (-12.0, "-3.981", -12.0),
                                                   (6.0, "1.995", 6.0), (0.0, "0", 0.0)])
def test_volume_value_is_asterisks_divisor(gain, value, db):
    assert det.gain_value(gain) == value
    # Asterisk divides by |v| for a negative v and multiplies by v for a positive one.
    v = float(value)
    factor = 1.0 if v == 0 else (v if v > 0 else 1 / -v)
    assert 20 * np.log10(factor) == pytest.approx(db, abs=0.01)


# ---- settings ----

def test_desk_settings_fill_in_from_the_section():
    live = LiveSettings(enabled=True, soften_db=(6,), desks={"supervisor": {"enabled": False},
                                                             "vip": {"warning": False}})
    assert live.for_desk("support").enabled and live.for_desk("support").soften_db == (6,)
    assert not live.for_desk("supervisor").enabled
    assert not live.for_desk("vip").warning and live.for_desk("vip").enabled
    # The stored document (nulls for what a desk leaves to the section) reads back the same.
    again = LiveSettings.model_validate(live.model_dump(mode="json"))
    assert again == live and again.for_desk("supervisor") == live.for_desk("supervisor")


@pytest.mark.parametrize(("section", "named"), [
    ({"soften_db": [12, 6]}, "soften_db: steps go down further"),
    ({"floor_dbfs": 3}, "floor_dbfs"),
    ({"second_stage": "offer_end", "warning": False}, "second_stage follows the warning"),
    ({"desks": {"support": {"sustain": 0.01}}}, "desks.support.sustain"),
    ({"desks": {"nowhere": {"enabled": False}}}, "live.desks.nowhere: no desk named"),
    ({"second_stage": "escalate", "escalate_desk": "bosses"}, "live.escalate_desk"),
    ({"sustian": 1}, "sustian"),
])
def test_bad_settings_are_refused_naming_the_field(section, named):
    with pytest.raises(SettingsError) as err:
        parse_settings({"live": section}, desks={"support", "supervisor"}, entries=set(),
                       operators=set())
    assert named in str(err.value)


# ---- reading the recording as it grows ----

def stereo(left: np.ndarray, right: np.ndarray) -> bytes:
    return np.stack([left, right], axis=1).astype("<i2").tobytes()


def test_read_levels_takes_whole_windows_of_the_left_side(tmp_path):
    path = tmp_path / "call-stereo.raw"
    rng = np.random.default_rng(7)
    left = (rng.standard_normal(8000 * 2) * 1000).astype(np.int16)
    right = np.full(8000 * 2, 20000, dtype=np.int16)  # loud: must not leak into the left
    data = stereo(left, right)
    path.write_bytes(data[:WINDOW_BYTES * 3 + 100])  # three windows and a part
    [(offset, levels)] = read_levels([(path, 0)])
    assert offset == WINDOW_BYTES * 3 and len(levels) == 3
    expected = 10 * np.log10(np.mean((left[:800] / 32768.0) ** 2))
    assert levels[0] == pytest.approx(expected, abs=0.01)
    path.write_bytes(data)
    [(offset, levels)] = read_levels([(path, offset)])
    assert offset == len(data) and len(levels) == 17
    assert read_levels([(tmp_path / "gone.raw", 0)])[0][1].size == 0


# ---- the service, with a fake AMI ----

@dataclass
class FakeCalls:
    record: SimpleNamespace
    events: list[tuple[str, dict]] = field(default_factory=list)

    async def get(self, call_id):
        return self.record if call_id == self.record.id else None

    async def is_known(self, call_id):
        return call_id == self.record.id

    async def feature_event(self, call_id, kind, at=None, **data):
        self.events.append((kind, data))
        return at or 0.0


@dataclass
class FakeAmi:
    sent: list[dict] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def __call__(self, request, timeout=None, as_list=None):
        self.sent.append(dict(request))
        ok = request["Action"] not in self.refuse
        return {"Response": "Success" if ok else "Error", "Message": "no"}


CALLER = "PJSIP/trunk-0000002a"
MEMBER = "Local/op1001@ivr-member-00000007;1"


def service(tmp_path: Path, **live) -> tuple[LiveProtection, FakeCalls, FakeAmi, Path]:
    base = tmp_path / "node-1795000000.42"
    (tmp_path / f"{base.name}-stereo.raw").write_bytes(b"\0" * (WINDOW_BYTES * 5 + 6))
    calls = FakeCalls(SimpleNamespace(id="node-1795000000.42", recording_path=f"{base}.wav",
                                      language="en"))
    ami = FakeAmi()
    settings = LiveSettings(enabled=True, **live)
    return LiveProtection(calls, ami, lambda: settings), calls, ami, base  # type: ignore[arg-type]


def test_connected_follows_from_the_end_of_what_is_written(tmp_path):
    live, _calls, _ami, base = service(tmp_path)
    talk = (np.random.default_rng(3).standard_normal(8000 * 4) * 1000).astype(np.int16)
    (tmp_path / f"{base.name}-stereo.raw").write_bytes(
        stereo(talk, np.zeros_like(talk)) + b"\0" * (WINDOW_BYTES * 5 + 6))
    asyncio.run(live.connected("node-1795000000.42", desk="support", operator="op1001",
                               caller_channel=CALLER, member_channel=MEMBER))
    watch = live.watches["node-1795000000.42"]
    assert watch.offset == WINDOW_BYTES * 45 and watch.detector.start == pytest.approx(4.5)
    # The 4 s of talk before the answer seeded the baseline (noise at RMS 1000: -30.3 dBFS).
    assert watch.detector.baseline == pytest.approx(-30.3, abs=0.2)


def test_not_followed_when_off_for_the_desk_or_without_a_stereo_recording(tmp_path):
    live, _calls, _ami, base = service(tmp_path, desks={"supervisor": {"enabled": False}})
    asyncio.run(live.connected("node-1795000000.42", desk="supervisor", operator="op1001",
                               caller_channel=CALLER, member_channel=MEMBER))
    assert live.watches == {}
    (tmp_path / f"{base.name}-stereo.raw").unlink()
    asyncio.run(live.connected("node-1795000000.42", desk="support", operator="op1001",
                               caller_channel=CALLER, member_channel=MEMBER))
    assert live.watches == {}


def run_actions(live: LiveProtection, actions: list) -> None:
    async def go():
        await live.connected("node-1795000000.42", desk="support", operator="op1001",
                             caller_channel=CALLER, member_channel=MEMBER)
        watch = live.watches["node-1795000000.42"]
        await live._act(watch, actions, None)
    asyncio.run(go())


def test_soften_and_restore_set_volume_on_the_callers_channel(tmp_path):
    live, calls, ami, _ = service(tmp_path)
    run_actions(live, [det.ShoutStarted(1.0, -12.0, -20.0, -30.0), det.Soften(1.1, 1, -6.0),
                       det.ShoutEnded(9.0, 8.0, restore=True)])
    alert, soften, restore = ami.sent
    assert alert == {"Action": "UserEvent", "UserEvent": "IvrShout",
                     "CallId": "node-1795000000.42", "Stage": "started", "Operator": "op1001",
                     "Desk": "support", "Offset": "1.0"}
    assert soften == {"Action": "Setvar", "Channel": CALLER, "Variable": "VOLUME(RX)",
                      "Value": "-1.995"}
    assert restore["Value"] == "0" and restore["Channel"] == CALLER
    assert [k for k, _ in calls.events] == ["shout_started", "shout_softened", "shout_ended"]
    assert calls.events[1][1]["applied"] is True and calls.events[2][1]["restored"] is True
    assert live.counts["shout"] == 1 and live.counts["soften"] == 1


def test_a_refused_softening_is_recorded_as_not_applied_and_not_restored(tmp_path):
    live, calls, ami, _ = service(tmp_path)
    ami.refuse.add("Setvar")
    run_actions(live, [det.Soften(1.1, 1, -6.0), det.ShoutEnded(9.0, 8.0, restore=True)])
    assert calls.events[0][1]["applied"] is False and calls.events[1][1]["restored"] is False
    assert [r["Action"] for r in ami.sent] == ["Setvar"]  # nothing to restore


def test_warning_whispers_the_prompt_to_the_caller_beep_to_the_member(tmp_path):
    live, calls, ami, _ = service(tmp_path, second_stage="offer_end")
    run_actions(live, [det.Warn(5.0, 6.0), det.SecondStage(9.0, "offer_end", 16.0)])
    warn, beep = ami.sent
    assert warn["Action"] == "Originate" and warn["Application"] == "ChanSpy"
    assert warn["Channel"] == "Local/warn@ivr-live-whisper/n"
    assert warn["Data"] == f"{CALLER},qwE"
    assert warn["Variable"] == "IVR_LIVE_CALL=node-1795000000.42,IVR_LIVE_PROMPT=en/shout_warning"
    assert beep["Channel"] == "Local/beep@ivr-live-whisper/n" and beep["Data"] == f"{MEMBER},qwE"
    assert [k for k, _ in calls.events] == ["shout_warning_ordered", "shout_second_stage"]


def test_escalate_redirects_the_caller_to_the_supervisor_desk(tmp_path):
    live, calls, ami, _ = service(tmp_path, second_stage="escalate", escalate_desk="supervisor")
    run_actions(live, [det.SecondStage(9.0, "escalate", 16.0)])
    assert ami.sent == [{"Action": "Redirect", "Channel": CALLER, "Context": "ivr-escalate",
                         "Exten": "supervisor", "Priority": "1"}]
    assert calls.events[0][1]["stage"] == "escalate"


def test_no_escalation_from_the_escalation_desk_itself(tmp_path):
    live, calls, ami, _ = service(tmp_path, second_stage="escalate", escalate_desk="support")
    run_actions(live, [det.SecondStage(9.0, "escalate", 16.0)])
    assert ami.sent == [] and calls.events[0][1]["ok"] is False


def test_odd_channel_names_never_reach_an_application_argument(tmp_path):
    live, _calls, ami, _ = service(tmp_path)

    async def go():
        await live.connected("node-1795000000.42", desk="support", operator="op1001",
                             caller_channel="PJSIP/x,qwE,evil", member_channel=MEMBER)
    asyncio.run(go())
    assert live.watches == {} and ami.sent == []


def test_disconnect_gives_a_softened_caller_their_voice_back(tmp_path):
    live, _calls, ami, _ = service(tmp_path)

    async def go():
        await live.connected("node-1795000000.42", desk="support", operator="op1001",
                             caller_channel=CALLER, member_channel=MEMBER)
        watch = live.watches["node-1795000000.42"]
        await live._act(watch, [det.Soften(1.0, 1, -6.0)], None)
        await live.disconnected("node-1795000000.42")
    asyncio.run(go())
    assert [r.get("Value") for r in ami.sent] == ["-1.995", "0"] and live.watches == {}


def test_the_warning_sound_is_an_announcement_to_mix_in_at_asterisks_time(tmp_path):
    live, calls, _ami, _ = service(tmp_path)
    asyncio.run(live.sound(ev.LiveSound("node-1795000000.42", "warning", "en/shout_warning",
                                        at=1795000123.25)))
    assert calls.events == [("shout_warning", {"prompt": "en/shout_warning"}),
                            ("announcement", {"prompt": "en/shout_warning",
                                              "purpose": "shout_warning", "mix": True})]
    asyncio.run(live.sound(ev.LiveSound("other-1.1", "warning", "en/shout_warning")))
    assert len(calls.events) == 2  # an unknown call: logged, nothing recorded


# ---- AMI events ----

def test_events_parse_live_sounds_and_ignore_our_own_alert():
    sound = ev.parse_event({"Event": "UserEvent", "UserEvent": "IvrLiveWarning",
                            "Uniqueid": "node-1795000000.99", "CallId": "node-1795000000.42",
                            "Prompt": "ja/shout_warning", "Timestamp": "1795000001.5"})
    assert sound == ev.LiveSound("node-1795000000.42", "warning", "ja/shout_warning",
                                 at=1795000001.5)
    assert ev.parse_event({"Event": "UserEvent", "UserEvent": "IvrShout",
                           "CallId": "node-1.1"}) is None
    connect = ev.parse_event({"Event": "AgentConnect", "Uniqueid": "node-1795000000.42",
                              "Queue": "support", "Interface": "Local/op1001@ivr-member/n",
                              "Channel": CALLER, "DestChannel": MEMBER, "HoldTime": "1",
                              "RingTime": "1"})
    assert connect.channel == CALLER and connect.member_channel == MEMBER
