"""AGI(agi://.../inbound): a customer call has been answered and is being recorded.

The journey: entry point by dialled number, business hours, greeting, the recording notice
(always in full, no key skips it), then menus until a desk, a message or hang-up. The dialplan
queues the caller afterwards, so no operator's phone rings before the notice has ended.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext
from ivr.agi.desk import queue_to_desk
from ivr.agi.notice import NoticeFailed, end_without_notice, play_notice
from ivr.agi.protect import LET_THROUGH, decide_call
from ivr.agi.protocol import AgiChannel, AgiHangup
from ivr.journey import MAX_MENU_STEPS, Journey, Menu, Route
from ivr.model import Disposition, Source
from ivr.policy.menu import answer, step_limit_route
from ivr.policy.schedule import is_open

ALL_KEYS = "0123456789*#"


class InboundCall:
    def __init__(self, agi: AgiChannel, ctx: HandlerContext, journey: Journey | None,
                 did: str | None):
        self.agi = agi
        self.did = did
        self.ctx = ctx
        self.calls = ctx.calls
        self.journey = journey
        self.call_id = agi.unique_id
        self.language = ctx.prompts.language
        self.notice_played = False
        self.entry_notice = ctx.notice
        self.notice_languages: list[str] = [self.language]
        # Every menu prompt played counts (answers, retries, repeats): MAX_MENU_STEPS bounds
        # how long one caller can hold an IVR channel.
        self.steps = 0
        self.menu_path: list[str] = []
        self.decision = LET_THROUGH  # the inbound restriction's (ivr/agi/protect.py)

    # ---- media ----
    async def play(self, prompt: str, purpose: str, *, interruptible: bool = False) -> str | None:
        await self.calls.prompt_played(self.call_id, prompt, purpose)
        keys = ALL_KEYS if interruptible else ""
        return await self.agi.stream_file(self.ctx.prompts.path(prompt, self.language), keys)

    async def set_language(self, language: str) -> None:
        if language == self.language:
            return
        self.language = language
        # Asterisk picks prompts/<lang>/<name> for queue announcements from this.
        await self.agi.set_variable("CHANNEL(language)", language)
        await self.agi.set_variable(var.LANGUAGE, language)
        await self.calls.language_set(self.call_id, language)

    async def ensure_notice(self, notice: str | None = None) -> None:
        """The recording notice, in full, before anything that can ring an operator."""
        notice = notice or self.entry_notice
        if self.notice_played and notice == self.entry_notice:
            return
        # The entry's notice in the entry's notice languages; a desk's own in the caller's.
        languages = self.notice_languages if notice == self.entry_notice else [self.language]
        await play_notice(self.agi, self.calls, self.call_id, self.ctx.prompts, notice,
                          languages)
        self.notice_played = True
        self.entry_notice = notice

    # ---- the journey ----
    async def run(self) -> None:
        found = self.journey.entry_for(self.did) if self.journey is not None else None
        if found is not None:
            await self.calls.entry_chosen(self.call_id, found[0], found[1].language)
            await self.set_language(found[1].language)
        # Restrictions before anything else is played: a refused caller hears only why.
        self.decision = await decide_call(self.agi, self.ctx, self.call_id,
                                          found[0] if found else None)
        if self.decision.action == "refuse":
            await self.refuse()
            return
        if self.journey is None:
            await self.ensure_notice()
            await self.to_desk(self.ctx.default_desk, reason="no journey loaded")
            return
        if found is None:
            await self.ensure_notice()
            await self.to_desk(self.ctx.default_desk, reason=f"no entry for {self.did}")
            return
        entry = found[1]
        self.entry_notice = entry.notice
        self.notice_languages = entry.notice_langs
        # Should the controller fail during the notice, the fail-safe replays it in these.
        await self.agi.set_variable(var.NOTICE_LANGS, "&".join(self.notice_languages))
        closed = bool(entry.schedule) and not is_open(
            self.journey.schedules[entry.schedule], datetime.now(UTC)
        )
        if closed:
            await self.calls.schedule_closed(self.call_id, entry.schedule or "")
        else:
            if entry.greeting:
                await self.play(entry.greeting, "greeting")
            await self.ensure_notice()
        await self.follow(entry.closed if closed else entry.start, closed=closed)

    async def follow(self, route: Route, *, closed: bool = False) -> None:
        assert self.journey is not None
        current_menu: str | None = None
        while True:
            if route.language:
                await self.set_language(route.language)
            if route.menu is not None or (route.repeat and current_menu is not None):
                current_menu = route.menu or current_menu
                assert current_menu is not None
                route = await self.run_menu(current_menu, self.journey.menus[current_menu])
                continue
            if route.desk is not None:
                await self.to_desk(route.desk, reason=f"route {route.describe()}")
                return
            if route.message is not None:
                await self.play(route.message, "message")
                disposition = Disposition.CLOSED if closed else Disposition.MESSAGE
                await self.calls.disposed(self.call_id, disposition, route.message)
                await self.hang_up()
                return
            await self.calls.disposed(self.call_id, Disposition.CLOSED if closed
                                      else Disposition.HANGUP)
            await self.hang_up()
            return

    async def run_menu(self, name: str, menu: Menu) -> Route:
        await self.calls.menu_entered(self.call_id, name)
        failures = 0
        while True:
            if self.steps >= MAX_MENU_STEPS:
                route = step_limit_route(menu, self.ctx.default_desk)
                await self.calls.menu_step_limit(self.call_id, name, route.describe())
                return route
            self.steps += 1
            key = await self.play(menu.prompt, f"menu {name}", interruptible=True)
            if key is None:
                key = await self.wait_for_key(menu.timeout)
            step = answer(menu, key, failures)
            failures = step.failures
            self.menu_path.append(f"{name}:{key if key is not None else '-'}")
            await self.calls.menu_input(
                self.call_id, name, key, step.result,
                step.route.describe() if step.route else None, path=self.menu_path,
            )
            if step.feedback:
                await self.play(step.feedback, step.result)
            if step.route is None or step.route.repeat:
                continue
            return step.route

    async def wait_for_key(self, timeout: float) -> str | None:
        """A key within the menu's timeout, or None for silence. A hang-up while waiting is
        a hang-up, never a 'no input' answer."""
        digit = await self.agi.command(f"WAIT FOR DIGIT {int(timeout * 1000)}")
        if digit.value < 0 or self.agi.hung_up:
            raise AgiHangup("caller hung up while the menu waited for a key")
        return chr(digit.value) if digit.value > 0 else None

    async def refuse(self) -> None:
        """On the caller's own channel, so the refusal is in the recording; then hang up."""
        assert self.decision.prompt is not None
        await self.play(self.decision.prompt, f"refusal {self.decision.rule}")
        await self.calls.disposed(self.call_id, Disposition.REFUSED, self.decision.rule or "")
        await self.agi.set_variable(var.ACTION, var.ACTION_REFUSED)

    async def to_desk(self, name: str, *, reason: str) -> None:
        if self.decision.desk and self.decision.desk != name:
            # A withheld setting's desk or the repeat supervisor step: instead of the journey's.
            reason = f"{self.decision.rule}: instead of {name} ({reason})"
            name = self.decision.desk
        desk = self.journey.desks.get(name) if self.journey is not None else None
        await self.ensure_notice(desk.notice if desk else None)
        await self.calls.disposed(self.call_id, Disposition.QUEUED, name)
        await queue_to_desk(self.agi, self.calls, self.call_id, name, desk, reason,
                            protection=self.decision.protection,
                            limits=self.ctx.protection().limits)

    async def hang_up(self) -> None:
        await self.agi.set_variable(var.ACTION, var.ACTION_HANGUP)


async def handle(agi: AgiChannel, ctx: HandlerContext) -> None:
    recording = await agi.get_variable(var.RECORDING)
    did = await agi.get_variable(var.DID) or agi.headers.get("agi_dnid")
    await ctx.calls.call_started(
        agi.unique_id,
        caller=agi.headers.get("agi_callerid"),
        caller_name=agi.headers.get("agi_calleridname") or None,
        did=did,
        recording_path=f"{recording}.wav" if recording else None,
        source=Source.CONTROLLER,
    )
    journey = ctx.journey()
    if journey is not None and journey.version:
        # The overflow handler, later in the call, follows this same journey.
        await agi.set_variable(var.JOURNEY, journey.version)
    try:
        await InboundCall(agi, ctx, journey, did).run()
    except NoticeFailed as exc:
        await end_without_notice(agi, ctx.calls, agi.unique_id, exc)
