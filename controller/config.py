"""The one typed configuration object, built once from TOML (+ CSV registries), passed down.

Everything downstream reads these frozen dataclasses; nothing re-reads the file. Loading
and validation (``load_config``, ``check_config``) live below the types.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import difflib
import hashlib
import io
import ipaddress
import math
import os
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from controller.domain.mac import normalize_mac
from controller.domain.venue_types import VENUE_TYPES
from controller.redis_url import RedisUrlError, parse_redis_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

VENDORS = frozenset({"chilli", "generic", "mikrotik"})
ROLES = frozenset({"reports", "audit", "admin"})


@dataclass(frozen=True, slots=True)
class Brand:
    ssid: str
    name: Mapping[str, str]  # language ("zh", "en") -> text
    logo: Path | None = None
    home_url: str = ""  # where a user goes when the NAS named no usable http(s) page


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    daily_seconds: int = 7200
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    max_devices: int = 2
    interim_interval: int = 300
    remember_device_days: int = 1
    idle_timeout: int = 900
    login_ttl: int = 300  # lifetime of a one-time login credential, seconds
    stale_grace: float = 750.0  # default 2.5 x interim_interval
    # a login is refused (as "used up") with less than this left: default one interim
    # interval, at least 60 s, at most daily_seconds (docs/enforcement.md, minimum grant)
    min_grant_seconds: int = 300

    @property
    def used_up_seconds(self) -> int:
        """Usage from which a day counts as used up: less than the minimum grant left."""
        return self.daily_seconds - max(1, self.min_grant_seconds) + 1


@dataclass(frozen=True, slots=True)
class RadiusSettings:
    bind: str = "0.0.0.0"
    auth_port: int = 1812
    acct_port: int = 1813
    dedup_window: float = 30.0  # RFC 5080 duplicate-detection window, seconds
    require_message_authenticator: bool = True  # default for clients that don't say
    max_in_flight: int = 4096  # requests awaiting Redis; beyond this new ones are dropped


@dataclass(frozen=True, slots=True)
class HttpSettings:
    bind: str = "0.0.0.0"
    port: int = 8080
    # The listeners' edge (controller.http_edge): slow, idle and piled-up connections.
    header_timeout: float = 10.0  # a new connection's request head must arrive within this
    keepalive_timeout: float = 15.0  # an idle connection (between requests) is closed
    body_timeout: float = 30.0  # a request body must arrive within this after its head
    max_connections: int = 4096  # per process; also kept below the fd limit (reserved_fds)
    max_connections_per_ip: int = 256  # per process and source address (not trusted proxies)
    reserved_fds: int = 256  # file descriptors HTTP never takes: Redis, archive, logs
    metrics_bind: str = ""  # "": /metrics on the citizen listener; else only there
    metrics_port: int = 9480


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = ""  # empty: embedded redis-server under data_dir
    data_dir: Path = Path("var")
    appendfsync: str = "everysec"  # always | everysec | no (embedded server only)
    timeout: float = 2.0  # seconds a Redis exchange may take before the request is not answered
    maxmemory: int = 1 << 30  # bytes; the embedded server's budget (noeviction); 0: none
    memory_high_water: float = 0.85  # above this share of maxmemory the portal sheds load
    startup_wait: float = 30.0  # seconds a start waits for Redis before giving up (exit 69)


@dataclass(frozen=True, slots=True)
class SmsSettings:
    backend: str = "file"  # file | webhook
    path: Path = Path("var/sms.jsonl")
    webhook_url: str = ""
    webhook_headers: Mapping[str, str] = field(default_factory=dict)
    webhook_timeout: float = 5.0
    webhook_retries: int = 2  # further attempts after a failed delivery
    # Country calling codes ("+86") whose mobile numbers may be sent codes (SMS pumping).
    allowed_country_codes: tuple[str, ...] = ("+86",)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "json"  # json | console
    # one info event per RADIUS request outcome (radius.request); off: rejects/drops only
    requests: bool = True


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    # Key of the keyed hash that turns a phone number into an opaque person id.
    # Empty: generated once into <data_dir>/person.key (set it explicitly on many machines).
    person_key: str = ""


@dataclass(frozen=True, slots=True)
class PortalSettings:
    """Captive portal: cookie signing, public URL, proxies, SMS-code rate limits."""

    cookie_key: str = ""  # empty: generated once into <data_dir>/portal.key
    cookie_days: int = 30  # remembered-device cookie lifetime (0: no such cookie)
    public_url: str = ""  # e.g. https://portal.example.cn; empty: from the request
    trusted_proxies: tuple[IPNetwork, ...] = ()  # may set X-Forwarded-For / -Proto
    handoff_delay: int = 3  # seconds the success page shows time left before hand-off
    otp_resend_seconds: int = 60
    otp_per_phone_hour: int = 5
    otp_per_phone_day: int = 10
    otp_per_mac_hour: int = 5
    otp_per_mac_day: int = 10
    otp_per_ip_hour: int = 60
    otp_per_nas_hour: int = 2000
    # issue 13: aggregates and ceilings (docs/portal.md, "SMS codes and limits")
    otp_per_ip48_hour: int = 120  # IPv6 /48
    otp_per_ip32_hour: int = 1000  # IPv6 /32
    otp_per_ip24_hour: int = 120  # IPv4 /24
    otp_per_phone_ceiling_day: int = 30  # one phone, all devices together
    otp_global_hour: int = 10000  # every code the city sends (refused beyond; alarm)
    verify_per_device_day: int = 20  # code attempts for one phone from one device
    verify_per_phone_day: int = 100  # ... from all devices together
    verify_per_ip_hour: int = 120
    verify_per_nas_hour: int = 2000
    page_per_ip_minute: int = 120  # GET /portal per source (/64 for IPv6)
    logins_per_device_hour: int = 3  # credentials per person per hour: this x max_devices


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Venue:
    id: str
    name: Mapping[str, str]
    type: str  # one of controller.venue_types.VENUE_TYPES
    district: str
    operator: str


@dataclass(frozen=True, slots=True)
class Client:
    """A RADIUS peer (NAS / access controller), identified by its packets' source."""

    id: str
    network: IPNetwork
    secret: bytes
    venue: str
    vendor: str = "generic"  # chilli | generic | mikrotik
    coa_port: int = 3799
    require_message_authenticator: bool = True
    uam_secret: str = ""  # CoovaChilli UAM secret (portal hand-off)
    nas_identifier: str = ""  # NAS-Identifier / nasid it uses in redirects, if any
    uam_auth: str = "pap"  # chilli hand-off: pap (password=) | chap (response=)
    # Where the portal may hand a credential to (issue 13): generic: the exact URL;
    # mikrotik: hosts of link-login-only (+ the client's own single address); chilli:
    # uamip networks (+ any uamip whose redirect md verified with uam_secret).
    login_url: str = ""
    login_hosts: tuple[str, ...] = ()
    uam_addresses: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessPoint:
    match: str  # normalised AP MAC (AA-BB-CC-DD-EE-FF) or a NAS-Identifier
    venue: str


@dataclass(frozen=True, slots=True)
class Subsidy:
    rates: Mapping[str, Decimal]  # venue type -> yuan per free user-hour
    venue_caps: Mapping[str, Decimal] = field(default_factory=dict)  # venue -> yuan per month
    operator_factors: Mapping[str, Decimal] = field(default_factory=dict)  # operator -> factor


@dataclass(frozen=True, slots=True)
class AuditSettings:
    # Days login records are kept (MPS Order 82 Art. 13: at least 60; default six months).
    retention_days: int = 180


@dataclass(frozen=True, slots=True)
class ReportSettings:
    settle_hours: int = 24  # a day's figures are final this long after its local midnight
    max_range_days: int = 93  # longest from..to range of one report
    archive_dir: Path | None = None  # None: <data_dir>/archive


@dataclass(frozen=True, slots=True)
class EnforcerSettings:
    """Quota enforcer (controller.enforcer): RFC 5176 disconnects and stale-session sweep."""

    enabled: bool = True  # act on due persons in this process (the due index is kept anyway)
    disconnect_timeout: float = 2.0  # seconds to wait for a Disconnect-ACK/NAK (doubling)
    disconnect_retries: int = 3  # retransmissions before giving up
    # an ACK/NAK whose Event-Timestamp is further than this from now is a replay (RFC 5176
    # §3.5): ignored; 0 = not checked
    disconnect_timestamp_window: int = 300
    lease: float = 60.0  # seconds one process holds a person while acting on it
    sweep_interval: float = 5.0  # seconds between looks at the due and open-session indexes
    coa_on_new_session: bool = False  # CoA new Session-Timeouts when a person adds a device


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    sha256: str  # hex digest of the bearer token
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    brand: Brand
    quota: QuotaPolicy
    radius: RadiusSettings
    http: HttpSettings
    redis: RedisSettings
    sms: SmsSettings
    log: LogSettings
    security: SecuritySettings
    operators: Mapping[str, Operator]
    venues: Mapping[str, Venue]
    clients: tuple[Client, ...]
    access_points: Mapping[str, AccessPoint]  # by match
    subsidy: Subsidy
    api_tokens: tuple[ApiToken, ...]
    portal: PortalSettings = field(default_factory=PortalSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    enforcer: EnforcerSettings = field(default_factory=EnforcerSettings)
    # accepted but worth a look (a placeholder secret on a loopback-only client): logged
    warnings: tuple[ConfigProblem, ...] = ()


# --------------------------------------------------------------------------- loading


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists everything wrong with it, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the config, pointing at the file, line and key to fix."""

    file: Path
    line: int | None
    key: str
    message: str
    warning: bool = False  # accepted as it is, but said (check-config, serve's log)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        message = f"warning: {self.message}" if self.warning else self.message
        return f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}"


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and build the config; raise ``ConfigError`` listing every problem."""
    config, problems = _load(Path(path), os.environ if environ is None else environ)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def check_config(
    path: str | Path, *, environ: Mapping[str, str] | None = None, warnings: bool = False
) -> list[ConfigProblem]:
    """Every problem with the config (an empty list means ``load_config`` would succeed);
    with ``warnings``, also what it accepts but says (``ConfigProblem.warning``)."""
    config, problems = _load(Path(path), os.environ if environ is None else environ)
    if warnings and config is not None:
        return sorted([*problems, *config.warnings], key=lambda p: p.line or 0)
    return problems


# Where a command finds its config without --config (`citywifi --help` says so).
CONFIG_ENV = "CITYWIFI_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/citywifi/citywifi.toml")


def config_path(
    given: Path | None, environ: Mapping[str, str], default: Path = DEFAULT_CONFIG_PATH
) -> Path | None:
    """The config a command reads: ``--config``, else ``$CITYWIFI_CONFIG``, else the
    system-wide file when it exists; None when there is none of the three."""
    if given is not None:
        return given
    if environ.get(CONFIG_ENV, "").strip():
        return Path(environ[CONFIG_ENV].strip())
    return default if default.exists() else None


# Environment variable that overrides ``redis.url`` (deployments keep passwords out of files).
REDIS_URL_ENV = "CITYWIFI_REDIS_URL"

KeyPath = tuple[str | int, ...]

_SECTIONS: Final = {
    "brand": ("ssid", "name", "logo", "home_url"),
    "quota": (
        "daily_seconds",
        "timezone",
        "max_devices",
        "interim_interval",
        "remember_device_days",
        "idle_timeout",
        "login_ttl",
        "stale_grace",
        "min_grant_seconds",
    ),
    "radius": (
        "bind",
        "auth_port",
        "acct_port",
        "dedup_window",
        "require_message_authenticator",
        "max_in_flight",
    ),
    "http": tuple(f.name for f in fields(HttpSettings)),
    "redis": (
        "url",
        "data_dir",
        "appendfsync",
        "timeout",
        "maxmemory",
        "memory_high_water",
        "startup_wait",
    ),
    "sms": (
        "backend",
        "path",
        "webhook_url",
        "webhook_headers",
        "webhook_timeout",
        "webhook_retries",
        "allowed_country_codes",
    ),
    "log": ("level", "format", "requests"),
    "security": ("person_key",),
    "registry": ("venues_csv", "access_points_csv"),
    "subsidy": ("rates", "venue_caps", "operator_factors"),
    "audit": ("retention_days",),
    "reports": ("settle_hours", "max_range_days", "archive_dir"),
    "enforcer": tuple(f.name for f in fields(EnforcerSettings)),
    "portal": tuple(f.name for f in fields(PortalSettings)),
}
_LISTS: Final = {
    "operators": ("id", "name"),
    "venues": ("id", "name", "type", "district", "operator"),
    "clients": (
        "id",
        "address",
        "secret",
        "venue",
        "vendor",
        "coa_port",
        "require_message_authenticator",
        "uam_secret",
        "nas_identifier",
        "uam_auth",
        "login_url",
        "login_hosts",
        "uam_addresses",
    ),
    "access_points": ("match", "venue"),
    "api_tokens": ("name", "sha256", "roles"),
}
VENUES_CSV_COLUMNS: Final = ("id", "name_zh", "name_en", "type", "district", "operator")
ACCESS_POINTS_CSV_COLUMNS: Final = ("match", "venue")
APPENDFSYNC: Final = ("always", "everysec", "no")
SMS_BACKENDS: Final = ("file", "webhook")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("json", "console")
LANGUAGES: Final = ("zh", "en")

# Secrets and keys (check-config refuses what anyone who read the docs could know).
SECRET_MIN_LENGTH: Final = 16  # RFC 2865 §3: "preferred that the secret be at least 16 octets"
_PLACEHOLDERS: Final = ("changeme", "replaceme", "placeholder", "example", "yoursecret")
_WELL_KNOWN: Final = {"testing123": "FreeRADIUS's well-known test secret"}
EXAMPLE_TOKENS: Final = ("change-me-reports-token",)  # the token docs/reports.md once showed
EXAMPLE_TOKEN_DIGESTS: Final = MappingProxyType(
    {hashlib.sha256(t.encode()).hexdigest(): t for t in EXAMPLE_TOKENS}
)


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` is a published placeholder or example, or None (pure)."""
    folded = re.sub(r"[^a-z0-9]", "", value.lower())
    # the words are not repeated: a real secret that happens to contain one stays unsaid
    for word, what in _WELL_KNOWN.items():
        if word in folded:
            return f"is {what}: use a random one (e.g. `openssl rand -base64 24`)"
    if any(word in folded for word in _PLACEHOLDERS):
        return (
            "is a placeholder, not a secret: replace it with a random one "
            "(e.g. `openssl rand -base64 24`)"
        )
    return None


def secret_weakness(value: str, min_length: int = SECRET_MIN_LENGTH) -> str | None:
    """Why ``value`` protects nothing (a placeholder, an example, too short, a repeated
    character), or None. Pure; the reason never repeats the value."""
    reason = placeholder_reason(value)
    if reason is not None:
        return reason
    if len(value) < min_length:
        return (
            f"must be at least {min_length} characters, got {len(value)} "
            "(e.g. `openssl rand -base64 24`)"
        )
    distinct = len(set(value))
    if distinct < 6:
        return f"has only {distinct} distinct characters: not a secret"
    return None


# Ids end up in Redis keys, CSV reports and URLs: no spaces, braces (hash tags) or quotes.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HOST = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_MISSING: Final = object()
_MEMORY_SIZE = re.compile(r"(\d{1,15})\s*(b|kb|mb|gb|)")
_MEMORY_UNITS: Final = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def _load(path: Path, environ: Mapping[str, str]) -> tuple[Config | None, list[ConfigProblem]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigProblem(path, None, "", f"cannot read config file: {_reason(exc)}")]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_syntax_problem(path, text, exc)]
    builder = _Builder(path, _Locator(text), environ)
    config = builder.build(raw)
    return (None if builder.problems else config), builder.sorted_problems()


def _syntax_problem(path: Path, text: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    message = str(exc)
    line: int | None = None
    match = _TOML_POSITION.search(message)
    if match:
        message = message[: match.start()]
        if match.group(1):
            line = int(match.group(1))
            message += f" (column {match.group(2)})"
        else:
            line = text.count("\n") + 1
            message += " (at end of file)"
    return ConfigProblem(path, line, "", f"TOML syntax error: {message}")


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def format_key(path: KeyPath) -> str:
    """``("venues", 3, "type")`` -> ``venues[3].type``, the spelling used in problems."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --------------------------------------------------------------------------- line locator


class _Locator:
    """Maps key paths to the TOML line that defines them (tomllib keeps no positions).

    Runs only on text tomllib already accepted, so it can be a lenient structural scan:
    headers, keys (bare, quoted, dotted), and values skipped by kind, recording the line
    where every key, array element and inline-table key starts.
    """

    def __init__(self, text: str) -> None:
        self._s = text
        self._i = 0
        self._newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self._lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}
        with contextlib.suppress(IndexError, ValueError):  # unfollowed construct: keep the rest
            self._document()

    def line(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its nearest enclosing key or table header."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None

    # scanning helpers
    def _lineno(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _record(self, path: KeyPath, pos: int) -> None:
        self._lines.setdefault(path, self._lineno(pos))

    def _peek(self, k: int = 1) -> str:
        return self._s[self._i : self._i + k]

    def _skip_blank(self, *, newlines: bool) -> None:
        s = self._s
        while self._i < len(s):
            ch = s[self._i]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._i += 1
            elif ch == "#":
                end = s.find("\n", self._i)
                self._i = len(s) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        table: KeyPath = ()
        s = self._s
        while True:
            self._skip_blank(newlines=True)
            if self._i >= len(s):
                return
            start = self._i
            if s.startswith("[[", start):
                self._i += 2
                keys = self._key()
                self._i = s.index("]]", self._i) + 2
                parent = self._resolve(keys[:-1])
                array = (*parent, keys[-1])
                index = self._arrays.get(array, -1) + 1
                self._arrays[array] = index
                self._record(array, start)
                table = (*array, index)
                self._record(table, start)
            elif s[start] == "[":
                self._i += 1
                keys = self._key()
                self._i = s.index("]", self._i) + 1
                table = self._resolve(keys)
                self._record(table, start)
            else:
                keys = self._key()
                self._skip_blank(newlines=False)
                self._i += 1  # "="
                self._skip_blank(newlines=False)
                for end in range(1, len(keys) + 1):
                    self._record((*table, *keys[:end]), start)
                self._value((*table, *keys))

    def _resolve(self, keys: Sequence[str]) -> KeyPath:
        """Header keys -> path; a name of an array of tables means its last element."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            if path in self._arrays:
                path = (*path, self._arrays[path])
        return path

    def _key(self) -> list[str]:
        parts: list[str] = []
        s = self._s
        while True:
            self._skip_blank(newlines=False)
            ch = s[self._i]
            if ch == '"':
                end = self._basic_string_end(self._i + 1)
                parts.append(s[self._i + 1 : end - 1])
                self._i = end
            elif ch == "'":
                end = s.index("'", self._i + 1)
                parts.append(s[self._i + 1 : end])
                self._i = end + 1
            else:
                start = self._i
                while self._i < len(s) and (s[self._i].isalnum() or s[self._i] in "_-"):
                    self._i += 1
                if self._i == start:
                    raise ValueError("no key")
                parts.append(s[start : self._i])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._i += 1

    def _basic_string_end(self, pos: int) -> int:
        s = self._s
        while s[pos] != '"':
            pos += 2 if s[pos] == "\\" else 1
        return pos + 1

    def _value(self, path: KeyPath) -> None:
        s = self._s
        self._record(path, self._i)
        if s.startswith('"""', self._i) or s.startswith("'''", self._i):
            quote = s[self._i]
            pos = self._i + 3
            while not s.startswith(quote * 3, pos):
                pos += 2 if quote == '"' and s[pos] == "\\" else 1
            pos += 3
            for _ in range(2):  # up to two quotes may end the content right before the closer
                if s.startswith(quote, pos):
                    pos += 1
            self._i = pos
        elif s[self._i] == '"':
            self._i = self._basic_string_end(self._i + 1)
        elif s[self._i] == "'":
            self._i = s.index("'", self._i + 1) + 1
        elif s[self._i] == "[":
            self._i += 1
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if s[self._i] == "]":
                    self._i += 1
                    return
                self._value((*path, index))
                index += 1
                self._skip_blank(newlines=True)
                if s[self._i] == ",":
                    self._i += 1
        elif s[self._i] == "{":
            self._i += 1
            while True:
                self._skip_blank(newlines=True)
                if s[self._i] == "}":
                    self._i += 1
                    return
                start = self._i
                keys = self._key()
                for end in range(1, len(keys) + 1):
                    self._record((*path, *keys[:end]), start)
                self._skip_blank(newlines=False)
                self._i += 1  # "="
                self._skip_blank(newlines=False)
                self._value((*path, *keys))
                self._skip_blank(newlines=True)
                if s[self._i] == ",":
                    self._i += 1
        else:  # number, boolean or date-time
            while self._i < len(s) and s[self._i] not in ",]}#\n":
                self._i += 1


# --------------------------------------------------------------------------- building


@dataclass(frozen=True, slots=True)
class _Spot:
    """Where an entry was defined: a TOML table (``path``) or a CSV row (``line``)."""

    file: Path
    path: KeyPath
    line: int | None = None  # set for CSV rows


def _kind(value: object) -> str:
    """A value's TOML type (and the value, when short), for "expected X, got Y" messages."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        return f"string {value!r}" if len(value) <= 40 else "a string"
    else:
        kind = "date/time"
    return f"{kind} {str(value).lower() if isinstance(value, bool) else value}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _section_hint(key: str) -> str:
    homes = {k: section for section, keys in _SECTIONS.items() for k in keys}
    close = difflib.get_close_matches(key, list(homes), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}' in [{homes[close[0]]}]?)"
    return ""


def _one_of(choices: Iterable[str]) -> str:
    return ", ".join(sorted(choices))


class _Builder:
    """Turns parsed TOML (+ CSV registries) into a ``Config``, collecting every problem.

    Each check records a problem and substitutes a default, so one pass finds everything;
    an entry with a problem is left out of the result but its id still counts as declared,
    so references to it don't produce follow-on "does not exist" noise.
    """

    def __init__(self, path: Path, locator: _Locator, environ: Mapping[str, str]) -> None:
        self.file = path
        self.base = path.parent
        self.loc = locator
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        self.operator_spots: dict[str, _Spot] = {}
        self.venue_spots: dict[str, _Spot] = {}
        self.ap_spots: dict[str, _Spot] = {}
        self.operators: dict[str, Operator] = {}
        self.venues: dict[str, Venue] = {}
        self.access_points: dict[str, AccessPoint] = {}

    # -- reporting
    def report(self, path: KeyPath, message: str) -> None:
        self.problems.append(
            ConfigProblem(self.file, self.loc.line(path), format_key(path), message)
        )

    def warn(self, path: KeyPath, message: str) -> None:
        line = self.loc.line(path)
        self.warnings.append(ConfigProblem(self.file, line, format_key(path), message, True))

    def secret(self, path: KeyPath, value: str, *, local: bool = False) -> None:
        """A key or shared secret that is a placeholder, an example or too short is an
        error (anyone who read the docs holds it); on a loopback-only client, where only
        this machine can use it, a warning."""
        reason = secret_weakness(value)
        if reason is not None:
            if local:
                self.warn(path, f"{reason}; accepted only because this client is loopback-only")
            else:
                self.report(path, reason)

    def report_at(self, spot: _Spot, key: str, message: str) -> None:
        if spot.line is None:
            self.report((*spot.path, key), message)
        else:
            self.problems.append(ConfigProblem(spot.file, spot.line, key, message))

    def describe(self, spot: _Spot) -> str:
        line = spot.line if spot.line is not None else self.loc.line(spot.path)
        where = f"{spot.file}:{line}" if line is not None else str(spot.file)
        return where if spot.line is not None else f"{where}, {format_key(spot.path)}"

    def sorted_problems(self) -> list[ConfigProblem]:
        order = {self.file: 0}
        for p in self.problems:
            order.setdefault(p.file, len(order))
        return sorted(self.problems, key=lambda p: (order[p.file], p.line or 0))

    # -- structure
    def table(self, raw: Mapping[str, Any], name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.report((name,), f"expected a table [{name}], got {_kind(value)}")
            return {}
        self.check_keys(value, (name,), _SECTIONS[name])
        return value

    def tables(self, raw: Mapping[str, Any], name: str) -> list[tuple[KeyPath, dict[str, Any]]]:
        value = raw.get(name, [])
        if not isinstance(value, list):
            self.report((name,), f"expected an array of tables [[{name}]], got {_kind(value)}")
            return []
        out: list[tuple[KeyPath, dict[str, Any]]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                self.check_keys(item, (name, i), _LISTS[name])
                out.append(((name, i), item))
            else:
                self.report((name, i), f"expected a table, got {_kind(item)}")
        return out

    def check_keys(self, table: Mapping[str, Any], path: KeyPath, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = _did_you_mean(key, allowed)
                self.report((*path, key), f"unknown key '{key}'{hint}")

    # -- typed getters: on a problem they report it and return the default
    def get(self, t: Mapping[str, Any], path: KeyPath, key: str, required: bool) -> Any:
        if key in t:
            return t[key]
        if required:
            self.report((*path, key), f"missing required key '{key}'")
        return _MISSING

    def string(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        key: str,
        default: str = "",
        *,
        required: bool = False,
        nonempty: bool = False,
    ) -> str:
        value = self.get(t, path, key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            self.report((*path, key), f"expected a string, got {_kind(value)}")
            return default
        if nonempty and not value.strip():
            self.report((*path, key), "must not be empty")
            return default
        return value

    def integer(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        key: str,
        default: int,
        low: int | None = None,
        high: int | None = None,
        hint: str = "",
    ) -> int:
        value = self.get(t, path, key, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.report((*path, key), f"expected an integer, got {_kind(value)}")
            return default
        if not self.in_range(path, key, value, low, high, hint):
            return default
        return value

    def number(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        key: str,
        default: float,
        low: float | None = None,
        *,
        above: bool = False,
    ) -> float:
        """A float (integers accepted); ``above`` makes ``low`` exclusive."""
        value = self.get(t, path, key, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.report((*path, key), f"expected a number, got {_kind(value)}")
            return default
        if not math.isfinite(value):
            self.report((*path, key), f"must be a finite number, got {value}")
            return default
        if low is not None and (value <= low if above else value < low):
            bound = f"greater than {low:g}" if above else f"at least {low:g}"
            self.report((*path, key), f"must be {bound}, got {value:g}")
            return default
        return float(value)

    def in_range(
        self, path: KeyPath, key: str, value: int, low: int | None, high: int | None, hint: str
    ) -> bool:
        if (low is None or value >= low) and (high is None or value <= high):
            return True
        if low is not None and high is not None:
            bound = f"between {low} and {high}"
        elif low is not None:
            bound = f"at least {low}"
        else:
            bound = f"at most {high}"
        self.report((*path, key), f"must be {bound}{hint}, got {value}")
        return False

    def boolean(self, t: Mapping[str, Any], path: KeyPath, key: str, default: bool) -> bool:
        value = self.get(t, path, key, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            self.report((*path, key), f"expected true or false, got {_kind(value)}")
            return default
        return value

    def choice(
        self, t: Mapping[str, Any], path: KeyPath, key: str, default: str, choices: Sequence[str]
    ) -> str:
        value = self.string(t, path, key, default)
        if value not in choices:
            hint = _did_you_mean(value, choices)
            self.report((*path, key), f"'{value}' is not one of {_one_of(choices)}{hint}")
            return default
        return value

    def file_path(self, t: Mapping[str, Any], path: KeyPath, key: str, default: Path) -> Path:
        """A path from the config; relative ones are relative to the config file's directory."""
        value = self.string(t, path, key, "")
        return self.resolve(Path(value) if value.strip() else default)

    def resolve(self, p: Path) -> Path:
        return (self.base / p.expanduser()).absolute()

    def name(self, t: Mapping[str, Any], path: KeyPath, key: str) -> dict[str, str]:
        """A display name: ``"text"`` (both languages) or ``{zh = "…", en = "…"}``."""
        value = self.get(t, path, key, True)
        if value is _MISSING:
            return {}
        if isinstance(value, str):
            return self.names(_Spot(self.file, path), key, {"zh": value, "en": value})
        if not isinstance(value, dict):
            self.report(
                (*path, key), f"expected a string or {{zh = …, en = …}}, got {_kind(value)}"
            )
            return {}
        for lang in value:
            if lang not in LANGUAGES:
                self.report((*path, key, lang), f"unknown language '{lang}': names have zh and en")
        texts = {}
        for lang in LANGUAGES:
            text = value.get(lang, "")
            if isinstance(text, str):
                texts[lang] = text
            else:
                self.report((*path, key, lang), f"expected a string, got {_kind(text)}")
        return self.names(_Spot(self.file, path), key, texts)

    def names(self, spot: _Spot, key: str, texts: Mapping[str, str]) -> dict[str, str]:
        """Both languages filled in: a missing one falls back to the other."""
        zh, en = texts.get("zh", "").strip(), texts.get("en", "").strip()
        if not zh and not en:
            self.report_at(spot, key, "needs a non-empty name (zh, en or both)")
            return {}
        return {"zh": zh or en, "en": en or zh}

    def identifier(self, spot: _Spot, key: str, value: str) -> None:
        if not _ID.fullmatch(value):
            self.report_at(
                spot,
                key,
                f"'{value}' is not a valid id: use letters, digits, '.', '_', ':' or '-'"
                " (starting with a letter or digit, at most 128 characters)",
            )

    def declare(
        self, spots: dict[str, _Spot], what: str, spot: _Spot, key: str, value: str
    ) -> None:
        """Record an id; a second definition is a problem naming the first."""
        first = spots.get(value)
        if first is not None:
            self.report_at(
                spot, key, f"duplicate {what} '{value}' (first defined at {self.describe(first)})"
            )
        else:
            spots[value] = spot

    # -- sections
    def build(self, raw: Mapping[str, Any]) -> Config | None:
        known = (*_SECTIONS, *_LISTS)
        for key, value in raw.items():
            if key in known:
                continue
            if isinstance(value, dict | list):
                self.report((key,), f"unknown table '{key}'{_did_you_mean(key, known)}")
            else:  # a setting above the first table header
                self.report((key,), f"unknown key '{key}' outside any table{_section_hint(key)}")
        if "brand" not in raw:
            self.report(("brand",), "missing required table [brand]")
        brand = self.brand(self.table(raw, "brand"), isinstance(raw.get("brand"), dict))
        quota = self.quota(self.table(raw, "quota"))
        radius = self.radius(self.table(raw, "radius"))
        http = self.http(self.table(raw, "http"))
        redis = self.redis(self.table(raw, "redis"))
        sms = self.sms(self.table(raw, "sms"), redis.data_dir)
        log = self.log(self.table(raw, "log"))
        security = self.security(self.table(raw, "security"))
        portal = self.portal(self.table(raw, "portal"))
        registry = self.table(raw, "registry")
        venues_csv = self.registry_file(registry, "venues_csv")
        aps_csv = self.registry_file(registry, "access_points_csv")

        for path, t in self.tables(raw, "operators"):
            self.operator(path, t)
        for path, t in self.tables(raw, "venues"):
            self.venue_from_toml(path, t)
        if venues_csv is not None:
            self.venues_from_csv(venues_csv)
        clients = self.clients(self.tables(raw, "clients"), radius.require_message_authenticator)
        for path, t in self.tables(raw, "access_points"):
            spot = _Spot(self.file, path)
            match = self.string(t, path, "match", required=True, nonempty=True)
            venue = self.string(t, path, "venue", required=True, nonempty=True)
            self.access_point(spot, match, venue)
        if aps_csv is not None:
            self.access_points_from_csv(aps_csv)
        subsidy = self.subsidy(self.table(raw, "subsidy"))
        tokens = self.api_tokens(self.tables(raw, "api_tokens"))
        audit = self.audit(self.table(raw, "audit"))
        reports = self.reports(self.table(raw, "reports"), redis.data_dir)
        enforcer = self.enforcer(self.table(raw, "enforcer"))

        if self.problems or brand is None:
            return None
        return Config(
            source=self.file.absolute(),
            brand=brand,
            quota=quota,
            radius=radius,
            http=http,
            redis=redis,
            sms=sms,
            log=log,
            security=security,
            operators=MappingProxyType(self.operators),
            venues=MappingProxyType(self.venues),
            clients=clients,
            access_points=MappingProxyType(self.access_points),
            subsidy=subsidy,
            api_tokens=tokens,
            portal=portal,
            audit=audit,
            reports=reports,
            enforcer=enforcer,
            warnings=tuple(sorted(self.warnings, key=lambda p: p.line or 0)),
        )

    def brand(self, t: dict[str, Any], present: bool) -> Brand | None:
        p: KeyPath = ("brand",)
        ssid = self.string(t, p, "ssid", required=present, nonempty=True)
        if len(ssid.encode()) > 32:
            self.report(
                (*p, "ssid"), f"an SSID is at most 32 bytes (IEEE 802.11), got {len(ssid.encode())}"
            )
        name = self.name(t, p, "name") if "name" in t else {"zh": ssid, "en": ssid}
        logo: Path | None = None
        if "logo" in t:
            logo = self.file_path(t, p, "logo", Path())
            if not logo.is_file():
                self.report((*p, "logo"), f"file not found: {logo}")
        home = self.string(t, p, "home_url", "").strip()
        if home and not _http_url(home):
            self.report((*p, "home_url"), f"'{home}' is not an http:// or https:// URL")
            home = ""
        return (
            Brand(ssid=ssid, name=MappingProxyType(name), logo=logo, home_url=home)
            if ssid
            else None
        )

    def quota(self, t: dict[str, Any]) -> QuotaPolicy:
        p: KeyPath = ("quota",)
        d = QuotaPolicy()
        # RFC 2869 §5.16: MUST NOT be below 60 (CoovaChilli drops a smaller value and keeps
        # its own 300 s: sessions would look stale between its reports)
        interim = self.integer(
            t, p, "interim_interval", d.interim_interval, 60, hint=" (RFC 2869 §5.16)"
        )
        daily = self.integer(t, p, "daily_seconds", d.daily_seconds, 1)
        return QuotaPolicy(
            daily_seconds=daily,
            timezone=self.timezone(t, p, d.timezone),
            max_devices=self.integer(t, p, "max_devices", d.max_devices, 1),
            interim_interval=interim,
            remember_device_days=self.integer(
                t, p, "remember_device_days", d.remember_device_days, 0
            ),
            idle_timeout=self.integer(t, p, "idle_timeout", d.idle_timeout, 0),
            login_ttl=self.integer(t, p, "login_ttl", d.login_ttl, 30),
            stale_grace=self.number(t, p, "stale_grace", 2.5 * interim, 0, above=True),
            min_grant_seconds=self.integer(
                t,
                p,
                "min_grant_seconds",
                min(daily, max(60, interim)),
                1,
                daily,
                " (quota.daily_seconds)",
            ),
        )

    def timezone(self, t: Mapping[str, Any], p: KeyPath, default: ZoneInfo) -> ZoneInfo:
        name = self.string(t, p, "timezone", default.key, nonempty=True)
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            hint = _did_you_mean(name, zoneinfo.available_timezones())
            self.report((*p, "timezone"), f"unknown time zone '{name}'{hint}")
            return default

    def port(self, t: Mapping[str, Any], p: KeyPath, key: str, default: int) -> int:
        return self.integer(t, p, key, default, 0, 65535, " (0 lets the OS choose)")

    def address(self, t: Mapping[str, Any], p: KeyPath, key: str, default: str) -> str:
        value = self.string(t, p, key, default, nonempty=True)
        try:
            ipaddress.ip_address(value)
        except ValueError:
            self.report((*p, key), f"'{value}' is not an IP address to bind to")
            return default
        return value

    def radius(self, t: dict[str, Any]) -> RadiusSettings:
        p: KeyPath = ("radius",)
        d = RadiusSettings()
        auth = self.port(t, p, "auth_port", d.auth_port)
        acct = self.port(t, p, "acct_port", d.acct_port)
        if auth and auth == acct:
            self.report((*p, "acct_port"), f"must differ from auth_port ({auth})")
        return RadiusSettings(
            bind=self.address(t, p, "bind", d.bind),
            auth_port=auth,
            acct_port=acct,
            dedup_window=self.number(t, p, "dedup_window", d.dedup_window, 0, above=True),
            require_message_authenticator=self.boolean(
                t, p, "require_message_authenticator", d.require_message_authenticator
            ),
            max_in_flight=self.integer(t, p, "max_in_flight", d.max_in_flight, 1),
        )

    def http(self, t: dict[str, Any]) -> HttpSettings:
        p: KeyPath = ("http",)
        d = HttpSettings()
        bind, port = self.address(t, p, "bind", d.bind), self.port(t, p, "port", d.port)
        metrics_bind = self.string(t, p, "metrics_bind", d.metrics_bind).strip()
        if metrics_bind:
            metrics_bind = self.address(t, p, "metrics_bind", "")
        metrics_port = self.port(t, p, "metrics_port", d.metrics_port)
        if metrics_bind and metrics_port and metrics_port == port:
            self.report((*p, "metrics_port"), f"must differ from http.port ({port})")

        def seconds(key: str, default: float) -> float:
            return self.number(t, p, key, default, 0, above=True)

        return HttpSettings(
            bind=bind,
            port=port,
            header_timeout=seconds("header_timeout", d.header_timeout),
            keepalive_timeout=seconds("keepalive_timeout", d.keepalive_timeout),
            body_timeout=seconds("body_timeout", d.body_timeout),
            max_connections=self.integer(t, p, "max_connections", d.max_connections, 1),
            max_connections_per_ip=self.integer(
                t, p, "max_connections_per_ip", d.max_connections_per_ip, 1
            ),
            reserved_fds=self.integer(t, p, "reserved_fds", d.reserved_fds, 0),
            metrics_bind=metrics_bind,
            metrics_port=metrics_port,
        )

    def memory_size(self, t: Mapping[str, Any], p: KeyPath, key: str, default: int) -> int:
        """Bytes as Redis writes them: an integer, or "512mb" / "4gb" / "64kb" (1024-based)."""
        value = self.get(t, p, key, False)
        if value is _MISSING:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str) and (m := _MEMORY_SIZE.fullmatch(value.strip().lower())):
            size = int(m.group(1)) * _MEMORY_UNITS[m.group(2)]
        else:
            self.report((*p, key), f'expected bytes, as 1073741824 or "1gb", got {value!r}')
            return default
        if size != 0 and size < _MEMORY_UNITS["mb"]:
            self.report((*p, key), f"must be 0 (no limit) or at least 1mb, got {value!r}")
            return default
        return size

    def redis(self, t: dict[str, Any]) -> RedisSettings:
        p: KeyPath = ("redis",)
        d = RedisSettings()
        url = self.string(t, p, "url", d.url).strip()
        env = self.environ.get(REDIS_URL_ENV, "").strip()
        if env:
            if "://" not in env:
                self.report(
                    (*p, "url"), f"{REDIS_URL_ENV}='{env}' is not a URL (redis://host:port/db)"
                )
            url = env
        elif url and "://" not in url:
            self.report(
                (*p, "url"), f"'{url}' is not a URL (redis://host:port/db), or leave it empty"
            )
        if "://" in url:  # the topology (server, cluster, sentinel) must parse too
            try:
                target = parse_redis_url(url)
            except RedisUrlError as exc:
                self.report((*p, "url"), f"{REDIS_URL_ENV}: {exc}" if env else str(exc))
            else:
                for password in (urlsplit(url).password, target.sentinel_password):
                    reason = placeholder_reason(password or "")
                    if reason is not None:
                        where = f"{REDIS_URL_ENV}: " if env else ""
                        self.report((*p, "url"), f"{where}the password {reason}")
        return RedisSettings(
            url=url,
            data_dir=self.file_path(t, p, "data_dir", d.data_dir),
            appendfsync=self.choice(t, p, "appendfsync", d.appendfsync, APPENDFSYNC),
            timeout=self.number(t, p, "timeout", d.timeout, 0, above=True),
            maxmemory=self.memory_size(t, p, "maxmemory", d.maxmemory),
            memory_high_water=self.ratio(t, p, "memory_high_water", d.memory_high_water),
            startup_wait=self.number(t, p, "startup_wait", d.startup_wait, 0),
        )

    def ratio(self, t: Mapping[str, Any], p: KeyPath, key: str, default: float) -> float:
        value = self.number(t, p, key, default, 0, above=True)
        if value >= 1:
            self.report((*p, key), f"must be below 1 (a share of the budget), got {value:g}")
            return default
        return value

    def sms(self, t: dict[str, Any], data_dir: Path) -> SmsSettings:
        p: KeyPath = ("sms",)
        d = SmsSettings()
        backend = self.choice(t, p, "backend", d.backend, SMS_BACKENDS)
        webhook = backend == "webhook"
        url = self.string(t, p, "webhook_url", d.webhook_url, required=webhook, nonempty=webhook)
        if url and not url.startswith(("https://", "http://")):
            self.report((*p, "webhook_url"), f"'{url}' is not an http:// or https:// URL")
        headers: dict[str, str] = {}
        raw_headers = t.get("webhook_headers", {})
        if not isinstance(raw_headers, dict):
            self.report((*p, "webhook_headers"), f"expected a table, got {_kind(raw_headers)}")
        else:
            for name, value in raw_headers.items():
                if isinstance(value, str):
                    headers[name] = value
                    reason = placeholder_reason(value)
                    if reason is not None:
                        self.report((*p, "webhook_headers", name), reason)
                else:
                    self.report(
                        (*p, "webhook_headers", name), f"expected a string, got {_kind(value)}"
                    )
        return SmsSettings(
            backend=backend,
            path=self.file_path(t, p, "path", data_dir / "sms.jsonl"),
            webhook_url=url,
            webhook_headers=MappingProxyType(headers),
            webhook_timeout=self.number(t, p, "webhook_timeout", d.webhook_timeout, 0, above=True),
            webhook_retries=self.integer(t, p, "webhook_retries", d.webhook_retries, 0, 10),
            allowed_country_codes=self.country_codes(t, p, d.allowed_country_codes),
        )

    def country_codes(
        self, t: Mapping[str, Any], p: KeyPath, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        """``["+86", …]``: ITU-T E.164 country calling codes that phonenumbers knows."""
        import phonenumbers

        items = self.strings(t, p, "allowed_country_codes")
        if items is None:
            return default
        if not items:
            self.report((*p, "allowed_country_codes"), 'must name at least one code, e.g. "+86"')
        out: list[str] = []
        for i, code in items:
            digits = code.strip().removeprefix("+")
            if not digits.isdigit() or int(digits) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                self.report(
                    (*p, "allowed_country_codes", i),
                    f"'{code}' is not a country calling code (write it as \"+86\")",
                )
            else:
                out.append(f"+{int(digits)}")
        return tuple(out) or default

    def strings(self, t: Mapping[str, Any], p: KeyPath, key: str) -> list[tuple[int, str]] | None:
        """An array of strings as (index, value); None when the key is absent or no array."""
        raw = self.get(t, p, key, False)
        if raw is _MISSING:
            return None
        if not isinstance(raw, list):
            self.report((*p, key), f"expected an array of strings, got {_kind(raw)}")
            return None
        out = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                out.append((i, item))
            else:
                self.report((*p, key, i), f"expected a string, got {_kind(item)}")
        return out

    def log(self, t: dict[str, Any]) -> LogSettings:
        p: KeyPath = ("log",)
        d = LogSettings()
        return LogSettings(
            level=self.choice(t, p, "level", d.level, LOG_LEVELS),
            format=self.choice(t, p, "format", d.format, LOG_FORMATS),
            requests=self.boolean(t, p, "requests", d.requests),
        )

    def security(self, t: dict[str, Any]) -> SecuritySettings:
        p: KeyPath = ("security",)
        key = self.string(t, p, "person_key", "")
        if key:
            self.secret((*p, "person_key"), key)
        return SecuritySettings(person_key=key)

    def portal(self, t: dict[str, Any]) -> PortalSettings:
        p: KeyPath = ("portal",)
        d = PortalSettings()
        key = self.string(t, p, "cookie_key", "")
        if key:
            self.secret((*p, "cookie_key"), key)
        url = self.string(t, p, "public_url", "").strip().rstrip("/")
        if url and not url.startswith(("https://", "http://")):
            self.report((*p, "public_url"), f"'{url}' is not an http:// or https:// URL")
        proxies: list[IPNetwork] = []
        raw = self.get(t, p, "trusted_proxies", False)
        if raw is not _MISSING and not isinstance(raw, list):
            self.report((*p, "trusted_proxies"), f"expected an array, got {_kind(raw)}")
        for i, item in enumerate(raw if isinstance(raw, list) else []):
            try:
                proxies.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                self.report((*p, "trusted_proxies", i), f"'{item}' is not an IP address or CIDR")
        limits = {
            f.name: self.integer(t, p, f.name, f.default, 1)  # type: ignore[arg-type]
            for f in fields(PortalSettings)
            if f.name.startswith(("otp_", "verify_", "page_", "logins_"))
        }
        for ceiling, one in (
            ("otp_per_phone_ceiling_day", "otp_per_phone_day"),
            ("verify_per_phone_day", "verify_per_device_day"),
        ):
            if limits[ceiling] < limits[one]:
                self.report(
                    (*p, ceiling),
                    f"must be at least {one} ({limits[one]}): the ceiling over all of a "
                    "phone's devices cannot be below one device's share",
                )
        return PortalSettings(
            cookie_key=key,
            cookie_days=self.integer(t, p, "cookie_days", d.cookie_days, 0, 3650),
            public_url=url,
            trusted_proxies=tuple(proxies),
            handoff_delay=self.integer(t, p, "handoff_delay", d.handoff_delay, 0, 30),
            **limits,
        )

    def registry_file(self, t: dict[str, Any], key: str) -> Path | None:
        value = self.string(t, ("registry",), key, "")
        return (self.base / Path(value).expanduser()) if value.strip() else None

    # -- registry entries (shared by TOML tables and CSV rows)
    def operator(self, path: KeyPath, t: dict[str, Any]) -> None:
        spot = _Spot(self.file, path)
        before = len(self.problems)
        op_id = self.string(t, path, "id", required=True, nonempty=True)
        name = self.name(t, path, "name")
        if op_id:
            self.identifier(spot, "id", op_id)
            self.declare(self.operator_spots, "operator id", spot, "id", op_id)
        if len(self.problems) == before:
            self.operators[op_id] = Operator(id=op_id, name=MappingProxyType(name))

    def venue_from_toml(self, path: KeyPath, t: dict[str, Any]) -> None:
        before = len(self.problems)
        venue_id = self.string(t, path, "id", required=True, nonempty=True)
        name = self.name(t, path, "name")
        self.venue(
            _Spot(self.file, path),
            before,
            venue_id,
            name,
            self.string(t, path, "type", required=True, nonempty=True),
            self.string(t, path, "district", required=True, nonempty=True),
            self.string(t, path, "operator", required=True, nonempty=True),
        )

    def venue(
        self,
        spot: _Spot,
        before: int,
        venue_id: str,
        name: Mapping[str, str],
        kind: str,
        district: str,
        operator: str,
    ) -> None:
        """Validate and add one venue; ``before`` = problem count when its parsing began."""
        if venue_id:
            self.identifier(spot, "id", venue_id)
            self.declare(self.venue_spots, "venue id", spot, "id", venue_id)
        if kind and kind not in VENUE_TYPES:
            hint = _did_you_mean(kind, VENUE_TYPES)
            self.report_at(
                spot,
                "type",
                f"unknown venue type '{kind}'{hint}; valid types: {_one_of(VENUE_TYPES)}",
            )
        if operator and operator not in self.operator_spots:
            self.report_at(
                spot, "operator", f"operator '{operator}' is not defined in [[operators]]"
            )
        if len(self.problems) == before:
            self.venues[venue_id] = Venue(
                id=venue_id,
                name=MappingProxyType(dict(name)),
                type=kind,
                district=district.strip(),
                operator=operator,
            )

    def access_point(self, spot: _Spot, match: str, venue: str) -> None:
        before = len(self.problems)
        key = normalize_mac(match) or match.strip()
        if key:
            self.declare(self.ap_spots, "access point match", spot, "match", key)
        if venue:
            self.require_venue(spot, "venue", venue)
        if len(self.problems) == before:
            self.access_points[key] = AccessPoint(match=key, venue=venue)

    def require_venue(self, spot: _Spot, key: str, venue: str) -> None:
        if venue not in self.venue_spots:
            self.report_at(
                spot, key, f"venue '{venue}' is not defined (in [[venues]] or the venues CSV)"
            )

    # -- CSV registries
    def csv_rows(
        self, file: Path, setting: str, columns: Sequence[str]
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """Rows of a registry CSV as (line, {column: value}); problems name the CSV file."""
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            key: KeyPath = ("registry", setting)
            line = self.loc.line(key)
            named = f" (named at {self.file}:{line})" if line else ""
            self.problems.append(
                ConfigProblem(
                    file, None, format_key(key), f"cannot read CSV file{named}: {_reason(exc)}"
                )
            )
            return
        reader = csv.reader(io.StringIO(text, newline=""))
        header: list[str] | None = None
        line = 0
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                missing = [c for c in columns if c not in header]
                unknown = [c for c in header if c not in columns]
                if missing:
                    self.problems.append(
                        ConfigProblem(
                            file,
                            start,
                            "header",
                            f"missing column(s) {', '.join(missing)}; "
                            f"expected header: {','.join(columns)}",
                        )
                    )
                for col in unknown:
                    hint = _did_you_mean(col, columns)
                    self.problems.append(
                        ConfigProblem(file, start, "header", f"unknown column '{col}'{hint}")
                    )
                if missing:
                    return
                continue
            if len(row) > len(header):
                self.problems.append(
                    ConfigProblem(
                        file, start, "row", f"{len(row)} fields, but the header has {len(header)}"
                    )
                )
                continue
            cells = dict(zip(header, (cell.strip() for cell in row), strict=False))
            yield start, {c: cells.get(c, "") for c in columns}
        if header is None:
            self.problems.append(
                ConfigProblem(
                    file, None, "header", f"empty file; expected header: {','.join(columns)}"
                )
            )

    def csv_required(self, spot: _Spot, row: Mapping[str, str], *columns: str) -> None:
        for column in columns:
            if not row[column]:
                self.report_at(spot, column, f"missing value for '{column}'")

    def venues_from_csv(self, file: Path) -> None:
        for line, row in self.csv_rows(file, "venues_csv", VENUES_CSV_COLUMNS):
            spot = _Spot(file, (), line)
            before = len(self.problems)
            self.csv_required(spot, row, "id", "type", "district", "operator")
            name = self.names(spot, "name_zh", {"zh": row["name_zh"], "en": row["name_en"]})
            self.venue(spot, before, row["id"], name, row["type"], row["district"], row["operator"])

    def access_points_from_csv(self, file: Path) -> None:
        for line, row in self.csv_rows(file, "access_points_csv", ACCESS_POINTS_CSV_COLUMNS):
            spot = _Spot(file, (), line)
            self.csv_required(spot, row, "match", "venue")
            self.access_point(spot, row["match"], row["venue"])

    # -- RADIUS clients
    def clients(
        self, entries: list[tuple[KeyPath, dict[str, Any]]], require_ma: bool
    ) -> tuple[Client, ...]:
        out: list[Client] = []
        networks: list[tuple[_Spot, str, IPNetwork]] = []
        ids: dict[str, _Spot] = {}
        nas_ids: dict[str, _Spot] = {}
        for path, t in entries:
            spot = _Spot(self.file, path)
            before = len(self.problems)
            client_id = self.string(t, path, "id", required=True, nonempty=True)
            if client_id:
                self.identifier(spot, "id", client_id)
                self.declare(ids, "client id", spot, "id", client_id)
            network = self.network(t, path)
            if network is not None:
                networks.append((spot, client_id or format_key(path), network))
            secret = self.string(t, path, "secret", required=True)
            if "secret" in t and isinstance(t["secret"], str) and not secret:
                self.report((*path, "secret"), "must not be empty (the RADIUS shared secret)")
            local = network is not None and network.is_loopback
            if secret:
                self.secret((*path, "secret"), secret, local=local)
            uam_secret = self.string(t, path, "uam_secret", "")
            if uam_secret:
                self.secret((*path, "uam_secret"), uam_secret, local=local)
            venue = self.string(t, path, "venue", required=True, nonempty=True)
            if venue:
                self.require_venue(spot, "venue", venue)
            vendor = self.choice(t, path, "vendor", "generic", sorted(VENDORS))
            coa_port = self.integer(t, path, "coa_port", 3799, 1, 65535)
            nas_identifier = self.string(t, path, "nas_identifier", "").strip()
            if nas_identifier:
                self.declare(nas_ids, "nas_identifier", spot, "nas_identifier", nas_identifier)
            client = Client(
                id=client_id,
                network=network or ipaddress.ip_network("0.0.0.0/32"),
                secret=secret.encode(),
                venue=venue,
                vendor=vendor,
                coa_port=coa_port,
                require_message_authenticator=self.boolean(
                    t, path, "require_message_authenticator", require_ma
                ),
                uam_secret=uam_secret,
                nas_identifier=nas_identifier,
                uam_auth=self.choice(t, path, "uam_auth", "pap", ("chap", "pap")),
                **self.handoff_targets(t, path, vendor),
            )
            if len(self.problems) == before:
                out.append(client)
        # A nas_id in a portal redirect may be a client id or a NAS-Identifier: keep it unique.
        for nas_id, spot in nas_ids.items():
            other = ids.get(nas_id)
            if other is not None and other != spot:
                self.report_at(
                    spot,
                    "nas_identifier",
                    f"'{nas_id}' is also the id of the client at {self.describe(other)};"
                    " portal redirects could not tell them apart",
                )
        self.overlaps(networks)
        return tuple(out)

    def handoff_targets(self, t: Mapping[str, Any], path: KeyPath, vendor: str) -> dict[str, Any]:
        """``login_url`` (generic), ``login_hosts`` (mikrotik), ``uam_addresses`` (chilli):
        where the portal may send a credential for this client (docs/portal.md)."""
        out: dict[str, Any] = {}
        for key, owner in (("login_url", "generic"), ("login_hosts", "mikrotik"),
                           ("uam_addresses", "chilli")):  # fmt: skip
            if key in t and vendor != owner:
                self.report((*path, key), f'is only used with vendor = "{owner}"')
        url = self.string(t, path, "login_url", "").strip()
        if url and not _http_url(url):
            self.report((*path, "login_url"), f"'{url}' is not an http:// or https:// URL")
        out["login_url"] = url
        hosts = []
        for i, host in self.strings(t, path, "login_hosts") or []:
            name = host.strip().lower().strip("[]")
            if not _HOST.fullmatch(name) and not _is_ip(name):
                self.report(
                    (*path, "login_hosts", i),
                    f"'{host}' is not a host name or IP address (no scheme, port or path)",
                )
            else:
                hosts.append(name)
        out["login_hosts"] = tuple(hosts)
        networks = []
        for i, item in self.strings(t, path, "uam_addresses") or []:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                self.report((*path, "uam_addresses", i), f"'{item}' is not an IP address or CIDR")
        out["uam_addresses"] = tuple(networks)
        return out

    def network(self, t: Mapping[str, Any], path: KeyPath) -> IPNetwork | None:
        value = self.string(t, path, "address", required=True, nonempty=True)
        if not value:
            return None
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            self.report((*path, "address"), f"'{value}' is not an IP address or network (CIDR)")
            return None

    def overlaps(self, networks: list[tuple[_Spot, str, IPNetwork]]) -> None:
        """Each packet source must map to exactly one client (and so one secret).

        CIDR blocks are either disjoint or nested, so after sorting by start address
        (wider first) a block overlaps something iff it starts inside the last block kept.
        """
        ordered = sorted(
            networks, key=lambda e: (e[2].version, int(e[2].network_address), e[2].prefixlen)
        )
        kept: tuple[_Spot, str, IPNetwork] | None = None
        for spot, client_id, net in ordered:
            if kept is not None:
                outer = kept[2]
                if outer.version == net.version and net.subnet_of(outer):  # type: ignore[arg-type]
                    self.report_at(
                        spot,
                        "address",
                        f"network {net} of client '{client_id}' overlaps {outer} of client "
                        f"'{kept[1]}' (at {self.describe(kept[0])})",
                    )
                    continue
            kept = (spot, client_id, net)

    # -- subsidy and tokens
    def subsidy(self, t: dict[str, Any]) -> Subsidy:
        p: KeyPath = ("subsidy", "rates")
        raw = t.get("rates", {})
        rates = {kind: Decimal(0) for kind in VENUE_TYPES}
        if not isinstance(raw, dict):
            self.report(p, f"expected a table {{venue_type = yuan}}, got {_kind(raw)}")
            return Subsidy(rates=MappingProxyType(rates))
        for kind, value in raw.items():
            if kind not in VENUE_TYPES:
                hint = _did_you_mean(kind, VENUE_TYPES)
                self.report(
                    (*p, kind),
                    f"unknown venue type '{kind}'{hint}; valid types: {_one_of(VENUE_TYPES)}",
                )
                continue
            rate = self.rate((*p, kind), value)
            if rate is not None:
                rates[kind] = rate
        return Subsidy(
            rates=MappingProxyType(rates),
            venue_caps=self.decimal_table(t, "venue_caps", self.venue_spots, "venue"),
            operator_factors=self.decimal_table(
                t, "operator_factors", self.operator_spots, "operator"
            ),
        )

    def decimal_table(
        self, t: Mapping[str, Any], key: str, known: Mapping[str, _Spot], what: str
    ) -> Mapping[str, Decimal]:
        """``[subsidy]`` ``{id = number}`` tables whose ids must be defined venues/operators."""
        p: KeyPath = ("subsidy", key)
        raw = t.get(key, {})
        if not isinstance(raw, dict):
            self.report(p, f"expected a table {{{what}_id = number}}, got {_kind(raw)}")
            return MappingProxyType({})
        out: dict[str, Decimal] = {}
        for ident, value in raw.items():
            if ident not in known:
                hint = _did_you_mean(ident, known)
                self.report((*p, ident), f"{what} '{ident}' is not defined{hint}")
                continue
            number = self.rate((*p, ident), value)
            if number is not None:
                out[ident] = number
        return MappingProxyType(out)

    def audit(self, t: dict[str, Any]) -> AuditSettings:
        return AuditSettings(
            retention_days=self.integer(
                t,
                ("audit",),
                "retention_days",
                AuditSettings().retention_days,
                60,
                hint=" (MPS Order 82 Art. 13: login records are kept at least 60 days)",
            )
        )

    def reports(self, t: dict[str, Any], data_dir: Path) -> ReportSettings:
        p: KeyPath = ("reports",)
        d = ReportSettings()
        return ReportSettings(
            settle_hours=self.integer(t, p, "settle_hours", d.settle_hours, 0, 24 * 31),
            max_range_days=self.integer(t, p, "max_range_days", d.max_range_days, 1, 3660),
            archive_dir=self.file_path(t, p, "archive_dir", data_dir / "archive"),
        )

    def enforcer(self, t: dict[str, Any]) -> EnforcerSettings:
        from radius.dae import retry_schedule

        p: KeyPath = ("enforcer",)
        d = EnforcerSettings()
        timeout = self.number(t, p, "disconnect_timeout", d.disconnect_timeout, 0, above=True)
        retries = self.integer(t, p, "disconnect_retries", d.disconnect_retries, 0, 10)
        lease = self.number(t, p, "lease", d.lease, 0, above=True)
        exchange = sum(retry_schedule(timeout, retries))
        if lease <= exchange:
            self.report(
                (*p, "lease"),
                f"must be longer than one disconnect exchange ({exchange:g} s with "
                "disconnect_timeout and disconnect_retries), or another process would act too",
            )
        return EnforcerSettings(
            enabled=self.boolean(t, p, "enabled", d.enabled),
            disconnect_timeout=timeout,
            disconnect_retries=retries,
            disconnect_timestamp_window=self.integer(
                t, p, "disconnect_timestamp_window", d.disconnect_timestamp_window, 0, 86400
            ),
            lease=lease,
            sweep_interval=self.number(t, p, "sweep_interval", d.sweep_interval, 0, above=True),
            coa_on_new_session=self.boolean(t, p, "coa_on_new_session", d.coa_on_new_session),
        )

    def rate(self, path: KeyPath, value: object) -> Decimal | None:
        """Yuan as an exact Decimal: str(float) keeps what was written (0.5, not 0.5000…01)."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.report(path, f"expected a number, got {_kind(value)}")
            return None
        try:
            rate = Decimal(value.strip() if isinstance(value, str) else str(value))
        except InvalidOperation:
            self.report(path, f"'{value}' is not a number")
            return None
        if not rate.is_finite() or rate < 0:
            self.report(path, f"must be a number of at least 0, got {value}")
            return None
        return rate

    def api_tokens(self, entries: list[tuple[KeyPath, dict[str, Any]]]) -> tuple[ApiToken, ...]:
        out: list[ApiToken] = []
        names: dict[str, _Spot] = {}
        digests: dict[str, _Spot] = {}
        for path, t in entries:
            spot = _Spot(self.file, path)
            before = len(self.problems)
            name = self.string(t, path, "name", required=True, nonempty=True)
            if name:
                self.identifier(spot, "name", name)
                self.declare(names, "token name", spot, "name", name)
            digest = self.string(t, path, "sha256", required=True, nonempty=True)
            if digest and not _SHA256.fullmatch(digest):
                self.report(
                    (*path, "sha256"),
                    "must be 64 lowercase hex digits (sha256 of the token, e.g. "
                    "`printf %s TOKEN | sha256sum`)",
                )
            elif digest in EXAMPLE_TOKEN_DIGESTS:
                self.report(
                    (*path, "sha256"),
                    f"is the sha256 of the published example token "
                    f"'{EXAMPLE_TOKEN_DIGESTS[digest]}': anyone can use it; make your own "
                    "(`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)",
                )
            elif digest:
                self.declare(digests, "token sha256", spot, "sha256", digest)
            roles = self.roles(t, path)
            if len(self.problems) == before:
                out.append(ApiToken(name=name, sha256=digest, roles=roles))
        return tuple(out)

    def roles(self, t: Mapping[str, Any], path: KeyPath) -> frozenset[str]:
        value = self.get(t, path, "roles", True)
        if value is _MISSING:
            return frozenset()
        if not isinstance(value, list) or not value:
            self.report((*path, "roles"), f"expected a non-empty array of roles ({_one_of(ROLES)})")
            return frozenset()
        roles = set()
        for i, role in enumerate(value):
            if isinstance(role, str) and role in ROLES:
                roles.add(role)
            else:
                shown = f"'{role}'" if isinstance(role, str) else _kind(role)
                hint = _did_you_mean(role, ROLES) if isinstance(role, str) else ""
                self.report((*path, "roles", i), f"{shown} is not one of {_one_of(ROLES)}{hint}")
        return frozenset(roles)
