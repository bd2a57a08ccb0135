"""The one typed configuration object: frozen dataclasses, built once from TOML (+ CSV
registries) by ``controller.config.loader`` and passed down; nothing re-reads the file."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from controller.config.passpoint import PasspointSettings
from controller.config.problems import ConfigProblem
from controller.config.radsec import RadsecSettings
from controller.domain.rate_history import RateVersion

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
    # The listeners' edge (controller.web.http_edge): slow, idle and piled-up connections.
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
    type: str  # one of controller.domain.venue_types.VENUE_TYPES
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
    # the NAS's public (post-NAT) addresses, recorded with each session (docs/audit.md)
    public_addresses: tuple[IPNetwork, ...] = ()
    # (vendor, address type, first-port type, last-port type) of its NAT port block VSAs
    port_block_vsa: tuple[int, int, int, int] | None = None
    trace: bool = False  # RADIUS trace on by config (the console/CLI switch adds to it)
    # RadSec (RFC 6614): its certificate's SHA-256 fingerprints (hex) and/or the subject
    # (common name or DNS/URI/IP subject alternative name) it must carry
    radsec_fingerprint: tuple[str, ...] = ()
    radsec_subject: str = ""
    radsec_dae: bool = False  # Disconnect/CoA down its RadSec connection (RFC 6614 §2.5)


@dataclass(frozen=True, slots=True)
class AccessPoint:
    match: str  # normalised AP MAC (AA-BB-CC-DD-EE-FF) or a NAS-Identifier
    venue: str


@dataclass(frozen=True, slots=True)
class Subsidy:
    rates: Mapping[str, Decimal]  # venue type -> yuan per free user-hour
    venue_caps: Mapping[str, Decimal] = field(default_factory=dict)  # venue -> yuan per month
    operator_factors: Mapping[str, Decimal] = field(default_factory=dict)  # operator -> factor
    bill_beyond_allowance: bool = False  # pay seconds a NAS carried beyond the allowance
    # [[subsidy.versions]] in effective order, each resolved (a table it leaves out is the
    # one of the version before); the keys above are the version in force before them
    versions: tuple[RateVersion, ...] = ()

    def history(self) -> tuple[RateVersion, ...]:
        """Every version in effective order, the flat keys (since forever) first."""
        base = RateVersion(None, self.rates, self.venue_caps, self.operator_factors)
        return (base, *self.versions)


@dataclass(frozen=True, slots=True)
class AuditSettings:
    # Days login records are kept (MPS Order 82 Art. 13: at least 60; default six months).
    retention_days: int = 180
    # Days a person's phone profile (cw:{pid}:p) is kept after their last login (PIPL
    # Art. 19: deleted at the end of its retention).
    phone_retention_days: int = 180


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """``[privacy]``: who handles the personal data and how to reach them (PIPL Art. 17,
    shown on the portal's privacy page), how long the audit-export log is kept."""

    handler: Mapping[str, str] = field(default_factory=dict)  # zh/en; empty: the brand name
    contact_email: str = ""
    contact_phone: str = ""
    contact_address: Mapping[str, str] = field(default_factory=dict)  # zh/en
    export_log_retention_days: int = 1095  # audit-exports.jsonl entries (PIPL Art. 56)
    usage_retention_days: int = 1095  # the ledger's rows (person ids); figures stay


@dataclass(frozen=True, slots=True)
class NatLogExporter:
    """A NAS or CGN allowed to send NAT logs (controller.services.natlog)."""

    address: str  # the datagrams' source address (an IP address)
    nas: str = ""  # the RADIUS client id whose sessions it translates ("": any client)


@dataclass(frozen=True, slots=True)
class NatLogSettings:
    """NAT logs (MPS Order 82 Art. 8: public-private address mapping): docs/audit.md."""

    retention_days: int = 180  # days translations are kept (like audit.retention_days)
    lookback_hours: int = 24  # how far before T `audit who` looks for the translation
    bind: str = "0.0.0.0"  # the listener's address (`citywifi natlog listen`)
    syslog_port: int = 514  # UDP syslog (RFC 5426); 0: the OS chooses
    ipfix_port: int = 4739  # UDP IPFIX (RFC 7011 §10.3.1); 0: the OS chooses
    listen: bool = False  # `citywifi serve` runs the listener (else `citywifi natlog listen`)
    template_timeout: int = 1800  # s an IPFIX template lives without refresh (RFC 7011 §8.4)
    exporters: tuple[NatLogExporter, ...] = ()  # datagrams from anyone else are dropped


@dataclass(frozen=True, slots=True)
class ReportSettings:
    settle_hours: int = 24  # a day's figures are final this long after its local midnight
    max_range_days: int = 93  # longest from..to range of one report
    archive_dir: Path | None = None  # None: <data_dir>/archive
    signing_key_file: Path | None = None  # Ed25519 seed (hex); None: <data_dir>/report-signing.key
    # s the archiver gathers outbox entries before writing them (a full round at once;
    # 0: on every pass of its loop, ~1 s); reads of the archive drain first
    archive_gather: float = 5.0


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
    expires: int | None = None  # epoch the token stops working (issue 17); None: never


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
    natlog: NatLogSettings = field(default_factory=NatLogSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    enforcer: EnforcerSettings = field(default_factory=EnforcerSettings)
    passpoint: PasspointSettings = field(default_factory=PasspointSettings)
    radsec: RadsecSettings = field(default_factory=RadsecSettings)
    # accepted but worth a look (a placeholder secret on a loopback-only client): logged
    warnings: tuple[ConfigProblem, ...] = ()
