"""Loading and validating the config: ``load_config`` (raise ``ConfigError`` with every
problem), ``check_config`` (list them), where a command finds its file. The checks of
each section and the cross-checks (duplicate ids, references, overlapping networks) are
``_Builder``'s; its readers come from ``reader`` and ``registry_csv``."""

from __future__ import annotations

import ipaddress
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import phonenumbers

from controller.config.locator import Locator, syntax_problem
from controller.config.model import (
    ROLES,
    VENDORS,
    ApiToken,
    AuditSettings,
    Brand,
    Client,
    Config,
    EnforcerSettings,
    HttpSettings,
    IPNetwork,
    LogSettings,
    NatLogExporter,
    NatLogSettings,
    PortalSettings,
    QuotaPolicy,
    RadiusSettings,
    RedisSettings,
    ReportSettings,
    SecuritySettings,
    SmsSettings,
    Subsidy,
)
from controller.config.problems import ConfigError, ConfigProblem, KeyPath, format_key
from controller.config.reader import (
    APPENDFSYNC,
    EXAMPLE_TOKEN_DIGESTS,
    HOST_PATTERN,
    LISTS,
    LOG_FORMATS,
    LOG_LEVELS,
    MEMORY_SIZE,
    MEMORY_UNITS,
    MISSING,
    SECTIONS,
    SHA256_PATTERN,
    SMS_BACKENDS,
    Spot,
    did_you_mean,
    http_url,
    is_ip,
    kind_of,
    one_of,
    placeholder_reason,
    reason_of,
    section_hint,
)
from controller.config.redis_url import RedisUrlError, parse_redis_url
from controller.config.registry_csv import RegistryReader
from controller.domain.venue_types import VENUE_TYPES
from radius.dae import retry_schedule


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


def _load(path: Path, environ: Mapping[str, str]) -> tuple[Config | None, list[ConfigProblem]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [ConfigProblem(path, None, "", f"cannot read config file: {reason_of(exc)}")]
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [syntax_problem(path, text, exc)]
    builder = _Builder(path, Locator(text), environ)
    config = builder.build(raw)
    return (None if builder.problems else config), builder.sorted_problems()


class _Builder(RegistryReader):
    """Turns parsed TOML (+ CSV registries) into a ``Config``, collecting every problem.

    Each check records a problem and substitutes a default, so one pass finds everything;
    an entry with a problem is left out of the result but its id still counts as declared,
    so references to it don't produce follow-on "does not exist" noise.
    """

    # -- sections
    def build(self, raw: Mapping[str, Any]) -> Config | None:
        known = (*SECTIONS, *LISTS)
        for key, value in raw.items():
            if key in known:
                continue
            if isinstance(value, dict | list):
                self.report((key,), f"unknown table '{key}'{did_you_mean(key, known)}")
            else:  # a setting above the first table header
                self.report((key,), f"unknown key '{key}' outside any table{section_hint(key)}")
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
            spot = Spot(self.file, path)
            match = self.string(t, path, "match", required=True, nonempty=True)
            venue = self.string(t, path, "venue", required=True, nonempty=True)
            self.access_point(spot, match, venue)
        if aps_csv is not None:
            self.access_points_from_csv(aps_csv)
        subsidy = self.subsidy(self.table(raw, "subsidy"))
        tokens = self.api_tokens(self.tables(raw, "api_tokens"))
        audit = self.audit(self.table(raw, "audit"))
        natlog = self.natlog(self.table(raw, "natlog"), clients)
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
            natlog=natlog,
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
        if home and not http_url(home):
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
            hint = did_you_mean(name, zoneinfo.available_timezones())
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
        if value is MISSING:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str) and (m := MEMORY_SIZE.fullmatch(value.strip().lower())):
            size = int(m.group(1)) * MEMORY_UNITS[m.group(2)]
        else:
            self.report((*p, key), f'expected bytes, as 1073741824 or "1gb", got {value!r}')
            return default
        if size != 0 and size < MEMORY_UNITS["mb"]:
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
            self.report((*p, "webhook_headers"), f"expected a table, got {kind_of(raw_headers)}")
        else:
            for name, value in raw_headers.items():
                if isinstance(value, str):
                    headers[name] = value
                    reason = placeholder_reason(value)
                    if reason is not None:
                        self.report((*p, "webhook_headers", name), reason)
                else:
                    self.report(
                        (*p, "webhook_headers", name), f"expected a string, got {kind_of(value)}"
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
        if raw is MISSING:
            return None
        if not isinstance(raw, list):
            self.report((*p, key), f"expected an array of strings, got {kind_of(raw)}")
            return None
        out = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                out.append((i, item))
            else:
                self.report((*p, key, i), f"expected a string, got {kind_of(item)}")
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
        if raw is not MISSING and not isinstance(raw, list):
            self.report((*p, "trusted_proxies"), f"expected an array, got {kind_of(raw)}")
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

    # -- RADIUS clients
    def clients(
        self, entries: list[tuple[KeyPath, dict[str, Any]]], require_ma: bool
    ) -> tuple[Client, ...]:
        out: list[Client] = []
        networks: list[tuple[Spot, str, IPNetwork]] = []
        ids: dict[str, Spot] = {}
        nas_ids: dict[str, Spot] = {}
        for path, t in entries:
            spot = Spot(self.file, path)
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
        if url and not http_url(url):
            self.report((*path, "login_url"), f"'{url}' is not an http:// or https:// URL")
        out["login_url"] = url
        hosts = []
        for i, host in self.strings(t, path, "login_hosts") or []:
            name = host.strip().lower().strip("[]")
            if not HOST_PATTERN.fullmatch(name) and not is_ip(name):
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

    def overlaps(self, networks: list[tuple[Spot, str, IPNetwork]]) -> None:
        """Each packet source must map to exactly one client (and so one secret).

        CIDR blocks are either disjoint or nested, so after sorting by start address
        (wider first) a block overlaps something iff it starts inside the last block kept.
        """
        ordered = sorted(
            networks, key=lambda e: (e[2].version, int(e[2].network_address), e[2].prefixlen)
        )
        kept: tuple[Spot, str, IPNetwork] | None = None
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
            self.report(p, f"expected a table {{venue_type = yuan}}, got {kind_of(raw)}")
            return Subsidy(rates=MappingProxyType(rates))
        for kind, value in raw.items():
            if kind not in VENUE_TYPES:
                hint = did_you_mean(kind, VENUE_TYPES)
                self.report(
                    (*p, kind),
                    f"unknown venue type '{kind}'{hint}; valid types: {one_of(VENUE_TYPES)}",
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
        self, t: Mapping[str, Any], key: str, known: Mapping[str, Spot], what: str
    ) -> Mapping[str, Decimal]:
        """``[subsidy]`` ``{id = number}`` tables whose ids must be defined venues/operators."""
        p: KeyPath = ("subsidy", key)
        raw = t.get(key, {})
        if not isinstance(raw, dict):
            self.report(p, f"expected a table {{{what}_id = number}}, got {kind_of(raw)}")
            return MappingProxyType({})
        out: dict[str, Decimal] = {}
        for ident, value in raw.items():
            if ident not in known:
                hint = did_you_mean(ident, known)
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

    def natlog(self, t: dict[str, Any], clients: tuple[Client, ...]) -> NatLogSettings:
        """``[natlog]`` and its ``[[natlog.exporters]]`` (docs/audit.md, "NAT logs")."""
        p: KeyPath = ("natlog",)
        d = NatLogSettings()
        known = {c.id for c in clients}
        exporters: list[NatLogExporter] = []
        raw = t.get("exporters", [])
        if not isinstance(raw, list):
            self.report((*p, "exporters"), "expected an array of tables [[natlog.exporters]]")
            raw = []
        for i, item in enumerate(raw):
            ep: KeyPath = (*p, "exporters", i)
            if not isinstance(item, dict):
                self.report(ep, "expected a table")
                continue
            self.check_keys(item, ep, ("address", "nas"))
            address = self.string(item, ep, "address", required=True, nonempty=True)
            try:
                address = str(ipaddress.ip_address(address))
            except ValueError:
                self.report((*ep, "address"), f"'{address}' is not an IP address")
                continue
            nas = self.string(item, ep, "nas")
            if nas and nas not in known:
                hint = did_you_mean(nas, known)
                self.report((*ep, "nas"), f"client '{nas}' is not defined{hint}")
            exporters.append(NatLogExporter(address, nas))
        return NatLogSettings(
            retention_days=self.integer(
                t,
                p,
                "retention_days",
                d.retention_days,
                60,
                3660,
                hint=" (MPS Order 82 Art. 13: records are kept at least 60 days)",
            ),
            lookback_hours=self.integer(t, p, "lookback_hours", d.lookback_hours, 1, 744),
            bind=self.address(t, p, "bind", d.bind),
            syslog_port=self.port(t, p, "syslog_port", d.syslog_port),
            ipfix_port=self.port(t, p, "ipfix_port", d.ipfix_port),
            exporters=tuple(exporters),
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
            self.report(path, f"expected a number, got {kind_of(value)}")
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
        names: dict[str, Spot] = {}
        digests: dict[str, Spot] = {}
        for path, t in entries:
            spot = Spot(self.file, path)
            before = len(self.problems)
            name = self.string(t, path, "name", required=True, nonempty=True)
            if name:
                self.identifier(spot, "name", name)
                self.declare(names, "token name", spot, "name", name)
            digest = self.string(t, path, "sha256", required=True, nonempty=True)
            if digest and not SHA256_PATTERN.fullmatch(digest):
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
        if value is MISSING:
            return frozenset()
        if not isinstance(value, list) or not value:
            self.report((*path, "roles"), f"expected a non-empty array of roles ({one_of(ROLES)})")
            return frozenset()
        roles = set()
        for i, role in enumerate(value):
            if isinstance(role, str) and role in ROLES:
                roles.add(role)
            else:
                shown = f"'{role}'" if isinstance(role, str) else kind_of(role)
                hint = did_you_mean(role, ROLES) if isinstance(role, str) else ""
                self.report((*path, "roles", i), f"{shown} is not one of {one_of(ROLES)}{hint}")
        return frozenset(roles)
