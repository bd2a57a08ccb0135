"""The one typed configuration object, built once from TOML (+ CSV registries), passed down.

Everything downstream reads these frozen dataclasses; nothing re-reads the file. Loading
and validation (``load_config``, ``check_config``) live below the types.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

VENDORS = frozenset({"chilli", "generic", "mikrotik"})
ROLES = frozenset({"reports", "audit", "admin"})


@dataclass(frozen=True, slots=True)
class Brand:
    ssid: str
    name: Mapping[str, str]  # language ("zh", "en") -> text
    logo: Path | None = None


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


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = ""  # empty: embedded redis-server under data_dir
    data_dir: Path = Path("var")
    appendfsync: str = "everysec"  # always | everysec | no (embedded server only)


@dataclass(frozen=True, slots=True)
class SmsSettings:
    backend: str = "file"  # file | webhook
    path: Path = Path("var/sms.jsonl")
    webhook_url: str = ""
    webhook_headers: Mapping[str, str] = field(default_factory=dict)
    webhook_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "json"  # json | console


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    # Key of the keyed hash that turns a phone number into an opaque person id.
    # Empty: generated once into <data_dir>/person.key (set it explicitly on many machines).
    person_key: str = ""


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


@dataclass(frozen=True, slots=True)
class AccessPoint:
    match: str  # normalised AP MAC (AA-BB-CC-DD-EE-FF) or a NAS-Identifier
    venue: str


@dataclass(frozen=True, slots=True)
class Subsidy:
    rates: Mapping[str, Decimal]  # venue type -> yuan per free user-hour


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
