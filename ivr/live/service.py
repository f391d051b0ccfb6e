"""Live protection while a call is connected: follow the caller's loudness in the recording
as MixMonitor writes it, and act through Asterisk on what ivr/live/detector.py decides.

Why the recording file: MixMonitor already writes the caller's side (left of the
interleaved stereo raw file, [ivr-record]); reading it costs no extra channel. Asterisk
writes it through a 32 KiB stdio buffer (main/file.c), about 1.02 s of 8 kHz 16-bit stereo,
so the audio reaches us at most ~1 s late; with the 1 s a shout must last, onset to alert
stays under 3 s (bench/load.py and tests/e2e/test_live.py measure it). An ARI snoop or
AudioSocket would bring the audio 20 ms late at the price of one or two more channels per
call for the whole talk (the recorder channel cost a third more CPU: bench/).

What it does, each through Asterisk and each an event in the call record:
- shouting starts: a `shout_started` event, an AMI UserEvent IvrShout, a log line, a counter;
- softening: `VOLUME(RX)` on the caller's channel lowers what the operator hears; the
  recording keeps the caller's voice as it was (MixMonitor's audiohook sees the frame first);
- the warning: a Local channel plays the prompt and whispers it to the caller with
  `ChanSpy(<caller>,qwE)` ([ivr-live-whisper]); the operator keeps hearing the caller. That
  sound is not in the recording, so the finaliser mixes it in at Asterisk's time of it;
- the second stage: a beep whispered to the operator (the end-and-refuse code is theirs to
  use), or the caller taken to the supervisor desk ([ivr-escalate], as the operator's code).

Per-call state (levels so far) is in process memory on purpose: it is a signal being
followed, not a fact; the facts are in the store as they happen. After a controller restart
calls already connected are not followed again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr.ami import events as ev
from ivr.ami.client import response_message, succeeded
from ivr.live import detector as det
from ivr.live.settings import LiveSettings
from ivr.recordings.analysis import WINDOW_S, window_levels
from ivr.service import CallService

log = logging.getLogger("ivr.live")

RATE = 8000
FRAME_BYTES = 4  # one stereo frame of 16-bit samples
WINDOW_BYTES = round(RATE * WINDOW_S) * FRAME_BYTES
POLL_S = 0.25
# Most read per call per poll: a lagging poll catches up in steps instead of one big read.
MAX_READ = 64 * WINDOW_BYTES
# How much of the caller's side before the answer seeds their baseline (the last minute).
SEED_BYTES = 600 * WINDOW_BYTES
# Channel names come from Asterisk; still, only these characters reach an AMI field or an
# application argument (no comma, no line break).
CHANNEL = re.compile(r"^[A-Za-z0-9/_.@;:+-]{3,120}$")
# Asterisk's unique id: [<system name>-]<epoch>.<sequence>
CALL_ID = re.compile(r"^([A-Za-z0-9_.-]{1,64}-)?[0-9]{1,20}\.[0-9]{1,10}$")
PROMPT = re.compile(r"^[a-z]{2}/[a-z0-9_]{1,64}$|^$")

Action = Callable[..., Awaitable[Any]]


@dataclass
class Watch:
    call_id: str
    path: Path
    caller_channel: str
    member_channel: str
    operator: str
    desk: str
    language: str
    detector: det.ShoutDetector
    offset: int  # bytes of the file already read
    gain_db: float = 0.0
    acting: asyncio.Task | None = None
    stopped: bool = False


@dataclass
class LiveProtection:
    calls: CallService
    action: Action  # AmiClient.action
    settings: Callable[[], LiveSettings]
    watches: dict[str, Watch] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    _task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name="live-protection")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for watch in list(self.watches.values()):
            if watch.acting is not None:
                watch.acting.cancel()
        self.watches.clear()

    # ---- from the tracker ----
    async def connected(self, call_id: str, *, desk: str, operator: str,
                        caller_channel: str, member_channel: str) -> None:
        rule = self.settings().for_desk(desk)
        if not rule.enabled or call_id in self.watches:
            return
        record = await self.calls.get(call_id)
        if record is None or not record.recording_path:
            return
        if not record.recording_path.endswith(".wav") or not CHANNEL.match(caller_channel):
            log.warning("event=live_skipped call_id=%s reason=%s", call_id,
                        "no recording" if not record.recording_path else "channel name")
            return
        path = Path(record.recording_path.removesuffix(".wav") + "-stereo.raw")
        try:
            size = os.stat(path).st_size
        except OSError:
            # Mono recordings ([recording] split_legs = false) have no caller side apart.
            log.warning("event=live_skipped call_id=%s reason=no stereo recording path=%s",
                        call_id, path)
            return
        offset = size - size % WINDOW_BYTES
        detector = det.ShoutDetector(rule, start=offset / (RATE * FRAME_BYTES))
        # What the caller said before (menus, the queue) gives the baseline a head start.
        seed_from = max(0, offset - SEED_BYTES)
        [(_end, before)] = await asyncio.to_thread(read_levels, [(path, seed_from)],
                                                   offset - seed_from)
        detector.seed(before)
        self.watches[call_id] = Watch(
            call_id, path, caller_channel,
            member_channel if CHANNEL.match(member_channel) else "",
            operator, desk, record.language or "ja", detector, offset)
        log.info("event=live_following call_id=%s desk=%s operator=%s", call_id, desk, operator)

    async def disconnected(self, call_id: str) -> None:
        """The operator's leg ended (or the call): stop following; a caller going on to
        another desk gets their own voice back."""
        watch = self.watches.pop(call_id, None)
        if watch is None:
            return
        watch.stopped = True
        if watch.acting is not None:
            # A softening step already on its way must not land after the restore.
            await asyncio.wait([watch.acting], timeout=3)
        if watch.gain_db:
            await self._ami(watch, {"Action": "Setvar", "Channel": watch.caller_channel,
                                    "Variable": "VOLUME(RX)", "Value": "0"}, quiet=True)

    async def sound(self, event: ev.LiveSound) -> None:
        """A sound ordered above starts or ends (Asterisk's time): the warning is a fact of
        the call, and an announcement the finaliser mixes into what the caller heard."""
        watch = self.watches.get(event.call_id)
        if watch is None and not await self.calls.is_known(event.call_id):
            log.warning("event=live_sound_unknown_call call_id=%r kind=%s",
                        event.call_id[:40], event.kind)
            return
        if event.kind == "warning":
            log.warning("event=shout_warning call_id=%s prompt=%s", event.call_id, event.prompt)
            await self.calls.feature_event(event.call_id, "shout_warning", event.at,
                                           prompt=event.prompt)
            await self.calls.feature_event(event.call_id, "announcement", event.at,
                                           prompt=event.prompt, purpose="shout_warning",
                                           mix=True)
        elif event.kind == "warning_end":
            await self.calls.feature_event(event.call_id, "shout_warning_end", event.at,
                                           prompt=event.prompt, status=event.status)
        else:
            await self.calls.feature_event(event.call_id, "shout_beep", event.at)

    # ---- following ----
    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            watches = list(self.watches.values())
            if not watches:
                continue
            try:
                results = await asyncio.to_thread(
                    read_levels, [(w.path, w.offset) for w in watches])
            except Exception:
                log.exception("event=live_read_failed")
                continue
            for watch, (offset, levels) in zip(watches, results, strict=True):
                if watch.stopped or not len(levels):
                    continue
                watch.offset = offset
                actions = watch.detector.feed(levels)
                if actions:
                    previous = watch.acting
                    watch.acting = asyncio.create_task(self._act(watch, actions, previous))

    async def _act(self, watch: Watch, actions: list[det.Action],
                   previous: asyncio.Task | None) -> None:
        if previous is not None:  # one call's actions in the order they were decided
            await asyncio.gather(previous, return_exceptions=True)
        for action in actions:
            if watch.stopped:
                return
            try:
                await self._one(watch, action)
            except Exception:
                log.exception("event=live_action_failed call_id=%s action=%r",
                              watch.call_id, action)

    async def _one(self, watch: Watch, action: det.Action) -> None:
        call_id = watch.call_id
        facts = {"operator": watch.operator, "desk": watch.desk}
        match action:
            case det.ShoutStarted():
                self.counts["shout"] += 1
                log.warning("event=shout_started call_id=%s operator=%s desk=%s offset=%.1f "
                            "level=%.1f threshold=%.1f", call_id, watch.operator, watch.desk,
                            action.offset, action.level, action.threshold)
                await self._ami(watch, {
                    "Action": "UserEvent", "UserEvent": "IvrShout", "CallId": call_id,
                    "Stage": "started", "Operator": watch.operator, "Desk": watch.desk,
                    "Offset": f"{action.offset:.1f}"})
                await self.calls.feature_event(
                    call_id, "shout_started", offset=action.offset, level=action.level,
                    threshold=action.threshold, baseline=action.baseline, **facts)
            case det.Soften():
                self.counts["soften"] += 1
                applied = await self._gain(watch, action.gain_db)
                await self.calls.feature_event(call_id, "shout_softened", offset=action.offset,
                                               step=action.step, gain_db=action.gain_db,
                                               applied=applied)
            case det.ShoutEnded():
                restored = bool(watch.gain_db) and await self._gain(watch, 0.0)
                log.info("event=shout_ended call_id=%s loud_s=%.1f", call_id, action.loud_s)
                await self.calls.feature_event(call_id, "shout_ended", offset=action.offset,
                                               loud_s=action.loud_s, restored=restored)
            case det.Warn():
                self.counts["warning"] += 1
                prompt = f"{watch.language}/{watch.detector.rule.warning_prompt}"
                ok = await self._whisper(watch, watch.caller_channel, "warn", prompt)
                log.warning("event=shout_warning_ordered call_id=%s prompt=%s ok=%s",
                            call_id, prompt, ok)
                await self.calls.feature_event(call_id, "shout_warning_ordered",
                                               offset=action.offset, loud_s=action.loud_s,
                                               prompt=prompt, ok=ok)
            case det.SecondStage(kind="offer_end"):
                self.counts["offer_end"] += 1
                ok = bool(watch.member_channel) and await self._whisper(
                    watch, watch.member_channel, "beep", "")
                await self.calls.feature_event(call_id, "shout_second_stage", stage="offer_end",
                                               offset=action.offset, loud_s=action.loud_s,
                                               ok=ok)
            case det.SecondStage(kind="escalate"):
                self.counts["escalate"] += 1
                desk = self.settings().escalate_desk
                # Already there (the supervisor desk follows shouting too): no loop of
                # escalations to the desk the caller is at.
                ok = desk != watch.desk and await self._ami(watch, {
                    "Action": "Redirect", "Channel": watch.caller_channel,
                    "Context": "ivr-escalate", "Exten": desk, "Priority": "1"})
                await self.calls.feature_event(call_id, "shout_second_stage", stage="escalate",
                                               desk=desk, offset=action.offset,
                                               loud_s=action.loud_s, ok=ok)

    async def _gain(self, watch: Watch, gain_db: float) -> bool:
        if await self._ami(watch, {"Action": "Setvar", "Channel": watch.caller_channel,
                                   "Variable": "VOLUME(RX)",
                                   "Value": det.gain_value(gain_db)}):
            watch.gain_db = gain_db
            return True
        return False

    async def _whisper(self, watch: Watch, target: str, what: str, prompt: str) -> bool:
        """A Local channel whose dialplan half plays `what` ([ivr-live-whisper]) while the
        other half whispers it into `target` (ChanSpy w: only that channel hears it)."""
        if not (CALL_ID.match(watch.call_id) and PROMPT.match(prompt) and CHANNEL.match(target)):
            log.warning("event=live_whisper_refused call_id=%r prompt=%r", watch.call_id[:40],
                        prompt[:70])
            return False
        variables = f"IVR_LIVE_CALL={watch.call_id},IVR_LIVE_PROMPT={prompt}"
        return await self._ami(watch, {
            "Action": "Originate", "Channel": f"Local/{what}@ivr-live-whisper/n",
            "Application": "ChanSpy", "Data": f"{target},qwE", "Async": "true",
            "Variable": variables, "CallerID": "ivr-live", "Timeout": "5000"})

    async def _ami(self, watch: Watch, request: dict[str, str], quiet: bool = False) -> bool:
        try:
            response = await self.action(request, timeout=3, as_list=False)
        except Exception as exc:  # AmiError, a dropped connection: the call goes on
            if not quiet:
                log.warning("event=live_ami_failed call_id=%s action=%s error=%s",
                            watch.call_id, request["Action"], exc)
            return False
        ok = succeeded(response)
        if not ok and not quiet:
            log.warning("event=live_ami_refused call_id=%s action=%s response=%s",
                        watch.call_id, request["Action"], response_message(response))
        return ok


def read_levels(files: list[tuple[Path, int]],
                most: int = MAX_READ) -> list[tuple[int, np.ndarray]]:
    """For each (recording, bytes read so far): the new offset and the caller side's levels
    of the whole 100 ms windows written since, at most `most` bytes (worker thread: file
    reads and numpy)."""
    out = []
    for path, offset in files:
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                take = min(size - offset, most)
                take -= take % WINDOW_BYTES
                if take <= 0:
                    out.append((offset, np.empty(0)))
                    continue
                data = os.pread(handle.fileno(), take, offset)
        except OSError:
            out.append((offset, np.empty(0)))
            continue
        usable = len(data) - len(data) % WINDOW_BYTES
        caller = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, 2)[:, 0]
        out.append((offset + usable, window_levels(caller, WINDOW_BYTES // FRAME_BYTES)))
    return out
