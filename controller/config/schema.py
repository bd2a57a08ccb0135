"""The config file's schema, on pydantic v2: one model per TOML table and per entry of an
array of tables, exactly as the file spells them.

Bounds are ``Field(ge=…, le=…)`` (named where a number means something), choices are
``Literal``, unknown keys are refused (``extra="forbid"``), types are strict (TOML already
typed every value: ``"7200"`` or ``7200.0`` is not an integer). A check of one value is an
``AfterValidator``/``BeforeValidator`` on its type; a check between keys of one table is a
``field_validator`` of the later key reading the earlier ones from ``info.data`` (so it
still runs, and lands on the right key, when an unrelated key of the table is wrong).
Every failure is a pydantic error whose ``loc`` feeds the TOML line locator;
``controller.config.wording`` turns the library's messages into ours.

Checks across entries (duplicate ids, references, overlapping networks) and the CSV
registries are ``controller.config.loader``'s: they must run even when an entry is broken
(its id still counts as declared), which a model validator of a failed model never does.
The runtime types (``controller.config.model``) are plain frozen dataclasses built from
these models: the RADIUS hot path reads plain slots, never a validating object.
"""

from __future__ import annotations

import ipaddress
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from controller.config.checks import (
    EXAMPLE_TOKEN_DIGESTS,
    HOST_PATTERN,
    ID_PATTERN,
    MEMORY_SIZE,
    MEMORY_UNITS,
    SHA256_PATTERN,
    did_you_mean,
    http_url,
    is_ip,
    kind_of,
    one_of,
    placeholder_reason,
    secret_weakness,
)
from controller.config.passpoint import DNS_NAME, ROAMING_OI
from controller.config.problems import KeyPath
from controller.config.radsec import (
    CertificateProblem,
    check_ca_bundle,
    check_certificate,
    check_private_key,
    normalize_fingerprint,
)
from controller.config.redis_url import RedisUrlError, parse_redis_url
from controller.domain.mac import normalize_mac
from controller.domain.periods import FIRST_DAY, LAST_DAY
from controller.domain.venue_types import VENUE_TYPES
from radius.dae import retry_schedule

# Environment variable that overrides ``redis.url`` (deployments keep passwords out of files).
REDIS_URL_ENV: Final = "CITYWIFI_REDIS_URL"

# Numbers that mean something.
MIN_INTERIM_INTERVAL: Final = 60  # RFC 2869 §5.16: Acct-Interim-Interval MUST NOT be below 60
MIN_LOGIN_TTL: Final = 30  # a one-time credential must outlive the portal's hand-off
MAX_SSID_BYTES: Final = 32  # IEEE 802.11: an SSID is 0-32 octets
MIN_RETENTION_DAYS: Final = 60  # MPS Order 82 Art. 13: login records kept at least 60 days
MIN_PHONE_RETENTION_DAYS: Final = 7  # a phone profile outlives any session in the outbox
MAX_PHONE_RETENTION_DAYS: Final = 3660  # PIPL Art. 19: no longer than needed
MAX_RETRIES: Final = 10  # further attempts of a webhook or a Disconnect-Request
MAX_COOKIE_DAYS: Final = 3650
MAX_HANDOFF_DELAY: Final = 30  # seconds; a NAS's login page times out soon after
MAX_TIMESTAMP_WINDOW: Final = 86400  # one day (RFC 5176 §3.5 Event-Timestamp check)
MAX_SETTLE_HOURS: Final = 24 * 31
MAX_RANGE_DAYS: Final = 3660
MIN_MAXMEMORY: Final = MEMORY_UNITS["mb"]  # below one megabyte Redis cannot even start
LANGUAGES: Final = ("zh", "en")


class Why:
    """Annotated metadata: why a bound is what it is, appended to its message (to the
    message of the ``only`` bounds, as pydantic names them, when given)."""

    __slots__ = ("only", "text")

    def __init__(self, text: str, only: tuple[str, ...] = ()) -> None:
        self.text = text
        self.only = only


class Says:
    """Annotated metadata: what a wrongly shaped value (not a table, an array, too short)
    is told; ``{choices}`` and ``{got}`` are filled in."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass(slots=True)
class Scope:
    """The validation context: what validators need from outside the file (its
    directory, the environment) and the warnings they say (accepted, but worth a look)."""

    base: Path
    environ: Mapping[str, str]
    warnings: list[tuple[KeyPath, str]] = field(default_factory=list)

    def resolve(self, value: str) -> Path:
        """A path from the config; relative ones are relative to the config's directory."""
        return (self.base / Path(value).expanduser()).absolute()


def fail(message: str) -> PydanticCustomError:
    """Our own wording for a failed check (the loader reports it verbatim)."""
    return PydanticCustomError("citywifi", message)


def scope_of(info: ValidationInfo) -> Scope:
    assert isinstance(info.context, Scope), "validate with context=Scope(...)"
    return info.context


# -- value types
def _nonempty(value: str) -> str:
    if not value.strip():
        raise fail("must not be empty")
    return value


def _identifier(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise fail(
            f"'{value}' is not a valid id: use letters, digits, '.', '_', ':' or '-'"
            " (starting with a letter or digit, at most 128 characters)"
        )
    return value


def _bind_address(value: str) -> str:
    if not is_ip(value):
        raise fail(f"'{value}' is not an IP address to bind to")
    return value


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise fail(f"'{value}' is not an IP address or CIDR") from None
    return value.strip()


def _http_url(value: str) -> str:
    url = value.strip()
    if url and not http_url(url):
        raise fail(f"'{url}' is not an http:// or https:// URL")
    return url


def _no_placeholder(value: str) -> str:
    reason = placeholder_reason(value)
    if reason is not None:
        raise fail(reason)
    return value


def _strong_secret(value: str) -> str:
    """A key anyone who read the docs holds protects nothing (empty: generated)."""
    reason = secret_weakness(value) if value else None
    if reason is not None:
        raise fail(reason)
    return value


def _venue_type(value: str) -> str:
    if value not in VENUE_TYPES:
        raise fail(
            f"unknown venue type '{value}'{did_you_mean(value, VENUE_TYPES)}; "
            f"valid types: {one_of(VENUE_TYPES)}"
        )
    return value


def _host(value: str) -> str:
    name = value.strip().lower().strip("[]")
    if not HOST_PATTERN.fullmatch(name) and not is_ip(name):
        raise fail(f"'{value}' is not a host name or IP address (no scheme, port or path)")
    return name


def _country_code(value: str) -> str:
    """An ITU-T E.164 country calling code that phonenumbers knows, as ``+86``."""
    digits = value.strip().removeprefix("+")
    if not digits.isdigit() or int(digits) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        raise fail(f"'{value}' is not a country calling code (write it as \"+86\")")
    return f"+{int(digits)}"


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, KeyError, OSError):
        hint = did_you_mean(value, zoneinfo.available_timezones())
        raise fail(f"unknown time zone '{value}'{hint}") from None
    return value


def _memory_size(value: object) -> object:
    """Bytes as Redis writes them: an integer, or "512mb" / "4gb" / "64kb" (1024-based)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := MEMORY_SIZE.fullmatch(value.strip().lower())):
        size = int(m.group(1)) * MEMORY_UNITS[m.group(2)]
    else:
        raise fail(f'expected bytes, as 1073741824 or "1gb", got {value!r}')
    if size != 0 and size < MIN_MAXMEMORY:
        raise fail(f"must be 0 (no limit) or at least 1mb, got {value!r}")
    return size


def _yuan(value: object) -> Decimal:
    """Yuan as an exact Decimal: str(float) keeps what was written (0.5, not 0.5000…01)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise fail(f"expected a number, got {kind_of(value)}")
    try:
        rate = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise fail(f"'{value}' is not a number") from None
    if not rate.is_finite() or rate < 0:
        raise fail(f"must be a number of at least 0, got {value}")
    return rate


NonEmpty = Annotated[str, AfterValidator(_nonempty)]
Id = Annotated[str, AfterValidator(_nonempty), AfterValidator(_identifier)]
Port = Annotated[int, Field(ge=0, le=65535), Why("0 lets the OS choose")]
Seconds = Annotated[float, Field(gt=0)]  # a duration that must pass
AtLeastOne = Annotated[int, Field(ge=1)]
BindAddress = Annotated[str, AfterValidator(_nonempty), AfterValidator(_bind_address)]
NetworkItem = Annotated[str, AfterValidator(_network)]
Yuan = Annotated[Decimal, BeforeValidator(_yuan)]
Role = Literal["admin", "audit", "reports"]


def _offset_datetime(value: datetime | None) -> datetime | None:
    """A local date-time has no instant: a token's end must say its offset."""
    if value is not None and value.utcoffset() is None:
        raise fail("must be a date-time with offset, e.g. 2027-01-01T00:00:00+08:00")
    return value


class Table(BaseModel):
    """A TOML table: strict types, no unknown keys, immutable once read."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, allow_inf_nan=False, arbitrary_types_allowed=True
    )


class Name(Table):
    """A display name: ``"text"`` (both languages) or ``{zh = "…", en = "…"}``; a missing
    language falls back to the other."""

    UNKNOWN: ClassVar[str] = "unknown language '{key}': names have zh and en"
    zh: str = ""
    en: str = ""

    @model_validator(mode="before")
    @classmethod
    def _one_text(cls, value: object) -> object:
        if isinstance(value, str):
            return {"zh": value, "en": value}
        if not isinstance(value, dict):
            raise fail(f"expected a string or {{zh = …, en = …}}, got {kind_of(value)}")
        return value

    @model_validator(mode="after")
    def _filled(self) -> Name:
        if not self.zh.strip() and not self.en.strip():
            raise fail("needs a non-empty name (zh, en or both)")
        return self

    def texts(self) -> dict[str, str]:
        """Both languages, a missing one filled in from the other."""
        zh, en = self.zh.strip(), self.en.strip()
        return {"zh": zh or en, "en": en or zh}


# -- the tables
class BrandTable(Table):
    ssid: NonEmpty
    name: Name | None = None
    logo: str | None = None
    home_url: Annotated[str, AfterValidator(_http_url)] = ""

    @field_validator("ssid")
    @classmethod
    def _ssid_fits(cls, ssid: str) -> str:
        size = len(ssid.encode())
        if size > MAX_SSID_BYTES:
            raise fail(f"an SSID is at most {MAX_SSID_BYTES} bytes (IEEE 802.11), got {size}")
        return ssid

    @field_validator("logo")
    @classmethod
    def _logo_exists(cls, logo: str | None, info: ValidationInfo) -> str | None:
        if logo is not None and not scope_of(info).resolve(logo or ".").is_file():
            raise fail(f"file not found: {scope_of(info).resolve(logo or '.')}")
        return logo


class QuotaTable(Table):
    daily_seconds: AtLeastOne = 7200
    timezone: Annotated[str, AfterValidator(_nonempty), AfterValidator(_timezone)] = "Asia/Shanghai"
    max_devices: AtLeastOne = 2
    interim_interval: Annotated[int, Field(ge=MIN_INTERIM_INTERVAL), Why("RFC 2869 §5.16")] = 300
    remember_device_days: Annotated[int, Field(ge=0)] = 1
    idle_timeout: Annotated[int, Field(ge=0)] = 900
    login_ttl: Annotated[int, Field(ge=MIN_LOGIN_TTL)] = 300
    stale_grace: Annotated[float, Field(gt=0)] | None = None  # None: 2.5 x interim_interval
    # None: one interim interval, at least 60 s, at most daily_seconds
    min_grant_seconds: int | None = None

    @field_validator("min_grant_seconds")
    @classmethod
    def _within_a_day(cls, value: int | None, info: ValidationInfo) -> int | None:
        daily = info.data.get("daily_seconds", cls.model_fields["daily_seconds"].default)
        if value is not None and not 1 <= value <= daily:
            raise fail(f"must be between 1 and {daily} (quota.daily_seconds), got {value}")
        return value


class RadiusTable(Table):
    bind: BindAddress = "0.0.0.0"
    auth_port: Port = 1812
    acct_port: Annotated[Port, Field(validate_default=True)] = 1813
    dedup_window: Seconds = 30.0  # RFC 5080 duplicate-detection window
    require_message_authenticator: bool = True
    max_in_flight: AtLeastOne = 4096

    @field_validator("acct_port")
    @classmethod
    def _two_ports(cls, acct: int, info: ValidationInfo) -> int:
        auth = info.data.get("auth_port")
        if auth and auth == acct:
            raise fail(f"must differ from auth_port ({auth})")
        return acct


class HttpTable(Table):
    bind: BindAddress = "0.0.0.0"
    port: Port = 8080
    header_timeout: Seconds = 10.0
    keepalive_timeout: Seconds = 15.0
    body_timeout: Seconds = 30.0
    max_connections: AtLeastOne = 4096
    max_connections_per_ip: AtLeastOne = 256
    reserved_fds: Annotated[int, Field(ge=0)] = 256
    metrics_bind: str = ""
    metrics_port: Annotated[Port, Field(validate_default=True)] = 9480

    @field_validator("metrics_bind")
    @classmethod
    def _metrics_bind(cls, value: str) -> str:
        return _bind_address(value) if value.strip() else ""

    @field_validator("metrics_port")
    @classmethod
    def _own_port(cls, metrics_port: int, info: ValidationInfo) -> int:
        port = info.data.get("port")
        if info.data.get("metrics_bind") and metrics_port and metrics_port == port:
            raise fail(f"must differ from http.port ({port})")
        return metrics_port


class RedisTable(Table):
    url: Annotated[str, Field(validate_default=True)] = ""
    data_dir: str = "var"
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    timeout: Seconds = 2.0
    maxmemory: Annotated[int, BeforeValidator(_memory_size)] = 1 << 30
    memory_high_water: Annotated[
        float, Field(gt=0, lt=1), Why("a share of the budget", only=("less_than",))
    ] = 0.85
    startup_wait: Annotated[float, Field(ge=0)] = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, url: str, info: ValidationInfo) -> str:
        """``$CITYWIFI_REDIS_URL`` wins over the file; the topology must parse, and a
        published placeholder password is refused."""
        url = url.strip()
        env = scope_of(info).environ.get(REDIS_URL_ENV, "").strip()
        where = f"{REDIS_URL_ENV}: " if env else ""
        if env:
            if "://" not in env:
                raise fail(f"{REDIS_URL_ENV}='{env}' is not a URL (redis://host:port/db)")
            url = env
        elif url and "://" not in url:
            raise fail(f"'{url}' is not a URL (redis://host:port/db), or leave it empty")
        if not url:
            return url
        try:
            target = parse_redis_url(url)
        except RedisUrlError as exc:
            raise fail(f"{where}{exc}") from None
        for password in (urlsplit(url).password, target.sentinel_password):
            reason = placeholder_reason(password or "")
            if reason is not None:
                raise fail(f"{where}the password {reason}")
        return url


class SmsTable(Table):
    backend: Literal["file", "webhook"] = "file"
    path: str = ""  # "": <data_dir>/sms.jsonl
    webhook_url: Annotated[str | None, Field(validate_default=True)] = None
    webhook_headers: dict[str, Annotated[str, AfterValidator(_no_placeholder)]] = {}
    webhook_timeout: Seconds = 5.0
    webhook_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 2
    allowed_country_codes: list[Annotated[str, AfterValidator(_country_code)]] | None = None

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("backend") == "webhook":
            if url is None:
                raise fail("missing required key 'webhook_url'")
            _nonempty(url)
        if url and not url.startswith(("https://", "http://")):
            raise fail(f"'{url}' is not an http:// or https:// URL")
        return url

    @field_validator("allowed_country_codes")
    @classmethod
    def _some_code(cls, codes: list[str] | None) -> list[str] | None:
        if codes is not None and not codes:
            raise fail('must name at least one code, e.g. "+86"')
        return codes


class LogTable(Table):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    requests: bool = True


class SecurityTable(Table):
    person_key: Annotated[str, AfterValidator(_strong_secret)] = ""


class PortalTable(Table):
    cookie_key: Annotated[str, AfterValidator(_strong_secret)] = ""
    cookie_days: Annotated[int, Field(ge=0, le=MAX_COOKIE_DAYS)] = 30
    public_url: str = ""
    trusted_proxies: Annotated[list[NetworkItem], Says("expected an array, got {got}")] = []
    handoff_delay: Annotated[int, Field(ge=0, le=MAX_HANDOFF_DELAY)] = 3
    otp_resend_seconds: AtLeastOne = 60
    otp_per_phone_hour: AtLeastOne = 5
    otp_per_phone_day: AtLeastOne = 10
    otp_per_mac_hour: AtLeastOne = 5
    otp_per_mac_day: AtLeastOne = 10
    otp_per_ip_hour: AtLeastOne = 60
    otp_per_nas_hour: AtLeastOne = 2000
    otp_per_ip48_hour: AtLeastOne = 120
    otp_per_ip32_hour: AtLeastOne = 1000
    otp_per_ip24_hour: AtLeastOne = 120
    otp_per_phone_ceiling_day: Annotated[AtLeastOne, Field(validate_default=True)] = 30
    otp_global_hour: AtLeastOne = 10000
    verify_per_device_day: AtLeastOne = 20
    verify_per_phone_day: Annotated[AtLeastOne, Field(validate_default=True)] = 100
    verify_per_ip_hour: AtLeastOne = 120
    verify_per_nas_hour: AtLeastOne = 2000
    page_per_ip_minute: AtLeastOne = 120
    logins_per_device_hour: AtLeastOne = 3

    CEILINGS: ClassVar[Mapping[str, str]] = {
        "otp_per_phone_ceiling_day": "otp_per_phone_day",
        "verify_per_phone_day": "verify_per_device_day",
    }

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        if url and not url.startswith(("https://", "http://")):
            raise fail(f"'{url}' is not an http:// or https:// URL")
        return url

    @field_validator(*CEILINGS)
    @classmethod
    def _ceiling(cls, ceiling: int, info: ValidationInfo) -> int:
        """The ceiling over all of a phone's devices cannot be below one device's share."""
        assert info.field_name is not None
        one = cls.CEILINGS[info.field_name]
        share = info.data.get(one)
        if share is not None and ceiling < share:
            raise fail(
                f"must be at least {one} ({share}): the ceiling over all of a "
                "phone's devices cannot be below one device's share"
            )
        return ceiling


class RegistryTable(Table):
    venues_csv: str = ""
    access_points_csv: str = ""


def _effective_day(value: object) -> date:
    """A TOML local date (``effective = 2026-11-01``, no quotes, no time)."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise fail(f"expected a date as 2026-11-01 (no quotes, no time), got {kind_of(value)}")
    if not FIRST_DAY <= value <= LAST_DAY:
        raise fail(f"must be a date from {FIRST_DAY} to {LAST_DAY}, got {value}")
    return value


Rates = Annotated[
    dict[Annotated[str, AfterValidator(_venue_type)], Yuan], Says("{venue_type = yuan}")
]
Caps = Annotated[dict[str, Yuan], Says("{venue_id = number}")]
Factors = Annotated[dict[str, Yuan], Says("{operator_id = number}")]


class SubsidyVersionEntry(Table):
    """``[[subsidy.versions]]``: the rates, caps and factors in force from ``effective``
    until the next version; a table it leaves out is the one of the version before.
    The order and gaps of the versions are the loader's checks (``check_subsidy``)."""

    effective: Annotated[date, BeforeValidator(_effective_day)]
    rates: Rates | None = None
    venue_caps: Caps | None = None
    operator_factors: Factors | None = None


class SubsidyTable(Table):
    # the version in force since forever (until the first of ``versions``)
    rates: Rates = {}
    venue_caps: Caps = {}
    operator_factors: Factors = {}
    bill_beyond_allowance: bool = False  # pay the seconds a NAS carried beyond the allowance
    versions: Annotated[
        list[SubsidyVersionEntry],
        Says("expected an array of tables [[subsidy.versions]], got {got}"),
    ] = []


class AuditTable(Table):
    retention_days: Annotated[
        int,
        Field(ge=MIN_RETENTION_DAYS),
        Why("MPS Order 82 Art. 13: login records are kept at least 60 days"),
    ] = 180
    phone_retention_days: Annotated[
        int,
        Field(ge=MIN_PHONE_RETENTION_DAYS, le=MAX_PHONE_RETENTION_DAYS),
        Why("the archiver needs the number while a session waits in the outbox"),
    ] = 180


MIN_EXPORT_LOG_DAYS: Final = 1095  # PIPL Art. 56: handling records kept at least three years
MIN_USAGE_RETENTION_DAYS: Final = 400  # the ledger's rows: a year's reports and then some


class PrivacyTable(Table):
    """``[privacy]`` (PIPL Art. 17: the handler's name and contact on the privacy page)."""

    handler: Name | None = None  # None: the brand's name
    contact_email: str = ""
    contact_phone: str = ""
    contact_address: Name | None = None
    export_log_retention_days: Annotated[
        int,
        Field(ge=MIN_EXPORT_LOG_DAYS, le=MAX_PHONE_RETENTION_DAYS),
        Why("PIPL Art. 56: records of the handling are kept at least three years"),
    ] = MIN_EXPORT_LOG_DAYS
    usage_retention_days: Annotated[
        int,
        Field(ge=MIN_USAGE_RETENTION_DAYS, le=MAX_PHONE_RETENTION_DAYS),
        Why("a year-on-year report reads the ledger rows of a year ago"),
    ] = MIN_EXPORT_LOG_DAYS


MAX_ARCHIVE_GATHER: Final = 60  # s: the outbox may hold a minute of traffic, no more


class ReportsTable(Table):
    settle_hours: Annotated[int, Field(ge=0, le=MAX_SETTLE_HOURS)] = 24
    max_range_days: Annotated[int, Field(ge=1, le=MAX_RANGE_DAYS)] = 93
    archive_dir: str = ""  # "": <data_dir>/archive
    signing_key_file: str = ""  # "": <data_dir>/report-signing.key (Ed25519 seed, hex)
    archive_gather: Annotated[
        float,
        Field(ge=0, le=MAX_ARCHIVE_GATHER),
        Why("records wait in Redis meanwhile; every read of the archive drains first"),
    ] = 5.0


class EnforcerTable(Table):
    enabled: bool = True
    disconnect_timeout: Seconds = 2.0
    disconnect_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 3
    disconnect_timestamp_window: Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_WINDOW)] = 300
    lease: Annotated[Seconds, Field(validate_default=True)] = 60.0
    sweep_interval: Seconds = 5.0
    coa_on_new_session: bool = False

    @field_validator("lease")
    @classmethod
    def _outlasts_a_disconnect(cls, lease: float, info: ValidationInfo) -> float:
        """One process holds a person for ``lease``: an RFC 5176 exchange (every
        retransmission, doubling) must fit in it, or another process would act too."""
        fields = cls.model_fields
        timeout = info.data.get("disconnect_timeout", fields["disconnect_timeout"].default)
        retries = info.data.get("disconnect_retries", fields["disconnect_retries"].default)
        exchange = sum(retry_schedule(timeout, retries))
        if lease <= exchange:
            raise fail(
                f"must be longer than one disconnect exchange ({exchange:g} s with "
                "disconnect_timeout and disconnect_retries), or another process would act too"
            )
        return lease


# -- the entries of the arrays of tables
class OperatorEntry(Table):
    id: Id
    name: Name


class VenueEntry(Table):
    id: Id
    name: Name
    type: Annotated[str, AfterValidator(_nonempty), AfterValidator(_venue_type)]
    district: NonEmpty
    operator: NonEmpty


class AccessPointEntry(Table):
    match: NonEmpty  # an AP's MAC (any notation) or a NAS-Identifier
    venue: NonEmpty

    @field_validator("match")
    @classmethod
    def _normal(cls, match: str) -> str:
        """The registry's key: a MAC as ``AA-BB-CC-DD-EE-FF`` (RFC 3580 §3.21), else as
        written."""
        return normalize_mac(match) or match.strip()


VENDOR_KEYS: Final = {"login_url": "generic", "login_hosts": "mikrotik", "uam_addresses": "chilli"}


class PortBlockVsa(Table):
    """``[[clients]] port_block_vsa``: the vendor attributes a NAS reports its NAT port
    block in, when not RFC 8045 or a vendor read anyway (docs/audit.md)."""

    vendor: Annotated[int, Field(ge=1, le=0xFFFFFFFF)]  # the IANA enterprise number
    address: Annotated[int, Field(ge=1, le=255)]  # vendor type of the public IPv4 (ipaddr)
    first_port: Annotated[int, Field(ge=1, le=255)]  # ... of the first port (integer)
    last_port: Annotated[int, Field(ge=1, le=255)]  # ... of the last port (integer)


def _fingerprint(value: str) -> str:
    fingerprint = normalize_fingerprint(value)
    if fingerprint is None:
        raise fail(
            f"'{value}' is not a SHA-256 fingerprint (64 hex digits, colons allowed: "
            "`openssl x509 -noout -fingerprint -sha256 -in client.pem`)"
        )
    return fingerprint


class ClientEntry(Table):
    """A RADIUS peer. Its secrets are checked for strength; on a loopback-only client
    (only this machine can send from there) a weak one is a warning, not an error."""

    id: Id
    address: Annotated[str, AfterValidator(_nonempty)]
    secret: str
    uam_secret: str = ""
    venue: NonEmpty
    vendor: Literal["chilli", "generic", "mikrotik"] = "generic"
    coa_port: Annotated[int, Field(ge=1, le=65535)] = 3799
    require_message_authenticator: bool | None = None  # None: radius's setting
    nas_identifier: str = ""
    uam_auth: Literal["chap", "pap"] = "pap"
    login_url: Annotated[str, AfterValidator(_http_url)] = ""
    login_hosts: list[Annotated[str, AfterValidator(_host)]] = []
    uam_addresses: list[NetworkItem] = []
    public_addresses: list[NetworkItem] = []  # the NAS's post-NAT addresses (docs/audit.md)
    port_block_vsa: PortBlockVsa | None = None
    trace: bool = False  # its RADIUS trace on from start (and after a reload): docs/operations.md
    # RadSec (RFC 6614): the client's certificate, by SHA-256 fingerprint and/or subject
    radsec_fingerprint: list[Annotated[str, AfterValidator(_fingerprint)]] = []
    radsec_subject: str = ""
    radsec_dae: bool = False  # send Disconnect/CoA down its RadSec connection

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise fail(f"'{value}' is not an IP address or network (CIDR)") from None
        return value.strip()

    @field_validator("secret", "uam_secret")
    @classmethod
    def _secret(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "secret" and not value:
            raise fail("must not be empty (the RADIUS shared secret)")
        reason = secret_weakness(value) if value else None
        if reason is None:
            return value
        address = info.data.get("address")
        if address is None or not ipaddress.ip_network(address, strict=False).is_loopback:
            raise fail(reason)
        assert info.field_name is not None
        scope_of(info).warnings.append(
            ((info.field_name,), f"{reason}; accepted only because this client is loopback-only")
        )
        return value

    @field_validator(*VENDOR_KEYS)
    @classmethod
    def _for_its_vendor(cls, value: Any, info: ValidationInfo) -> Any:
        """``login_url`` (generic), ``login_hosts`` (mikrotik), ``uam_addresses`` (chilli):
        where the portal may send a credential for this client (docs/portal.md)."""
        assert info.field_name is not None
        owner = VENDOR_KEYS[info.field_name]
        if info.data.get("vendor", owner) != owner:
            raise fail(f'is only used with vendor = "{owner}"')
        return value

    @field_validator("nas_identifier")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class ApiTokenEntry(Table):
    name: Id
    sha256: NonEmpty
    roles: Annotated[
        list[Role], Field(min_length=1), Says("expected a non-empty array of roles ({choices})")
    ]
    # A TOML offset date-time after which the token is refused (issue 17); none: never.
    expires: Annotated[datetime | None, AfterValidator(_offset_datetime)] = None

    @field_validator("sha256")
    @classmethod
    def _digest(cls, digest: str) -> str:
        if not SHA256_PATTERN.fullmatch(digest):
            raise fail(
                "must be 64 lowercase hex digits (sha256 of the token, e.g. "
                "`printf %s TOKEN | sha256sum`)"
            )
        if digest in EXAMPLE_TOKEN_DIGESTS:
            raise fail(
                f"is the sha256 of the published example token "
                f"'{EXAMPLE_TOKEN_DIGESTS[digest]}': anyone can use it; make your own "
                "(`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return digest


def _exporter_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise fail(f"'{value}' is not an IP address") from None


class NatLogExporterEntry(Table):
    """``[[natlog.exporters]]``: a NAS or CGN allowed to send NAT logs."""

    address: Annotated[str, AfterValidator(_nonempty), AfterValidator(_exporter_address)]
    nas: str = ""  # the client whose sessions it translates ("": any client)


class NatLogTable(Table):
    """``[natlog]`` (MPS Order 82 Art. 8: the public-private address mapping)."""

    retention_days: Annotated[
        int,
        Field(ge=MIN_RETENTION_DAYS, le=MAX_PHONE_RETENTION_DAYS),
        Why("MPS Order 82 Art. 13: records are kept at least 60 days"),
    ] = 180
    lookback_hours: Annotated[int, Field(ge=1, le=744)] = 24  # 744: a 31-day month
    bind: BindAddress = "0.0.0.0"
    syslog_port: Port = 514  # RFC 5426
    ipfix_port: Port = 4739  # RFC 7011 §10.3.1
    listen: bool = False  # `citywifi serve` runs the listener
    # RFC 7011 §8.4: over UDP a template not refreshed within this time is gone
    template_timeout: Annotated[int, Field(ge=10, le=86400)] = 1800
    exporters: list[NatLogExporterEntry] = []


def _dns_name(value: str) -> str:
    value = value.strip()
    if value and not DNS_NAME.match(value):
        raise fail(f"'{value}' is not a lower-case DNS name (RFC 7542 §2.2)")
    return value


def _roaming_oi(value: str) -> str:
    oi = value.strip().lower().replace("-", "").replace(":", "")
    if not ROAMING_OI.match(oi):
        raise fail(f"'{value}' is not an OI of 3 or 5 octets in hex (e.g. 5a03ba0000)")
    return oi


_PEM_MARKERS: Final = {
    "ca_cert": ("-----BEGIN CERTIFICATE-----", "certificate"),
    "server_cert": ("-----BEGIN CERTIFICATE-----", "certificate"),
    "server_key": ("PRIVATE KEY-----", "private key"),
}


class PasspointTable(Table):
    """``[passpoint]``: the EAP-TTLS server and the profiles (issue 19)."""

    enabled: bool = False
    realm: Annotated[str, AfterValidator(_dns_name), Field(validate_default=True)] = ""
    home_domain: Annotated[str, AfterValidator(_dns_name)] = ""  # "": the realm
    friendly_name: NonEmpty = "City WiFi"
    roaming_consortium: list[Annotated[str, AfterValidator(_roaming_oi)]] = []
    ca_cert: Annotated[str, Field(validate_default=True)] = ""
    server_cert: Annotated[str, Field(validate_default=True)] = ""
    server_key: Annotated[str, Field(validate_default=True)] = ""
    credential_days: Annotated[int, Field(ge=1, le=3650)] = 365
    # RFC 5281 §9.2.2: TTLS fragments; 256 octets at least, 4000 fits a jumbo-free path
    fragment_size: Annotated[int, Field(ge=256, le=4000)] = 1398
    resumption_seconds: Annotated[int, Field(ge=60, le=86400)] = 3600
    state_seconds: Annotated[int, Field(ge=10, le=600)] = 60

    @field_validator("realm")
    @classmethod
    def _realm_when_enabled(cls, realm: str, info: ValidationInfo) -> str:
        if info.data.get("enabled") and not realm:
            raise fail("missing required key 'realm' (passpoint is enabled)")
        return realm

    @field_validator("ca_cert", "server_cert", "server_key")
    @classmethod
    def _pem_when_enabled(cls, value: str, info: ValidationInfo) -> str:
        """When enabled, each file must exist and hold the PEM object it is named for."""
        if not info.data.get("enabled"):
            return value
        key = info.field_name or ""
        if not value.strip():
            raise fail(f"missing required key '{key}' (passpoint is enabled)")
        marker, what = _PEM_MARKERS[key]
        path = scope_of(info).resolve(value)
        try:
            text = path.read_text(errors="replace")
        except OSError as err:
            raise fail(f"cannot read {path}: {err.strerror}") from None
        if marker not in text:
            raise fail(f"{path} holds no PEM {what}")
        return value


class RadsecTable(Table):
    """``[radsec]``: the RADIUS-over-TLS listener (RFC 6614)."""

    enabled: bool = False
    bind: BindAddress = "0.0.0.0"
    port: Port = 2083  # RFC 6614 §2.1
    certificate: Annotated[str, Field(validate_default=True)] = ""
    private_key: Annotated[str, Field(validate_default=True)] = ""
    ca_certificates: Annotated[str, Field(validate_default=True)] = ""
    idle_timeout: Seconds = 120.0
    max_in_flight: AtLeastOne = 256

    @field_validator("certificate", "private_key", "ca_certificates")
    @classmethod
    def _files_when_enabled(cls, value: str, info: ValidationInfo) -> str:
        """When enabled: each file exists and parses, the key is the certificate's, no
        certificate expired (one expiring soon: a warning)."""
        if not info.data.get("enabled"):
            return value
        key = info.field_name or ""
        if not value.strip():
            raise fail(f"missing required key '{key}' (radsec is enabled)")
        scope = scope_of(info)
        path = scope.resolve(value)
        warning = None
        try:
            if key == "certificate":
                _, warning = check_certificate(path)
            elif key == "private_key":
                cert = info.data.get("certificate")
                parsed = None
                if cert:  # the certificate's own problems are said on its key
                    try:
                        parsed, _ = check_certificate(scope.resolve(cert))
                    except CertificateProblem:
                        parsed = None
                check_private_key(path, parsed)
            else:
                warning = check_ca_bundle(path)
        except CertificateProblem as problem:
            raise fail(str(problem)) from None
        if warning is not None:
            scope.warnings.append(((key,), warning))
        return value


# The file: its tables and its arrays of tables, by the name they have in it.
SECTIONS: Final[Mapping[str, type[Table]]] = {
    "brand": BrandTable,
    "quota": QuotaTable,
    "radius": RadiusTable,
    "http": HttpTable,
    "redis": RedisTable,
    "sms": SmsTable,
    "log": LogTable,
    "security": SecurityTable,
    "portal": PortalTable,
    "registry": RegistryTable,
    "subsidy": SubsidyTable,
    "audit": AuditTable,
    "reports": ReportsTable,
    "enforcer": EnforcerTable,
    "passpoint": PasspointTable,
    "natlog": NatLogTable,
    "radsec": RadsecTable,
    "privacy": PrivacyTable,
}
LISTS: Final[Mapping[str, type[Table]]] = {
    "operators": OperatorEntry,
    "venues": VenueEntry,
    "clients": ClientEntry,
    "access_points": AccessPointEntry,
    "api_tokens": ApiTokenEntry,
}
VENUES_CSV_COLUMNS: Final = ("id", "name_zh", "name_en", "type", "district", "operator")
ACCESS_POINTS_CSV_COLUMNS: Final = ("match", "venue")
