"""The caller journey: entry points, menus and desks, read from the YAML files in dialplan/.

Files are validated as a whole before they are used: every error names the file, the line
and the problem, and a journey that fails validation never replaces the one in service.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ivr.policy.schedule import Schedule, ScheduleError
from ivr.policy.schedule_parse import parse_schedule
from ivr.yaml_lines import LocatedYaml, YamlFileError, read_yaml_mapping

NAME = r"^[a-z][a-z0-9_-]{0,31}$"
# Prompt and music-class names end up in file paths and Asterisk config lines (queues.conf).
Prompt = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
KEYS = "0123456789*#"
Language = Literal["ja", "en"]
MAX_MENU_STEPS = 30  # a caller pressing 'repeat' forever still ends somewhere


class JourneyError(ValueError):
    """One or more problems, each `file:line: problem`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Model):
    """Where a key, a timeout or a closed schedule sends the caller. Exactly one of
    menu / desk / message / repeat / hangup; `language` may accompany menu or desk."""

    menu: str | None = None
    desk: str | None = None
    message: Prompt | None = None
    repeat: bool = False
    hangup: bool = False
    language: Language | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Route:
        targets = [n for n in ("menu", "desk", "message") if getattr(self, n) is not None]
        targets += [n for n in ("repeat", "hangup") if getattr(self, n)]
        if len(targets) != 1:
            found = ", ".join(targets) or "none"
            raise ValueError(
                f"a route needs exactly one of menu, desk, message, repeat, hangup (found {found})"
            )
        if self.language and (self.message or self.repeat or self.hangup):
            raise ValueError("language can only go with menu or desk")
        return self

    @property
    def kind(self) -> str:
        for name in ("menu", "desk", "message"):
            if getattr(self, name) is not None:
                return name
        return "repeat" if self.repeat else "hangup"

    def describe(self) -> str:
        target = {"menu": self.menu, "desk": self.desk, "message": self.message}.get(self.kind)
        return f"{self.kind}:{target}" if target else self.kind


class Menu(_Model):
    prompt: Prompt
    choices: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], Route] = Field(min_length=1)
    timeout: float = Field(default=5.0, ge=1.0, le=30.0)
    retries: int = Field(default=2, ge=0, le=5)
    invalid_prompt: Prompt = "invalid"
    no_input_prompt: Prompt = "no_input"
    default: Route


Strategy = Literal["ringall", "leastrecent", "fewestcalls", "rrmemory", "linear", "random"]


class Desk(_Model):
    """A desk is an Asterisk queue."""

    title: str = ""
    strategy: Strategy = "rrmemory"
    members: list[str] = Field(default_factory=list)
    music: Prompt = "default"
    ring_timeout: int = Field(default=15, ge=3, le=120)
    max_wait: int = Field(default=300, ge=5, le=7200)
    announce_position: bool = True
    announce_frequency: int = Field(default=30, ge=0, le=600)
    periodic_announce: Prompt | None = "please_wait"
    periodic_frequency: int = Field(default=45, ge=0, le=600)
    notice: Prompt | None = None
    overflow: Route = Route(message="goodbye")

    @model_validator(mode="after")
    def _overflow(self) -> Desk:
        if self.overflow.kind in ("menu", "repeat"):
            raise ValueError("overflow must go to a desk, a message or hangup")
        return self


class Entry(_Model):
    """An entry point: one or more dialled numbers, or `default` for any other number."""

    numbers: list[Annotated[str, Field(pattern=r"^(\+?[0-9]{1,20}|default)$")]] = Field(
        min_length=1
    )
    title: str = ""
    language: Language = "ja"
    greeting: Prompt | None = "welcome"
    notice: Prompt = "notice"
    # The languages the notice plays in, in order, before the start route (a language menu
    # comes after it): e.g. [ja, en] for a bilingual entry. Default: the entry's language.
    notice_languages: list[Language] | None = Field(default=None, min_length=1, max_length=2)
    schedule: str | None = None
    closed: Route = Route(message="closed")
    start: Route

    @model_validator(mode="after")
    def _notice_languages(self) -> Entry:
        if self.notice_languages and len(set(self.notice_languages)) != len(
                self.notice_languages):
            raise ValueError("notice_languages: a language is listed twice")
        return self

    @property
    def notice_langs(self) -> list[str]:
        return list(self.notice_languages or [self.language])


class JourneyFile(_Model):
    schedules: dict[Annotated[str, Field(pattern=NAME)], dict[str, Any]] = Field(
        default_factory=dict
    )
    desks: dict[Annotated[str, Field(pattern=NAME)], Desk] = Field(default_factory=dict)
    menus: dict[Annotated[str, Field(pattern=NAME)], Menu] = Field(default_factory=dict)
    entries: dict[Annotated[str, Field(pattern=NAME)], Entry] = Field(default_factory=dict)


@dataclass(frozen=True)
class Journey:
    """The validated journey, ready for calls. Immutable: a reload builds a new one."""

    schedules: Mapping[str, Schedule]
    desks: Mapping[str, Desk]
    menus: Mapping[str, Menu]
    entries: Mapping[str, Entry]
    by_number: Mapping[str, str]
    sources: tuple[str, ...]
    # Identifies this journey (a digest of its files, taken once at load): calls carry it in
    # IVR_JOURNEY so their overflow follows the journey they started with.
    version: str = ""

    def entry_for(self, dialled: str | None) -> tuple[str, Entry] | None:
        name = self.by_number.get(dialled or "") or self.by_number.get("default")
        return (name, self.entries[name]) if name else None

    def prompts_used(self) -> set[str]:
        names: set[str] = set()
        for entry in self.entries.values():
            names.update(p for p in (entry.greeting, entry.notice) if p)
            names.update(_route_prompts(entry.closed))
            names.update(_route_prompts(entry.start))
        for menu in self.menus.values():
            names.update((menu.prompt, menu.invalid_prompt, menu.no_input_prompt))
            names.update(_route_prompts(menu.default))
            for route in menu.choices.values():
                names.update(_route_prompts(route))
        for desk in self.desks.values():
            names.update(p for p in (desk.notice, desk.periodic_announce) if p)
            names.update(_route_prompts(desk.overflow))
        return names


def _route_prompts(route: Route) -> list[str]:
    return [route.message] if route.message else []


# ---- loading ----

def _read(path: Path) -> tuple[dict[str, Any], LocatedYaml]:
    try:
        return read_yaml_mapping(path)
    except YamlFileError as exc:
        raise JourneyError([str(exc)]) from exc


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key missing"
    return msg


def load_journey(
    paths: Iterable[Path],
    *,
    operators: Iterable[str] = (),
    prompts: Mapping[str, Mapping[str, str]] | None = None,
) -> Journey:
    """Read, merge and check every file; raise JourneyError listing all problems."""
    files = sorted(paths)
    if not files:
        raise JourneyError(["no journey files (dialplan/*.yaml) found"])
    problems: list[str] = []
    merged: dict[str, dict[str, Any]] = {
        "schedules": {}, "desks": {}, "menus": {}, "entries": {}
    }
    where: dict[tuple[str, str], str] = {}  # (section, name) -> "file:line"
    schedule_files: dict[str, tuple[Path, LocatedYaml]] = {}
    for path in files:
        data, located = _read(path)
        try:
            parsed = JourneyFile.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                line = located.line(loc)
                key = ".".join(str(p) for p in loc)
                problems.append(f"{path}:{line or 1}: {key}: {_message(error)}")
            continue
        for section in merged:
            for name, value in getattr(parsed, section).items():
                spot = f"{path}:{located.line((section, name)) or 1}"
                if name in merged[section]:
                    problems.append(f"{spot}: {section}.{name} is already defined at "
                                    f"{where[(section, name)]}")
                    continue
                merged[section][name] = value
                where[(section, name)] = spot
                if section == "schedules":
                    schedule_files[name] = (path, located)
    if problems:
        raise JourneyError(problems)

    schedules: dict[str, Schedule] = {}
    for name, raw in merged["schedules"].items():
        try:
            schedules[name] = parse_schedule(name, raw)
        except ScheduleError as exc:
            # The line of the offending value itself (a misspelt calendar, a bad date).
            path, located = schedule_files[name]
            spot = f"{path}:{located.line(('schedules', name, *exc.path)) or 1}"
            detail = ".".join(str(p) for p in exc.path)
            problems.append(f"{spot}: schedules.{name}{'.' + detail if detail else ''}: {exc}")

    journey = Journey(
        schedules=schedules,
        desks=merged["desks"],
        menus=merged["menus"],
        entries=merged["entries"],
        by_number={},
        sources=tuple(str(p) for p in files),
    )
    problems += check_journey(journey, where, set(operators), prompts,
                              defined_schedules=set(merged["schedules"]))
    if problems:
        raise JourneyError(problems)
    by_number: dict[str, str] = {}
    for name, entry in journey.entries.items():
        for number in entry.numbers:
            by_number[number] = name
    return Journey(**{**journey.__dict__, "by_number": by_number,
                      "version": _version(journey.sources)})


def _version(sources: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for source in sources:
        with open(source, "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:16]


def check_journey(
    journey: Journey,
    where: Mapping[tuple[str, str], str],
    operators: set[str],
    prompts: Mapping[str, Mapping[str, str]] | None,
    *,
    defined_schedules: set[str] | None = None,
) -> list[str]:
    """Cross-references, reachability and exits: what the schema cannot see.

    ``defined_schedules``: names defined in the files, also those that failed to parse
    (already reported), so an entry naming one is not reported a second time."""
    problems: list[str] = []

    def at(section: str, name: str) -> str:
        return where.get((section, name), "journey")

    def check_route(section: str, name: str, label: str, route: Route) -> None:
        if route.menu and route.menu not in journey.menus:
            problems.append(f"{at(section, name)}: {section}.{name}.{label}: "
                            f"no menu named {route.menu!r}")
        if route.desk and route.desk not in journey.desks:
            problems.append(f"{at(section, name)}: {section}.{name}.{label}: "
                            f"no desk named {route.desk!r}")

    if not journey.entries:
        problems.append("journey: no entries: define at least one entry point")
    seen_numbers: dict[str, str] = {}
    for name, entry in journey.entries.items():
        for number in entry.numbers:
            if number in seen_numbers:
                problems.append(f"{at('entries', name)}: entries.{name}.numbers: {number} "
                                f"is already the number of entry {seen_numbers[number]!r}")
            seen_numbers[number] = name
        known = journey.schedules.keys() | (defined_schedules or set())
        if entry.schedule and entry.schedule not in known:
            problems.append(f"{at('entries', name)}: entries.{name}.schedule: "
                            f"no schedule named {entry.schedule!r}")
        if entry.start.repeat:
            problems.append(f"{at('entries', name)}: entries.{name}.start: "
                            "repeat has no menu to repeat here")
        check_route("entries", name, "start", entry.start)
        check_route("entries", name, "closed", entry.closed)
        if entry.closed.repeat:
            problems.append(f"{at('entries', name)}: entries.{name}.closed: "
                            "repeat has no menu to repeat here")
    for name, menu in journey.menus.items():
        for key, route in menu.choices.items():
            check_route("menus", name, f"choices.{key}", route)
        check_route("menus", name, "default", menu.default)
        if menu.default.repeat or menu.default.menu == name:
            problems.append(f"{at('menus', name)}: menus.{name}.default: the default route "
                            "must leave the menu, or callers who never press a key loop forever")
    for name, desk in journey.desks.items():
        check_route("desks", name, "overflow", desk.overflow)
        if desk.overflow.desk == name:
            problems.append(f"{at('desks', name)}: desks.{name}.overflow: a desk cannot "
                            "overflow to itself")
        unknown = [m for m in desk.members if m not in operators]
        if unknown and operators:
            problems.append(f"{at('desks', name)}: desks.{name}.members: not operators in "
                            f"ivr.toml: {', '.join(unknown)}")

    if prompts is not None:
        for prompt in sorted(journey.prompts_used()):
            missing = [lang for lang in ("ja", "en") if lang not in prompts.get(prompt, {})]
            if missing:
                problems.append(f"journey: prompt {prompt!r} is used but has no "
                                f"{'/'.join(missing)} text or recording")

    if problems:
        return problems  # reachability needs sound references

    # Menus nobody can reach are mistakes (a typo in a route, a forgotten entry).
    reachable: set[str] = set()
    stack = [r.menu for e in journey.entries.values() for r in (e.start, e.closed) if r.menu]
    while stack:
        menu_name = stack.pop()
        if menu_name in reachable:
            continue
        reachable.add(menu_name)
        menu = journey.menus[menu_name]
        stack += [r.menu for r in (*menu.choices.values(), menu.default) if r.menu]
    for name in journey.menus:
        if name not in reachable:
            problems.append(f"{at('menus', name)}: menus.{name}: unreachable: no entry or "
                            "menu leads to it")

    # Every menu must lead somewhere that ends the menu part: a desk, a message or hang-up.
    exits: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, menu in journey.menus.items():
            if name in exits:
                continue
            routes = (*menu.choices.values(), menu.default)
            if any(r.kind in ("desk", "message", "hangup") or r.menu in exits for r in routes):
                exits.add(name)
                changed = True
    for name in journey.menus:
        if name not in exits:
            problems.append(f"{at('menus', name)}: menus.{name}: a loop with no exit: no key "
                            "and no default ever reaches a desk, a message or hang-up")

    # Overflow chains must end.
    for name in journey.desks:
        seen, current = [name], journey.desks[name].overflow
        while current.desk:
            if current.desk in seen:
                problems.append(f"{at('desks', name)}: desks.{name}.overflow: overflow loop "
                                f"{' -> '.join([*seen, current.desk])}")
                break
            seen.append(current.desk)
            current = journey.desks[current.desk].overflow

    return problems


def journey_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("."))
