"""The controller: store, call service, FastAGI, AMI and the web server on one event loop."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext, Prompts
from ivr.agi.server import AgiServer
from ivr.ami.client import AmiClient, AmiError
from ivr.ami.tracker import CallTracker
from ivr.asterisk.process import asterisk_cli
from ivr.asterisk.render import AsteriskPaths, asterisk_protection, render_asterisk_config
from ivr.audio.prompts import PromptEngineError
from ivr.cdr_import import import_missed_calls
from ivr.config import Config
from ivr.cooldown.service import CooldownService
from ivr.credentials import Secrets
from ivr.journey import Journey, JourneyError
from ivr.live.service import LiveProtection
from ivr.loop_watch import LoopWatch
from ivr.model import CallRecord
from ivr.operators import OperatorService
from ivr.protection.service_blocks import BlockService
from ivr.protection.service_features import FeatureService
from ivr.protection.service_outbound import OutboundService
from ivr.protection.service_rules import RulesService
from ivr.protection.service_settings import Actor, KnownNames, SettingsService
from ivr.protection.service_tokens import TokenService
from ivr.protection.settings import ProtectionSettings, SettingsError, load_settings_file
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import BlockStore
from ivr.protection.store_settings import SettingsStore
from ivr.protection.store_tokens import TokenStore
from ivr.recording import RecordingFinaliser
from ivr.recordings.runtime import RecordingsRuntime
from ivr.service import CallService
from ivr.setup import (
    check_notices,
    journey_version,
    load_current_journey,
    render_all_prompts,
)
from ivr.store import CallStore, Database

log = logging.getLogger("ivr.controller")

FILE_ACTOR = Actor(name="file", role="admin", origin="file")

KEPT_JOURNEYS = 16  # journeys kept for calls in progress across reloads


@dataclass
class Controller:
    config: Config
    secrets: Secrets
    journey: Journey
    db: Database = field(init=False)
    calls: CallService = field(init=False)
    finaliser: RecordingFinaliser = field(init=False)
    agi: AgiServer = field(init=False)
    ami: AmiClient = field(init=False)

    def __post_init__(self) -> None:
        self.db = Database(self.config.database_url)
        self.asterisk_paths = AsteriskPaths(self.config.asterisk_dir)
        self._reconcile_lock = asyncio.Lock()
        self._reconcile_tasks: set[asyncio.Task] = set()
        self._stopping = False
        # Journeys by version: calls in progress keep the one they started with (IVR_JOURNEY).
        self._journeys: OrderedDict[str, Journey] = OrderedDict()
        self._keep_journey(self.journey)
        # Is the loop keeping up: lateness on /metrics, what held it in the log.
        self.loop_watch = LoopWatch()

    def _keep_journey(self, journey: Journey) -> None:
        self._journeys[journey.version] = journey
        self._journeys.move_to_end(journey.version)
        while len(self._journeys) > KEPT_JOURNEYS:
            self._journeys.popitem(last=False)

    def journey_for(self, version: str | None) -> Journey:
        return self._journeys.get(version or "", self.journey)

    async def start(self) -> None:
        await self.loop_watch.start()
        await self.db.open()
        self.calls = CallService(
            CallStore(self.db), node=self.config.server.node_name, on_ended=self._call_ended
        )
        self.audit = AuditStore(self.db)
        # Recording as evidence (ivr/recordings/): index, chain, archive, analysis, retention.
        self.recordings = RecordingsRuntime(self.db, self.calls, self.audit, self.config,
                                            node=self.node)
        self.recording_index = self.recordings.index
        self.recording_chain = self.recordings.chain
        self.finaliser = self.recordings.finaliser
        self.tokens = TokenService(TokenStore(self.db), self.audit)
        self.settings = SettingsService(SettingsStore(self.db), self.audit, self.known_names)
        # The file's settings were checked by `ivr setup`/`ivr run` before we got here.
        from_file = self.load_protection()
        await self.settings.sync_file(from_file, FILE_ACTOR)
        await self.settings.start_polling()
        # `ivr run` rendered Asterisk's files from protection.yaml; a version changed since
        # through the CLI/API (or on another node) is what is in force: render that.
        self._asterisk_protection = asterisk_protection(self.config, from_file)
        self.settings.on_change.append(self._protection_changed)
        self.blocks = BlockService(BlockStore(self.db), self.audit,
                                   country=self.settings.current().numbers.country_code,
                                   entries=set(self.journey.entries))
        self.rules = RulesService(self.db, self.settings.current, self.known_names)
        self.features = FeatureService(self.calls, self.blocks,
                                       lambda: self.settings.current().features)
        # Live protection (ivr/live/): shouting followed while an operator is connected.
        self.live = LiveProtection(self.calls, lambda *a, **k: self.ami.action(*a, **k),
                                   lambda: self.settings.current().live)
        tracker = CallTracker(self.calls, self.features, self.live)
        # Cool-down after a hard call (ivr/cooldown/): the operator paused for a wrap-up.
        self.cooldown = CooldownService(lambda *a, **k: self.ami.action(*a, **k), self.calls,
                                        lambda: self.settings.current().cooldown,
                                        [o.endpoint for o in self.config.operators])
        self.calls.listeners.append(self.cooldown.event_recorded)
        ctx = HandlerContext(
            calls=self.calls,
            prompts=Prompts(self.config.prompts_dir, self.config.prompts.language),
            notice=self.config.prompts.notice,
            default_desk=self.config.desk.default,
            journey=lambda: self.journey,
            journey_for=self.journey_for,
            protection=self.settings.current,
            outbound=OutboundService(self.config.secrets_path, self.audit),
        )
        self.agi = AgiServer(
            ctx,
            host=self.config.agi.bind,
            port=self.config.agi.port,
            header_timeout=self.config.agi.header_timeout,
            command_timeout=self.config.agi.command_timeout,
        )
        self.ami = AmiClient(
            host="127.0.0.1",
            port=self.config.asterisk.ami_port,
            username=self.config.asterisk.ami_user,
            secret=self.secrets.ami_secret,
            on_event=tracker.handle,
            on_login=self._reconcile_soon,
        )
        await self.recordings.start()
        await self.agi.start()
        await self.ami.start()
        await self.live.start()
        await self.cooldown.start()
        await self._protection_changed(self.settings.current())
        self._write_state(time.time(), ok=True, errors=[])

    def known_names(self) -> KnownNames:
        """What the protection settings may name: the journey's desks and entries in service
        and the configured operators."""
        return KnownNames(desks=set(self.journey.desks), entries=set(self.journey.entries),
                          operators={o.endpoint for o in self.config.operators},
                          members={n: set(d.members) for n, d in self.journey.desks.items()})

    def load_protection(self, journey: Journey | None = None):
        journey = journey or self.journey
        return load_settings_file(self.config.protection_file, desks=set(journey.desks),
                                  entries=set(journey.entries),
                                  operators={o.endpoint for o in self.config.operators})

    async def reload(self) -> bool:
        """Load dialplan/ and protection.yaml again; if either is bad it is reported and
        what is in service stays."""
        started = time.time()
        try:
            journey = await asyncio.to_thread(load_current_journey, self.config)
            protection = await asyncio.to_thread(self.load_protection, journey)
            # Prompts a new journey uses (new texts in prompts.yaml) exist before any call.
            await asyncio.to_thread(render_all_prompts, self.config)
            await asyncio.to_thread(check_notices, self.config, journey)
            # Refuses a value that would break a rendered file (RenderError, a ValueError).
            render_asterisk_config(self.config, self.secrets, journey)
        except (JourneyError, SettingsError, ValueError, PromptEngineError) as exc:
            log.error("event=reload_refused problems=%r", str(exc))
            self._write_state(started, ok=False, errors=str(exc).splitlines())
            return False
        self.journey = journey
        self._keep_journey(journey)
        await self.settings.sync_file(protection, FILE_ACTOR)
        # The check above rendered protection.yaml; a version newer than the file (CLI/API)
        # stays in force: render what is.
        await self._protection_changed(self.settings.current(), rendered_from_file=True)
        self.blocks.entries = set(journey.entries)
        await self._reload_features()
        try:
            await self.ami.action({"Action": "QueueReload", "Members": "no", "Rules": "yes",
                                   "Parameters": "yes"}, as_list=False)
        except AmiError as exc:
            log.warning("event=queue_reload_failed error=%s", exc)
        self._write_state(started, ok=True, errors=[])
        log.info("event=journey_reloaded version=%s desks=%d menus=%d entries=%d",
                 journey_version(journey), len(journey.desks), len(journey.menus),
                 len(journey.entries))
        return True

    async def _protection_changed(self, settings: ProtectionSettings, *,
                                  rendered_from_file: bool = False) -> None:
        """Settings in force changed (file, CLI, API, another node): what Asterisk holds of
        them (feature codes, the fail-safe's limits, emergency numbers) is rendered again and
        reloaded; the rest applies to the next call by itself."""
        wanted = asterisk_protection(self.config, settings)
        if wanted == self._asterisk_protection and not rendered_from_file:
            return
        try:
            await asyncio.to_thread(render_asterisk_config, self.config, self.secrets,
                                    self.journey, settings)
        except (ValueError, OSError) as exc:
            log.error("event=protection_render_failed error=%r", str(exc))
            return
        if wanted != self._asterisk_protection:
            self._asterisk_protection = wanted
            await self._reload_features()
            await self._asterisk_cli("dialplan reload")

    async def _asterisk_cli(self, command: str) -> None:
        try:
            out = await asyncio.to_thread(asterisk_cli, self.asterisk_paths,
                                          self.config.data_dir, command)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("event=asterisk_cli_failed command=%r error=%s", command, exc)
            return
        log.info("event=asterisk_cli command=%r result=%r", command, out.strip()[:200])

    async def _reload_features(self) -> None:
        """Feature codes (features.conf, just rendered) apply to calls connected from now on.
        AMI has no `system` class here (no Reload action), so through Asterisk's CLI."""
        try:
            out = await asyncio.to_thread(asterisk_cli, self.asterisk_paths,
                                          self.config.data_dir, "module reload features")
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("event=features_reload_failed error=%s", exc)
            return
        log.info("event=features_reloaded result=%r", out.strip()[:200])

    def _write_state(self, at: float, *, ok: bool, errors: list[str]) -> None:
        state = {"requested_at": at, "ok": ok, "errors": errors,
                 "version": journey_version(self.journey),
                 "sources": list(self.journey.sources)}
        tmp = self.config.journey_state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.config.journey_state_path)

    def _call_ended(self, record: CallRecord, events: list[dict[str, Any]]) -> None:
        self.finaliser.schedule(record.id, record.recording_path)
        self.cooldown.call_ended(record, events)

    @property
    def node(self) -> str:
        return self.config.server.node_name

    async def _reconcile_soon(self) -> None:
        """At start-up and at every AMI (re)login; stop() waits for it before closing."""
        if self._stopping:
            return
        task = asyncio.current_task()
        if task is not None:
            self._reconcile_tasks.add(task)
        try:
            await self.reconcile()
        finally:
            if task is not None:
                self._reconcile_tasks.discard(task)

    async def reconcile(self) -> None:
        """After (re)connecting to Asterisk: follow live calls we did not see start, close
        this node's calls whose channels are gone, and import the calls Asterisk handled
        without us (CDR). Calls of other nodes sharing the store are never touched."""
        async with self._reconcile_lock:
            # Open calls first: a call that starts after Asterisk's list was taken must not
            # look gone.
            open_calls = await self.calls.store.open_calls(node=self.node)
            try:
                live = await self.live_customer_channels()
            except AmiError as exc:
                log.warning("event=reconcile_skipped reason=%s", exc)
                live = None
            if live is not None:
                for record in open_calls:
                    if record.id not in live:
                        await self.calls.hung_up(record.id, 0, "channel gone while unobserved")
                for call_id, channel in live.items():
                    await self._adopt(call_id, channel)
                await self._migrate_members()
            imported = await import_missed_calls(self.asterisk_paths.cdr_csv, self.calls,
                                                  node=self.node)
            for call_id in imported:
                record = await self.calls.get(call_id)
                if record is not None:
                    self.finaliser.schedule(record.id, record.recording_path)

    async def _migrate_members(self) -> None:
        """Operators logged in as `PJSIP/<op>` before the Local members (astdb) move over."""
        service = OperatorService(self.ami.action, self.calls, self.journey,
                                  [o.endpoint for o in self.config.operators])
        try:
            for desk, operator in await service.migrate_legacy_members():
                log.info("event=member_migrated desk=%s operator=%s", desk, operator)
        except AmiError as exc:
            log.warning("event=member_migration_skipped reason=%s", exc)

    async def _adopt(self, call_id: str, channel: dict[str, str]) -> None:
        if await self.calls.is_known(call_id):
            self.calls.active.add(call_id)
            return
        values = {}
        for name in (var.RECORDING, var.DID, var.FAILSAFE_DONE):
            try:
                reply = await self.ami.action({"Action": "Getvar", "Channel": channel["Channel"],
                                               "Variable": name}, as_list=False)
                values[name] = reply.get("Value") or ""
            except AmiError:
                values[name] = ""
        started = time.time() - _seconds(channel.get("Duration", ""))
        await self.calls.adopt(
            call_id, caller=channel.get("CallerIDNum"), did=values[var.DID] or None,
            recording_path=f"{values[var.RECORDING]}.wav" if values[var.RECORDING] else None,
            started_at=started, failsafe=values[var.FAILSAFE_DONE] == "1",
        )
        log.info("event=call_adopted call_id=%s channel=%s", call_id, channel.get("Channel"))

    async def live_customer_channels(self) -> dict[str, dict[str, str]]:
        """Asterisk's live customer calls: the trunk's channels that root their linked id."""
        response = await self.ami.action({"Action": "CoreShowChannels"}, timeout=10,
                                         as_list=True)
        messages = response if isinstance(response, list) else [response]
        return {
            m["Uniqueid"]: dict(m)
            for m in messages
            if m.get("Event") == "CoreShowChannel" and m.get("Uniqueid")
            and m.get("Uniqueid") == m.get("Linkedid")
            and str(m.get("Channel", "")).startswith("PJSIP/trunk-")
        }

    async def health(self) -> dict[str, bool]:
        ami_up = self.ami.connected
        asterisk_up = ami_up and await self.ami.ping()
        return {
            "asterisk": asterisk_up,
            "ami": ami_up,
            "fastagi": self.agi.listening,
            "database": await self.db.ping(),
        }

    async def stop(self) -> None:
        """In order: stop taking work (FastAGI, AMI, reconciliation), let what was taken
        finish (recordings), then close the store (its writer drains first)."""
        self._stopping = True
        await self.settings.stop_polling()
        await self.recordings.stop_background()
        await self.agi.stop()
        await self.live.stop()
        await self.cooldown.stop()
        await self.ami.stop()
        for task in list(self._reconcile_tasks):
            task.cancel()
        await asyncio.gather(*self._reconcile_tasks, return_exceptions=True)
        await self.recordings.stop()
        # Nothing reports facts any more: the writer commits what it still holds, then the
        # connections close.
        await self.db.close()
        await self.loop_watch.stop()


def _seconds(duration: str) -> float:
    """CoreShowChannel's Duration, 'HH:MM:SS'."""
    try:
        h, m, sec = (int(x) for x in duration.split(":"))
    except ValueError:
        return 0.0
    return float(h * 3600 + m * 60 + sec)
