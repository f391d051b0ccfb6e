"""The protection settings in force, and changes to them (CLI, API, the file at start-up).

Every node keeps the newest version in memory and polls `SELECT max(id)` once a second
(`refresh`): a FastAGI handler reads `current()` with no I/O at all, and a change made on
any node applies everywhere within about a second. A change made through this process
applies to the very next call (the cache is replaced before the change returns).
A change is made from the newest version with one section replaced or patched, validated as
a whole (with the journey's desks and entries and the configured operators), stored as a
new version and audited with the section before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.protection.admin_errors import AdminError, Conflict, NotFound
from ivr.protection.settings import SECTIONS, ProtectionSettings, SettingsError, parse_settings
from ivr.protection.store_settings import SettingsStore, SettingsVersion

log = logging.getLogger("ivr.protection.settings")

POLL_SECONDS = 1.0


class Audit(Protocol):
    async def record(self, *, actor: str, action: str, target: str = "", before: Any = None,
                     after: Any = None, role: str = "", origin: str = "") -> Any: ...


@dataclass(frozen=True)
class Actor:
    """Who makes a change and from where: ("alice", "admin", "api 10.0.0.5") or
    ("root", "admin", "cli")."""

    name: str
    role: str
    origin: str

    @property
    def source(self) -> str:
        return "api" if self.origin.startswith("api") else "cli"


@dataclass(frozen=True)
class KnownNames:
    desks: set[str] | None = None
    entries: set[str] | None = None
    operators: set[str] | None = None
    # desk -> its members (the journey's desks.members): an operator's desks, for outbound
    members: dict[str, set[str]] | None = None


def error_from(exc: SettingsError) -> AdminError:
    """The first problem as an AdminError naming its field ("limits.desks.x.limit: ...")."""
    first = exc.problems[0] if exc.problems else str(exc)
    field, _, message = first.partition(": ")
    if not message:
        field, message = "", first
    return AdminError("; ".join(exc.problems), field=field or None)


def merge_patch(base: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: mappings merge key by key, null removes, the rest replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class SettingsService:
    def __init__(self, store: SettingsStore, audit: Audit,
                 known: Callable[[], KnownNames] = KnownNames,
                 file: Callable[[], ProtectionSettings] | None = None):
        self.store = store
        self.audit = audit
        self.known = known  # the journey changes on reload: asked at every change
        # protection.yaml, for a store that has no version yet (the CLI before the first
        # start): a change is then made from the file, not from the built-in defaults.
        self.file = file
        self._settings = ProtectionSettings()
        self._version = 0
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task | None = None
        self.on_change: list[Callable[[ProtectionSettings], Awaitable[None] | None]] = []
        self._listening: set[asyncio.Future] = set()

    # ---- in force ----
    def current(self) -> ProtectionSettings:
        """The settings in force; no I/O (what every FastAGI call reads)."""
        return self._settings

    @property
    def version(self) -> int:
        return self._version

    async def refresh(self) -> bool:
        """Load the newest version if it is not the one held; True when it changed. A stored
        version that no longer validates (a desk removed from the journey since) stays in
        force rather than falling back to no protection; it is logged."""
        newest = await self.store.newest_id()
        if newest == self._version:
            return False
        version = await self.store.get(newest)
        if version is None:
            return False
        self._take(version)
        return True

    def _take(self, version: SettingsVersion) -> None:
        try:
            settings = parse_settings(version.document)
        except SettingsError as exc:
            log.error("event=settings_version_invalid version=%d problems=%r", version.id,
                      str(exc))
            return
        changed = settings != self._settings
        self._settings, self._version = settings, version.id
        log.info("event=settings_in_force version=%d source=%s actor=%s", version.id,
                 version.source, version.actor)
        if changed:
            self._notify(settings)

    def _notify(self, settings: ProtectionSettings) -> None:
        """Tell the listeners (the controller re-renders Asterisk's share of the settings);
        a listener's failure is logged, never the caller's problem."""
        for listener in self.on_change:
            try:
                result = listener(settings)
            except Exception:
                log.exception("event=settings_listener_failed")
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._listening.add(task)
                task.add_done_callback(self._listening.discard)

    async def start_polling(self, every: float = POLL_SECONDS) -> None:
        await self.refresh()

        async def poll() -> None:
            while True:
                await asyncio.sleep(every)
                try:
                    await self.refresh()
                except Exception as exc:  # the store restarting: keep what we have
                    log.warning("event=settings_refresh_failed error=%s", exc)

        self._poller = asyncio.create_task(poll(), name="settings-poll")

    async def stop_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    # ---- reading ----
    async def show(self, section: str | None = None,
                   version_id: int | None = None) -> dict[str, Any]:
        """The newest version (or version `version_id`), whole or one section."""
        if version_id is None:
            version = await self.store.newest()
        else:
            version = await self.store.get(version_id)
            if version is None:
                raise NotFound(f"no settings version {version_id}", field="version")
        if version is not None:
            document, meta = version.document, version.to_json()
        elif self.file is not None:  # nothing stored yet: the file is what will be in force
            document, meta = self.file().document(), {"version": 0, "source": "file"}
        else:
            document, meta = ProtectionSettings().document(), {"version": 0,
                                                               "source": "default"}
        if section is None:
            return {**meta, "settings": document}
        self._check_section(section)
        return {**meta, "section": section, "settings": document.get(section, {})}

    async def history(self, limit: int = 50) -> list[dict[str, Any]]:
        return [v.to_json() for v in await self.store.history(limit)]

    # ---- changing ----
    async def sync_file(self, settings: ProtectionSettings, actor: Actor) -> int | None:
        """At start-up and reload: the file becomes a new version when it differs from the
        newest version that came from the file (an API change made since stays in force
        while the file is unchanged). The new version's id, or None."""
        async with self._lock:
            last_file = await self.store.newest("file")
            if last_file is not None and last_file.sha256 == settings.sha256():
                await self.refresh()
                return None
            before = await self.store.newest()
            version = await self.store.add(settings.document(), settings.sha256(),
                                           source="file", actor=actor.name)
            await self.audit.record(actor=actor.name, role=actor.role, action="settings.file",
                                    target=f"settings v{version}",
                                    before=before.document if before else None,
                                    after=settings.document(), origin=actor.origin)
            await self.refresh()
            return version

    async def replace(self, section: str | None, data: Any, actor: Actor) -> dict[str, Any]:
        """PUT: the section (or the whole document when section is None) becomes data."""
        return await self._change(section, actor, lambda _old: data, "replace")

    async def patch(self, section: str | None, data: Any, actor: Actor) -> dict[str, Any]:
        """PATCH: a JSON merge patch (RFC 7396) of the section or the whole document."""
        if not isinstance(data, dict):
            raise AdminError("a patch must be a JSON object", field=section or "settings")
        return await self._change(section, actor, lambda old: merge_patch(old, data), "patch")

    async def _change(self, section: str | None, actor: Actor,
                      make: Callable[[Any], Any], verb: str) -> dict[str, Any]:
        if section is not None:
            self._check_section(section)
        if self.file is not None and await self.store.newest_id() == 0:
            await self.sync_file(self.file(), Actor("file", "admin", "file"))
        for _attempt in range(5):
            newest = await self.store.newest()
            base = newest.document if newest else ProtectionSettings().document()
            document = dict(base)
            if section is None:
                document = make(base)
                if not isinstance(document, dict):
                    raise AdminError("the settings must be a JSON object", field="settings")
            else:
                document[section] = make(base.get(section, {}))
            settings = self._validate(document)
            if settings.sha256() == ProtectionSettings.model_validate(base).sha256():
                return {"version": newest.id if newest else 0, "changed": False}
            version = await self.store.add(settings.document(), settings.sha256(),
                                           source=actor.source, actor=actor.name,
                                           expect_newest=newest.id if newest else 0)
            if version is None:
                continue  # another change came first: make this one from it
            before = base if section is None else base.get(section)
            after = settings.document()
            after = after if section is None else after.get(section)
            await self.audit.record(actor=actor.name, role=actor.role,
                                    action=f"settings.{verb}",
                                    target=f"settings.{section}" if section else "settings",
                                    before=before, after=after, origin=actor.origin)
            await self.refresh()
            return {"version": version, "changed": True}
        raise Conflict("the settings kept changing under this change; try again")

    def _validate(self, document: dict[str, Any]) -> ProtectionSettings:
        known = self.known()
        try:
            return parse_settings(document, desks=known.desks, entries=known.entries,
                                  operators=known.operators)
        except SettingsError as exc:
            raise error_from(exc) from exc

    @staticmethod
    def _check_section(section: str) -> None:
        if section not in SECTIONS:
            raise NotFound(f"no settings section {section!r}; sections: {', '.join(SECTIONS)}",
                           field="section")
