"""Shouting followed live on one side of one call: pure decisions, no I/O.

The service feeds the caller's loudness in 100 ms windows as the recording grows; the
detector answers with what to do. The rules are the archive analysis's
(ivr/recordings/analysis.py), applied as the audio arrives instead of afterwards:

- a window is *loud* when the caller's level, smoothed over 0.5 s, is at least
  `above_baseline_db` over the caller's own baseline (the median of their talk windows in
  this call, outside shouting; what they said in the last minute before the operator
  answered counts too) and above `floor_dbfs`; with less than 3 s of talk there is no
  baseline yet, and only a voice `above_baseline_db` over the floor counts (a caller who
  starts shouting at once is still found; a loud-voiced one is not taken for shouting);
- shouting *starts* after `sustain` seconds of loud windows in a row (its onset is the first
  of them) and *ends* after `release` seconds without one;
- while it lasts, the operator hears the caller lowered by the next of `soften_db` every
  `soften_every` seconds of loud time; restored when it ends;
- after `warning_after` seconds of loud time in the call the caller is warned once; after
  `second_after` more, the second stage runs once.

It hears loudness, not words: an insult said calmly is not found, and a caller who shouts
from the first second has that as their baseline until the floor catches them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ivr.live.settings import LiveRule
from ivr.recordings.analysis import BASELINE_MIN_S, SHOUT_SMOOTH_S, TALK_DBFS, WINDOW_S

SMOOTH_WINDOWS = round(SHOUT_SMOOTH_S / WINDOW_S)
BASELINE_MIN_WINDOWS = round(BASELINE_MIN_S / WINDOW_S)
# The baseline follows the last five minutes of talk: a caller's level drifts over a long
# call (another room, another phone position), and the median stays cheap.
BASELINE_KEEP = 3000
BASELINE_EVERY = 10  # windows between baseline updates (1 s)


@dataclass(frozen=True)
class ShoutStarted:
    offset: float  # seconds into the caller's audio (the recording) of the first loud window
    level: float  # the smoothed level that crossed, dBFS
    threshold: float
    baseline: float | None


@dataclass(frozen=True)
class Soften:
    offset: float
    step: int  # 1 = the first step
    gain_db: float  # negative: what the operator hears is lowered by this


@dataclass(frozen=True)
class ShoutEnded:
    offset: float  # end of the last loud window
    loud_s: float  # loud time in this episode
    restore: bool  # softening was applied and is now lifted


@dataclass(frozen=True)
class Warn:
    offset: float
    loud_s: float  # loud time in the call so far


@dataclass(frozen=True)
class SecondStage:
    offset: float
    kind: str  # "offer_end" or "escalate"
    loud_s: float


Action = ShoutStarted | Soften | ShoutEnded | Warn | SecondStage


@dataclass
class ShoutDetector:
    rule: LiveRule
    start: float = 0.0  # offset of the first window fed, seconds
    windows: int = 0  # windows fed so far
    _power: deque[float] = field(default_factory=lambda: deque(maxlen=SMOOTH_WINDOWS))
    _talk: deque[float] = field(default_factory=lambda: deque(maxlen=BASELINE_KEEP))
    baseline: float | None = None
    _run: int = 0  # loud windows in a row
    _quiet: int = 0  # windows in a row without a loud one, during an episode
    shouting: bool = False
    _episode_loud: int = 0
    _step: int = 0
    _since_step: int = 0  # loud windows since the last softening step
    _last_loud_end: float = 0.0
    call_loud: int = 0  # loud windows inside episodes, whole call
    warned_at_loud: int | None = None
    second_done: bool = False

    def threshold(self) -> float:
        if self.baseline is None:
            return self.rule.floor_dbfs + self.rule.above_baseline_db
        return max(self.rule.floor_dbfs, self.baseline + self.rule.above_baseline_db)

    def seed(self, levels: np.ndarray) -> None:
        """The caller's talk before the operator answered (menus, the queue): it counts for
        the baseline only; nothing is decided on it."""
        talk = np.asarray(levels, dtype=np.float64)
        self._talk.extend(talk[talk >= TALK_DBFS].tolist())
        if len(self._talk) >= BASELINE_MIN_WINDOWS:
            self.baseline = float(np.median(np.fromiter(self._talk, dtype=np.float64)))

    def feed(self, levels: np.ndarray) -> list[Action]:
        """The next windows' levels (dBFS, 100 ms each, in order): the actions they call for."""
        actions: list[Action] = []
        for level in np.asarray(levels, dtype=np.float64):
            actions += self._window(float(level))
        return actions

    def _window(self, level: float) -> list[Action]:
        offset = self.start + self.windows * WINDOW_S
        self.windows += 1
        self._power.append(10.0 ** (level / 10.0))
        smoothed = 10.0 * np.log10(max(sum(self._power) / len(self._power), 1e-12))
        threshold = self.threshold()
        loud = smoothed >= threshold
        # The baseline is the caller's talk outside shouting (loud windows before an episode
        # is confirmed included: the median shrugs off a few).
        if not self.shouting and level >= TALK_DBFS:
            self._talk.append(level)
        if self.windows % BASELINE_EVERY == 0 and len(self._talk) >= BASELINE_MIN_WINDOWS:
            self.baseline = float(np.median(np.fromiter(self._talk, dtype=np.float64)))
        actions: list[Action] = []
        if loud:
            self._run += 1
            self._quiet = 0
            self._last_loud_end = offset + WINDOW_S
            if not self.shouting and self._run * WINDOW_S >= self.rule.sustain - 1e-9:
                self.shouting = True
                self._episode_loud = self._run
                self.call_loud += self._run
                self._step = 0
                onset = offset + WINDOW_S - self._run * WINDOW_S
                actions.append(ShoutStarted(round(onset, 3), round(float(smoothed), 1),
                                            round(threshold, 1), self._rounded_baseline()))
                actions += self._soften(offset)
            elif self.shouting:
                self._episode_loud += 1
                self.call_loud += 1
                self._since_step += 1
                if self._since_step * WINDOW_S >= self.rule.soften_every - 1e-9:
                    actions += self._soften(offset)
            if self.shouting:
                actions += self._stages(offset)
        else:
            self._run = 0
            if self.shouting:
                self._quiet += 1
                if self._quiet * WINDOW_S >= self.rule.release - 1e-9:
                    self.shouting = False
                    actions.append(ShoutEnded(round(self._last_loud_end, 3),
                                              round(self._episode_loud * WINDOW_S, 1),
                                              restore=self._step > 0))
                    self._step = 0
        return actions

    def _soften(self, offset: float) -> list[Action]:
        if self._step >= len(self.rule.soften_db):
            return []
        self._step += 1
        self._since_step = 0
        return [Soften(round(offset, 3), self._step, -self.rule.soften_db[self._step - 1])]

    def _stages(self, offset: float) -> list[Action]:
        loud_s = self.call_loud * WINDOW_S
        rule = self.rule
        if self.warned_at_loud is None:
            if rule.warning and loud_s >= rule.warning_after - 1e-9:
                self.warned_at_loud = self.call_loud
                return [Warn(round(offset, 3), round(loud_s, 1))]
            return []
        since = (self.call_loud - self.warned_at_loud) * WINDOW_S
        if (not self.second_done and rule.second_stage != "none"
                and since >= rule.second_after - 1e-9):
            self.second_done = True
            return [SecondStage(round(offset, 3), rule.second_stage, round(loud_s, 1))]
        return []

    def _rounded_baseline(self) -> float | None:
        return None if self.baseline is None else round(self.baseline, 1)


def gain_value(gain_db: float) -> str:
    """VOLUME()'s value for a gain in dB. Asterisk multiplies by a positive value and divides
    by the size of a negative one (funcs/func_volume.c, ast_frame_adjust_volume_float); 0 is
    no change."""
    if abs(gain_db) < 0.05:
        return "0"
    factor = 10.0 ** (abs(gain_db) / 20.0)
    return f"{'-' if gain_db < 0 else ''}{factor:.3f}"
