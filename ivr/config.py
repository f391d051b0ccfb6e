"""The server's configuration: one TOML file, validated at load time.

Every error names the file, the dotted key, its line when it can be found, and the problem,
so an admin can fix a bad file without reading Python.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Port = Annotated[int, Field(ge=1, le=65535)]
# Starts with a letter: a caller number (digits, + * #) from the trunk never equals one.
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
# Section names the rendered pjsip.conf already uses: an operator endpoint must not take one.
RESERVED_ENDPOINTS = frozenset({"trunk", "anonymous", "global", "system", "transport-udp"})
# A prompt (or music class) name: it becomes part of a file path and of Asterisk config lines.
PROMPT_NAME = r"^[A-Za-z0-9_-]{1,64}$"
# What may stand in a path Asterisk is given (asterisk.conf, dialplan globals, MixMonitor
# arguments): nothing that ends a line or splits dialplan arguments (, : ; ? " ( ) $ [ ] ...).
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@-]+$")
# Text inside a quoted Asterisk value (an operator's display name): printable, none of the
# characters that end the quote, the value, the line or a caller id.
_UNSAFE_TEXT = re.compile(r'[\x00-\x1f\x7f"\\;<>\[\]]')


def safe_text(value: str) -> str:
    """Refuse text that could add a line or a section to a rendered Asterisk file."""
    bad = _UNSAFE_TEXT.search(value)
    if bad:
        raise ValueError(
            f"contains {bad.group()!r}: line breaks, control characters and "
            f'" \\ ; < > [ ] are not allowed (it is written into the Asterisk configuration)'
        )
    return value


class ConfigError(Exception):
    """A configuration file is wrong; the message is meant for the admin."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _loopback(value: str) -> str:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc
    if not ip.is_loopback:
        raise ValueError(f"{value} is not a loopback address; this service must not be exposed")
    return value


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc
    return value


class ServerConfig(_Section):
    data_dir: Path = Path("var")
    node_name: str = Field(default="ivr1", pattern=r"^[a-z0-9-]{1,32}$")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class AsteriskConfig(_Section):
    mode: Literal["auto", "system", "chroot"] = "auto"
    chroot: Path = Path("/var/cache/ivr/asterisk-root")
    sip_bind: str = "127.0.0.1"
    sip_port: Port = 5060
    rtp_start: Port = 10000
    rtp_end: Port = 20000
    ami_port: Port = 5038
    ami_user: str = Field(default="ivr", pattern=r"^[a-z][a-z0-9_]{1,31}$")

    _sip = field_validator("sip_bind")(_ip)

    def model_post_init(self, __context: Any) -> None:
        if self.rtp_end <= self.rtp_start:
            raise ValueError("rtp_end must be greater than rtp_start")


class AgiConfig(_Section):
    bind: str = "127.0.0.1"
    port: Port = 4573
    header_timeout: float = Field(default=5.0, gt=0, le=60)
    command_timeout: float = Field(default=120.0, gt=0, le=3600)

    _bind = field_validator("bind")(_loopback)


class WebConfig(_Section):
    bind: str = "127.0.0.1"
    port: Port = 8080

    _bind = field_validator("bind")(_ip)


class TrunkConfig(_Section):
    """The carrier's SIP peer: calls from these addresses are inbound customer calls."""

    match: list[str] = Field(default_factory=lambda: ["127.0.0.1"], min_length=1)
    codecs: list[Literal["alaw", "ulaw", "g722", "opus"]] = Field(
        default_factory=lambda: ["alaw", "ulaw"], min_length=1
    )
    # Where operators' outbound calls go (README "Outbound restrictions"): the carrier's SIP
    # address, host or IP and port, no user part (the dialled number becomes the user).
    # Empty: outbound calls that the rules allow cannot go out (the Dial fails).
    outbound_uri: str = Field(default="", pattern=r"^(sip:[A-Za-z0-9.-]+(:[0-9]{1,5})?)?$")
    # The number presented to the called party; empty: anonymous. Never the operator's.
    outbound_callerid: str = Field(default="", pattern=r"^\+?[0-9]{0,20}$")

    @field_validator("match")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return value


class OperatorConfig(_Section):
    """An operator's SIP phone (a PJSIP endpoint)."""

    endpoint: str
    name: str = Field(default="", max_length=64)
    # A fixed contact for phones that do not register (and for tests); registering phones
    # authenticate with the generated password instead.
    contact: str | None = Field(default=None, pattern=r"^sips?:\S+$")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not ENDPOINT_NAME.match(value):
            raise ValueError("use 1-40 letters, digits, '_', '.' or '-', starting with a letter")
        if value.lower() in RESERVED_ENDPOINTS or value.lower().endswith("-auth"):
            raise ValueError(f"{value!r} is reserved (the trunk and Asterisk's own sections)")
        return value

    _name = field_validator("name")(safe_text)


class RecordingConfig(_Section):
    """Recording as evidence (ivr/recordings/): the archive format, how long recordings are
    kept, and when a side counts as absent."""

    # Separate legs make it possible to tell the caller's voice from the operator's later.
    split_legs: bool = True
    # A second recorder per call (a ChanSpy channel on its own 20 ms clock) that keeps the
    # wall-clock timeline when neither side sends RTP (silence suppression on both phones,
    # hold without music): MixMonitor's file then lacks that time. Costs Asterisk about a
    # third more CPU per call (bench/load.py --kinds baseline,baseline-rec).
    timeline: bool = False
    # The archived stereo file (caller left, operator/IVR right): flac is lossless and about
    # half the size of wav (README "Storage"); both through libsndfile (soundfile).
    format: Literal["wav", "flac"] = "flac"
    # Days a final recording is kept, per desk (the call's last desk), then the file is
    # deleted and a tombstone row stays. Flagged calls are held until a supervisor releases
    # them. 0 keeps for ever.
    retention_days: int = Field(default=365, ge=0, le=36500)
    retention: dict[str, int] = Field(default_factory=dict)
    # A side that carried audio for less than this share of the call is flagged
    # (one_sided:caller / one_sided:other): one-way audio, a muted phone, a carrier fault.
    one_sided_below: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: dict[str, int]) -> dict[str, int]:
        for desk, days in value.items():
            if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", desk):
                raise ValueError(f"{desk!r}: not a desk name")
            if not 0 <= days <= 36500:
                raise ValueError(f"{desk}: retention days must be 0..36500 (0 = for ever)")
        return value

    def retention_for(self, desk: str | None) -> int:
        return self.retention.get(desk or "", self.retention_days)


class PromptConfig(_Section):
    texts: Path = Path("prompts/prompts.yaml")
    # Asterisk's own sounds (queue announcements, numbers) rendered per language; by
    # default asterisk-sounds.yaml next to the texts.
    sounds: Path | None = None
    language: Literal["ja", "en"] = "ja"
    notice: str = Field(default="notice", pattern=PROMPT_NAME)
    failsafe: str = Field(default="failsafe", pattern=PROMPT_NAME)
    voices: dict[str, str] = Field(default_factory=dict)
    # The TTS engine per language; unset languages keep the default (ja: openjtalk,
    # en: espeak). Open JTalk speaks Japanese only.
    engines: dict[Literal["ja", "en"], Literal["openjtalk", "espeak"]] = Field(
        default_factory=dict
    )

    @field_validator("engines")
    @classmethod
    def _engines(cls, value: dict[str, str]) -> dict[str, str]:
        for lang, engine in value.items():
            if engine == "openjtalk" and lang != "ja":
                raise ValueError(f"{lang}: Open JTalk speaks only Japanese; use espeak")
        return value


class DeskConfig(_Section):
    """The desk callers reach when nothing else decides: no journey entry for the number,
    and the fail-safe path when the controller is down. Must be a desk of the journey."""

    default: str = Field(default="support", pattern=r"^[a-z][a-z0-9_-]{0,31}$")


class JourneyConfig(_Section):
    dir: Path = Path("dialplan")


class ProtectionConfig(_Section):
    """Inbound and outbound restrictions, call-time limits and operator feature codes: the
    starting settings (see protection.yaml); the CLI and the API change them from there."""

    file: Path = Path("protection.yaml")


class DatabaseConfig(_Section):
    """Where call records live: empty is the SQLite file <data_dir>/ivr.sqlite3; several
    nodes share one PostgreSQL database (postgresql+asyncpg://user:password@host/dbname)."""

    url: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value:
            return value
        from ivr.store.engine import check_url  # SQLAlchemy only when a URL is given

        return check_url(value)


class Config(_Section):
    server: ServerConfig = ServerConfig()
    asterisk: AsteriskConfig = AsteriskConfig()
    agi: AgiConfig = AgiConfig()
    web: WebConfig = WebConfig()
    trunk: TrunkConfig = TrunkConfig()
    recording: RecordingConfig = RecordingConfig()
    prompts: PromptConfig = PromptConfig()
    desk: DeskConfig = DeskConfig()
    journey: JourneyConfig = JourneyConfig()
    database: DatabaseConfig = DatabaseConfig()
    protection: ProtectionConfig = ProtectionConfig()
    operators: list[OperatorConfig] = Field(default_factory=list)

    # Set by load_config: where relative paths are resolved from.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def model_post_init(self, __context: Any) -> None:
        names = [o.endpoint for o in self.operators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"operator endpoint defined twice: {', '.join(dupes)}")
        ports = {
            "asterisk.sip_port": self.asterisk.sip_port,
            "asterisk.ami_port": self.asterisk.ami_port,
            "agi.port": self.agi.port,
            "web.port": self.web.port,
        }
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port in seen:
                raise ValueError(f"{key} and {seen[port]} both use port {port}")
            seen[port] = key

    def check_paths(self) -> None:
        """Paths that reach Asterisk's files: only characters no file format treats specially."""
        if not SAFE_PATH.match(str(self.data_dir)):
            raise ValueError(
                f"server.data_dir: {str(self.data_dir)!r} may only contain letters, digits and "
                "_ . / + @ - (it is written into Asterisk's configuration and dialplan)"
            )

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else (self.base_dir / value).resolve()

    @property
    def journey_dir(self) -> Path:
        return self.path(self.journey.dir)

    @property
    def protection_file(self) -> Path:
        return self.path(self.protection.file)

    @property
    def data_dir(self) -> Path:
        return self.path(self.server.data_dir)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "ivr.sqlite3"

    @property
    def sounds_path(self) -> Path:
        if self.prompts.sounds is not None:
            return self.path(self.prompts.sounds)
        return self.path(self.prompts.texts).parent / "asterisk-sounds.yaml"

    @property
    def database_url(self) -> str:
        """database.url, or the default SQLite file; a relative SQLite path is relative to
        this file's folder, like every other path here."""
        url = self.database.url
        if not url:
            return f"sqlite+aiosqlite:///{self.database_path}"
        prefix = "sqlite+aiosqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.path(Path(url.removeprefix(prefix))))
        return url

    @property
    def database_file(self) -> Path | None:
        """The SQLite file, when the store is one (None for PostgreSQL)."""
        prefix = "sqlite+aiosqlite:///"
        url = self.database_url
        return Path(url.removeprefix(prefix).split("?", 1)[0]) if url.startswith(prefix) else None

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def prompts_dir(self) -> Path:
        return self.data_dir / "prompts"

    @property
    def asterisk_dir(self) -> Path:
        return self.data_dir / "asterisk"

    @property
    def secrets_path(self) -> Path:
        return self.data_dir / "secrets.toml"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "ivr.pid"

    @property
    def journey_state_path(self) -> Path:
        return self.data_dir / "journey.json"


def _key_line(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Find the line of a dotted key in a TOML text (good enough for admin-written files)."""
    lines = text.splitlines()
    keys = [str(k) for k in loc if not isinstance(k, int)]
    if not keys:
        return None
    table: list[str] = []
    best: int | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?$", line)
        if header:
            table = [p.strip().strip('"') for p in header.group(1).split(".")]
            if table == keys:
                best = best or number
            continue
        assignment = re.match(r"^([A-Za-z0-9_.\"-]+)\s*=", line)
        if assignment:
            path = table + [p.strip('"') for p in assignment.group(1).split(".")]
            if path == keys:
                return number
            if best is None and path[: len(keys)] == keys:
                best = number
    if best is None and len(keys) > 1:
        return _key_line(text, tuple(keys[:-1]))
    return best


def _describe(error: dict[str, Any], text: str) -> str:
    loc = tuple(error.get("loc", ()))
    key = ".".join(str(k) for k in loc if k != "__root__") or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    line = _key_line(text, loc)
    where = f"line {line}: " if line else ""
    return f"{where}{key}: {message}"


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from exc
    try:
        config = Config.model_validate({**data, "base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise ConfigError(path, [_describe(e, text) for e in exc.errors()]) from exc
    try:
        config.check_paths()
    except ValueError as exc:
        line = _key_line(text, ("server", "data_dir"))
        raise ConfigError(path, [f"line {line}: {exc}" if line else str(exc)]) from exc
    problems = _check_files(config, text)
    if problems:
        raise ConfigError(path, problems)
    return config


def _check_files(config: Config, text: str) -> list[str]:
    """What the schema cannot see: files the configuration points at."""
    from ivr.audio.prompts import load_prompt_texts

    texts = config.path(config.prompts.texts)
    line = _key_line(text, ("prompts", "texts"))
    where = f"line {line}: " if line else ""
    if not texts.is_file():
        return [f"{where}prompts.texts: prompt text file {texts} does not exist"]
    try:
        prompts = load_prompt_texts(texts, engines=config.prompts.engines)
    except ValueError as exc:
        return [f"{where}prompts.texts: {exc}"]
    problems = []
    sounds = config.sounds_path
    line = _key_line(text, ("prompts", "sounds"))
    where_s = f"line {line}: " if line else ""
    if sounds.is_file():
        from ivr.asterisk.sounds import load_sound_texts

        try:
            load_sound_texts(sounds)
        except ValueError as exc:
            problems.append(f"{where_s}prompts.sounds: {exc}")
    elif config.prompts.sounds is not None:
        problems.append(f"{where_s}prompts.sounds: file {sounds} does not exist")
    if not config.journey_dir.is_dir():
        line = _key_line(text, ("journey", "dir"))
        where_j = f"line {line}: " if line else ""
        problems.append(f"{where_j}journey.dir: folder {config.journey_dir} does not exist")
    for key in ("notice", "failsafe"):
        name = getattr(config.prompts, key)
        missing = [lang for lang in ("ja", "en") if lang not in prompts.get(name, {})]
        if missing:
            line = _key_line(text, ("prompts", key))
            where = f"line {line}: " if line else ""
            problems.append(
                f"{where}prompts.{key}: prompt {name!r} has no {'/'.join(missing)} text in {texts}"
            )
    return problems
