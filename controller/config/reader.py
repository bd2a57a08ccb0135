"""Reading parsed TOML into typed values, collecting every problem: the key lists of each
section, the typed readers (strings, integers, ranges, choices, names, ids) with their
messages and "did you mean", and the secret checks. ``controller.config.loader`` builds
the ``Config`` with them."""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from controller.config.locator import Locator
from controller.config.model import (
    AccessPoint,
    EnforcerSettings,
    HttpSettings,
    NatLogSettings,
    Operator,
    PortalSettings,
    Venue,
)
from controller.config.problems import ConfigProblem, KeyPath, format_key

SECTIONS: Final = {
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
    "natlog": tuple(f.name for f in fields(NatLogSettings)),
    "reports": ("settle_hours", "max_range_days", "archive_dir"),
    "enforcer": tuple(f.name for f in fields(EnforcerSettings)),
    "portal": tuple(f.name for f in fields(PortalSettings)),
}
LISTS: Final = {
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
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
HOST_PATTERN = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
MISSING: Final = object()
MEMORY_SIZE = re.compile(r"(\d{1,15})\s*(b|kb|mb|gb|)")
MEMORY_UNITS: Final = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


@dataclass(frozen=True, slots=True)
class Spot:
    """Where an entry was defined: a TOML table (``path``) or a CSV row (``line``)."""

    file: Path
    path: KeyPath
    line: int | None = None  # set for CSV rows


def kind_of(value: object) -> str:
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def section_hint(key: str) -> str:
    homes = {k: section for section, keys in SECTIONS.items() for k in keys}
    close = difflib.get_close_matches(key, list(homes), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}' in [{homes[close[0]]}]?)"
    return ""


def one_of(choices: Iterable[str]) -> str:
    return ", ".join(sorted(choices))


class Reader:
    """The typed readers of one config file, and the problems and warnings they found.

    Each check records a problem and substitutes a default, so one pass finds everything.
    """

    def __init__(self, path: Path, locator: Locator, environ: Mapping[str, str]) -> None:
        self.file = path
        self.base = path.parent
        self.loc = locator
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        self.operator_spots: dict[str, Spot] = {}
        self.venue_spots: dict[str, Spot] = {}
        self.ap_spots: dict[str, Spot] = {}
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

    def report_at(self, spot: Spot, key: str, message: str) -> None:
        if spot.line is None:
            self.report((*spot.path, key), message)
        else:
            self.problems.append(ConfigProblem(spot.file, spot.line, key, message))

    def describe(self, spot: Spot) -> str:
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
            self.report((name,), f"expected a table [{name}], got {kind_of(value)}")
            return {}
        self.check_keys(value, (name,), SECTIONS[name])
        return value

    def tables(self, raw: Mapping[str, Any], name: str) -> list[tuple[KeyPath, dict[str, Any]]]:
        value = raw.get(name, [])
        if not isinstance(value, list):
            self.report((name,), f"expected an array of tables [[{name}]], got {kind_of(value)}")
            return []
        out: list[tuple[KeyPath, dict[str, Any]]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                self.check_keys(item, (name, i), LISTS[name])
                out.append(((name, i), item))
            else:
                self.report((name, i), f"expected a table, got {kind_of(item)}")
        return out

    def check_keys(self, table: Mapping[str, Any], path: KeyPath, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                hint = did_you_mean(key, allowed)
                self.report((*path, key), f"unknown key '{key}'{hint}")

    # -- typed getters: on a problem they report it and return the default
    def get(self, t: Mapping[str, Any], path: KeyPath, key: str, required: bool) -> Any:
        if key in t:
            return t[key]
        if required:
            self.report((*path, key), f"missing required key '{key}'")
        return MISSING

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
        if value is MISSING:
            return default
        if not isinstance(value, str):
            self.report((*path, key), f"expected a string, got {kind_of(value)}")
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
        if value is MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.report((*path, key), f"expected an integer, got {kind_of(value)}")
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
        if value is MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.report((*path, key), f"expected a number, got {kind_of(value)}")
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
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.report((*path, key), f"expected true or false, got {kind_of(value)}")
            return default
        return value

    def choice(
        self, t: Mapping[str, Any], path: KeyPath, key: str, default: str, choices: Sequence[str]
    ) -> str:
        value = self.string(t, path, key, default)
        if value not in choices:
            hint = did_you_mean(value, choices)
            self.report((*path, key), f"'{value}' is not one of {one_of(choices)}{hint}")
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
        if value is MISSING:
            return {}
        if isinstance(value, str):
            return self.names(Spot(self.file, path), key, {"zh": value, "en": value})
        if not isinstance(value, dict):
            self.report(
                (*path, key), f"expected a string or {{zh = …, en = …}}, got {kind_of(value)}"
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
                self.report((*path, key, lang), f"expected a string, got {kind_of(text)}")
        return self.names(Spot(self.file, path), key, texts)

    def names(self, spot: Spot, key: str, texts: Mapping[str, str]) -> dict[str, str]:
        """Both languages filled in: a missing one falls back to the other."""
        zh, en = texts.get("zh", "").strip(), texts.get("en", "").strip()
        if not zh and not en:
            self.report_at(spot, key, "needs a non-empty name (zh, en or both)")
            return {}
        return {"zh": zh or en, "en": en or zh}

    def identifier(self, spot: Spot, key: str, value: str) -> None:
        if not ID_PATTERN.fullmatch(value):
            self.report_at(
                spot,
                key,
                f"'{value}' is not a valid id: use letters, digits, '.', '_', ':' or '-'"
                " (starting with a letter or digit, at most 128 characters)",
            )

    def declare(self, spots: dict[str, Spot], what: str, spot: Spot, key: str, value: str) -> None:
        """Record an id; a second definition is a problem naming the first."""
        first = spots.get(value)
        if first is not None:
            self.report_at(
                spot, key, f"duplicate {what} '{value}' (first defined at {self.describe(first)})"
            )
        else:
            spots[value] = spot
