"""Loading the config: ``load_config`` (raise ``ConfigError`` with every problem),
``check_config`` (list them), where a command finds its file.

``_Builder`` validates each table and each entry of an array of tables against its
pydantic model (``controller.config.schema``), so that one broken entry never hides the
problems of another, and turns pydantic's errors into ``file:line: key: reason``
(``wording`` for the words, ``locator`` for the line). Then it makes the checks across
entries, which must also see broken ones (an entry with a problem still declares its
id, so references to it add no "does not exist" noise): duplicate ids, references to
operators and venues, overlapping client networks, ambiguous NAS identifiers. Last, it
builds the frozen runtime ``Config`` (``model``) from the validated models.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import itertools
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter, ValidationError

from controller.config.checks import (
    EXAMPLE_TOKEN_DIGESTS,
    SHA256_PATTERN,
    did_you_mean,
    kind_of,
    reason_of,
)
from controller.config.locator import Locator, syntax_problem
from controller.config.model import (
    AccessPoint,
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
    Operator,
    PortalSettings,
    PrivacySettings,
    QuotaPolicy,
    RadiusSettings,
    RedisSettings,
    ReportSettings,
    SecuritySettings,
    SmsSettings,
    Subsidy,
    Venue,
)
from controller.config.passpoint import PasspointSettings
from controller.config.problems import ConfigError, ConfigProblem, KeyPath, format_key
from controller.config.radsec import RadsecSettings
from controller.config.registry_csv import (
    access_point_entry,
    column_problem,
    read_rows,
    venue_entry,
)
from controller.config.schema import (
    ACCESS_POINTS_CSV_COLUMNS,
    LISTS,
    REDIS_URL_ENV,
    SECTIONS,
    VENUES_CSV_COLUMNS,
    AccessPointEntry,
    ApiTokenEntry,
    AuditTable,
    BrandTable,
    ClientEntry,
    EnforcerTable,
    HttpTable,
    LogTable,
    Name,
    NatLogTable,
    OperatorEntry,
    PasspointTable,
    PortalTable,
    PrivacyTable,
    QuotaTable,
    RadiusTable,
    RadsecTable,
    RedisTable,
    RegistryTable,
    ReportsTable,
    Scope,
    SecurityTable,
    SmsTable,
    SubsidyTable,
    Table,
    VenueEntry,
)
from controller.config.wording import key_path, message, messages
from controller.domain.mac import normalize_mac
from controller.domain.periods import FIRST_DAY
from controller.domain.rate_history import RateVersion
from controller.domain.venue_types import VENUE_TYPES

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG_PATH", "REDIS_URL_ENV", "check_config", "config_path",
           "load_config"]  # fmt: skip

T = TypeVar("T", bound=Table)


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


@dataclass(frozen=True, slots=True)
class Spot:
    """Where an entry was defined: a TOML table (``path``) or a CSV row (``line``)."""

    file: Path
    path: KeyPath
    line: int | None = None  # set for CSV rows


@dataclass(frozen=True, slots=True)
class Entry(Generic[T]):
    """One entry of an array of tables or one CSV row: where, as written, as validated
    (None: it has a problem, already reported)."""

    spot: Spot
    raw: Mapping[str, Any]
    model: T | None

    def text(self, key: str) -> str:
        """A key's value as written, when it is a non-empty string ("" otherwise): what
        the checks across entries look at, valid entry or not."""
        value = self.raw.get(key)
        return value.strip() if isinstance(value, str) else ""


def _valid(entries: Sequence[Entry[T]]) -> list[T]:
    return [e.model for e in entries if e.model is not None]


class _Builder:
    """Turns parsed TOML (+ CSV registries) into a ``Config``, collecting every problem."""

    def __init__(self, path: Path, locator: Locator, environ: Mapping[str, str]) -> None:
        self.file = path
        self.base = path.parent
        self.loc = locator
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []

    # -- reporting
    def report(self, path: KeyPath, message: str) -> None:
        self.problems.append(
            ConfigProblem(self.file, self.loc.line(path), format_key(path), message)
        )

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

    # -- validation against the schema
    def validate(self, model: type[T], data: Mapping[str, Any], spot: Spot) -> T | None:
        """``data`` as ``model``, or None with each of its problems reported."""
        scope = Scope(self.base, self.environ)
        try:
            valid: T | None = model.model_validate(data, context=scope)
        except ValidationError as exc:
            valid = None
            for key, message in messages(model, exc.errors()):
                if spot.line is None:
                    self.report((*spot.path, *key), message)
                else:
                    self.problems.append(column_problem(spot.file, spot.line, key, message))
        for key, message in scope.warnings:
            path = (*spot.path, *key)
            self.warnings.append(
                ConfigProblem(self.file, self.loc.line(path), format_key(path), message, True)
            )
        return valid

    def table(self, raw: Mapping[str, Any], name: str, model: type[T]) -> T | None:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.report((name,), f"expected a table [{name}], got {kind_of(value)}")
            value = {}
        return self.validate(model, value, Spot(self.file, (name,)))

    def entries(self, raw: Mapping[str, Any], name: str, model: type[T]) -> list[Entry[T]]:
        value = raw.get(name, [])
        if not isinstance(value, list):
            self.report((name,), f"expected an array of tables [[{name}]], got {kind_of(value)}")
            return []
        out: list[Entry[T]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                spot = Spot(self.file, (name, i))
                out.append(Entry(spot, item, self.validate(model, item, spot)))
            else:
                self.report((name, i), f"expected a table, got {kind_of(item)}")
        return out

    def csv_entries(
        self, setting: str, file: Path, columns: Sequence[str], model: type[T]
    ) -> list[Entry[T]]:
        as_entry = venue_entry if model is VenueEntry else access_point_entry
        try:
            csv = read_rows(file, columns)
        except (OSError, UnicodeDecodeError) as exc:
            key: KeyPath = ("registry", setting)
            line = self.loc.line(key)
            named = f" (named at {self.file}:{line})" if line else ""
            self.problems.append(
                ConfigProblem(
                    file, None, format_key(key), f"cannot read CSV file{named}: {reason_of(exc)}"
                )
            )
            return []
        self.problems.extend(csv.problems)
        spots = [Spot(file, (), row.line) for row in csv.rows]
        data = [as_entry(row) for row in csv.rows]
        # thousands of rows: one validation of them all; on a problem, each is reported
        # at its row and no row is used (the config is not built)
        models: list[T | None]
        try:
            models = list(
                _rows(model).validate_python(data, context=Scope(self.base, self.environ))
            )
        except ValidationError as exc:
            models = [None] * len(data)
            for error in exc.errors():
                index = error["loc"][0]
                assert isinstance(index, int)
                self.problems.append(
                    column_problem(
                        file,
                        csv.rows[index].line,
                        key_path(error)[1:],
                        message(model, error, skip=1),
                    )
                )
        return [Entry(s, d, m) for s, d, m in zip(spots, data, models, strict=True)]

    # -- the file
    def build(self, raw: Mapping[str, Any]) -> Config | None:
        known = (*SECTIONS, *LISTS)
        for key, value in raw.items():
            if key in known:
                continue
            if isinstance(value, dict | list):
                self.report((key,), f"unknown table '{key}'{did_you_mean(key, known)}")
            else:  # a setting above the first table header
                self.report((key,), f"unknown key '{key}' outside any table{_section_hint(key)}")
        brand: BrandTable | None = None
        if "brand" not in raw:
            self.report(("brand",), "missing required table [brand]")
        else:
            brand = self.table(raw, "brand", BrandTable)
        quota = self.table(raw, "quota", QuotaTable)
        radius = self.table(raw, "radius", RadiusTable)
        http = self.table(raw, "http", HttpTable)
        redis = self.table(raw, "redis", RedisTable)
        sms = self.table(raw, "sms", SmsTable)
        log = self.table(raw, "log", LogTable)
        security = self.table(raw, "security", SecurityTable)
        portal = self.table(raw, "portal", PortalTable)
        registry = self.table(raw, "registry", RegistryTable)
        subsidy = self.table(raw, "subsidy", SubsidyTable)
        audit = self.table(raw, "audit", AuditTable)
        reports = self.table(raw, "reports", ReportsTable)
        enforcer = self.table(raw, "enforcer", EnforcerTable)
        passpoint = self.table(raw, "passpoint", PasspointTable)
        natlog = self.table(raw, "natlog", NatLogTable)
        radsec = self.table(raw, "radsec", RadsecTable)
        privacy = self.table(raw, "privacy", PrivacyTable)

        operators = self.entries(raw, "operators", OperatorEntry)
        venues = self.entries(raw, "venues", VenueEntry)
        clients = self.entries(raw, "clients", ClientEntry)
        access_points = self.entries(raw, "access_points", AccessPointEntry)
        tokens = self.entries(raw, "api_tokens", ApiTokenEntry)
        if registry is not None and registry.venues_csv.strip():
            file = self.base / Path(registry.venues_csv).expanduser()
            venues += self.csv_entries("venues_csv", file, VENUES_CSV_COLUMNS, VenueEntry)
        if registry is not None and registry.access_points_csv.strip():
            file = self.base / Path(registry.access_points_csv).expanduser()
            access_points += self.csv_entries(
                "access_points_csv", file, ACCESS_POINTS_CSV_COLUMNS, AccessPointEntry
            )

        operator_ids = self.declare(operators, "id", "operator id")
        venue_ids = self.declare(venues, "id", "venue id")
        for venue in venues:
            if venue.text("operator") and venue.text("operator") not in operator_ids:
                self.report_at(
                    venue.spot,
                    "operator",
                    f"operator '{venue.text('operator')}' is not defined in [[operators]]",
                )
        self.check_clients(clients, venue_ids)
        self.declare(access_points, "match", "access point match", _access_point_key)
        for client in clients:
            self.require_venue(client, venue_ids)
        for access_point in access_points:
            self.require_venue(access_point, venue_ids)
        if isinstance(raw.get("subsidy"), dict):
            self.check_subsidy(raw["subsidy"], venue_ids, operator_ids)
        self.check_exporters(raw.get("natlog"), {c.text("id") for c in clients})
        self.declare(tokens, "name", "token name")
        digests = [t for t in tokens if SHA256_PATTERN.fullmatch(t.text("sha256"))]
        self.declare(
            [t for t in digests if t.text("sha256") not in EXAMPLE_TOKEN_DIGESTS],
            "sha256",
            "token sha256",
        )
        if radsec is not None and radsec.enabled:
            self.warn_radsec_without_clients(clients)
        if self.problems or brand is None:
            return None
        assert quota and radius and http and redis and sms and log and security and portal
        assert subsidy and audit and reports and enforcer and passpoint and natlog and radsec
        assert privacy
        return self.with_radsec(radsec, self.config(
            brand, quota, radius, http, redis, sms, log, security, portal, subsidy, audit,
            reports, enforcer, passpoint, natlog, _valid(operators), _valid(venues),
            _valid(clients), _valid(access_points), _valid(tokens), privacy=privacy,
        ))  # fmt: skip

    # -- checks across entries
    def declare(
        self,
        entries: Sequence[Entry[T]],
        key: str,
        what: str,
        value_of: Callable[[Entry[T]], str] | None = None,
    ) -> dict[str, Spot]:
        """The entries' ids (``key``, or what ``value_of`` makes of the entry), broken
        entries included; a second definition is a problem naming the first."""
        spots: dict[str, Spot] = {}
        for entry in entries:
            value = entry.text(key) if value_of is None else value_of(entry)
            if not value:
                continue
            first = spots.get(value)
            if first is not None:
                self.report_at(
                    entry.spot,
                    key,
                    f"duplicate {what} '{value}' (first defined at {self.describe(first)})",
                )
            else:
                spots[value] = entry.spot
        return spots

    def require_venue(self, entry: Entry[Any], venues: Mapping[str, Spot]) -> None:
        venue = entry.text("venue")
        if venue and venue not in venues:
            self.report_at(
                entry.spot,
                "venue",
                f"venue '{venue}' is not defined (in [[venues]] or the venues CSV)",
            )

    def check_clients(
        self, clients: Sequence[Entry[ClientEntry]], venues: Mapping[str, Spot]
    ) -> None:
        ids = self.declare(clients, "id", "client id")
        nas_ids = self.declare(clients, "nas_identifier", "nas_identifier")
        self.check_radsec_ids(clients)
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
        networks: list[tuple[Spot, str, IPNetwork]] = []
        for entry in clients:
            try:
                network = ipaddress.ip_network(entry.text("address"), strict=False)
            except ValueError:
                continue
            networks.append((entry.spot, entry.text("id") or format_key(entry.spot.path), network))
        self.overlaps(networks)

    def warn_radsec_without_clients(self, clients: Sequence[Entry[ClientEntry]]) -> None:
        """``[radsec]`` on with no client a certificate can name: every connection refused."""
        if any(e.raw.get("radsec_fingerprint") or e.text("radsec_subject") for e in clients):
            return
        path = ("radsec", "enabled")
        self.warnings.append(
            ConfigProblem(
                self.file,
                self.loc.line(path),
                format_key(path),
                "no [[clients]] entry has radsec_fingerprint or radsec_subject: every RadSec "
                "connection will be refused",
                True,
            )
        )

    def check_radsec_ids(self, clients: Sequence[Entry[ClientEntry]]) -> None:
        """A RadSec certificate names one client: no fingerprint or subject twice."""
        self.declare(
            clients, "radsec_subject", "radsec_subject", lambda e: e.text("radsec_subject").lower()
        )
        seen: dict[str, Spot] = {}
        for entry in clients:
            for fingerprint in entry.model.radsec_fingerprint if entry.model else ():
                first = seen.setdefault(fingerprint, entry.spot)
                if first is not entry.spot:
                    self.report_at(
                        entry.spot,
                        "radsec_fingerprint",
                        f"fingerprint {fingerprint[:16]}… is also the client's at "
                        f"{self.describe(first)}; a certificate must name one client",
                    )

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

    def check_subsidy(
        self, raw: Mapping[str, Any], venues: Mapping[str, Spot], operators: Mapping[str, Spot]
    ) -> None:
        """``venue_caps`` and ``operator_factors`` name defined venues and operators (in
        ``[subsidy]`` and in each of its versions); the versions are in date order."""
        versions = raw.get("versions")
        versions = versions if isinstance(versions, list) else []
        tables: list[tuple[KeyPath, Mapping[str, Any]]] = [(("subsidy",), raw)]
        tables += [(("subsidy", "versions", i), v) for i, v in enumerate(versions)
                   if isinstance(v, dict)]  # fmt: skip
        for where, version in tables:
            for key, known, what in (("venue_caps", venues, "venue"),
                                     ("operator_factors", operators, "operator")):  # fmt: skip
                table = version.get(key)
                for ident in table if isinstance(table, dict) else ():
                    if ident not in known:
                        hint = did_you_mean(ident, known)
                        self.report((*where, key, ident), f"{what} '{ident}' is not defined{hint}")
        self.check_versions(raw, versions)

    def check_versions(self, raw: Mapping[str, Any], versions: Sequence[object]) -> None:
        """``[[subsidy.versions]]``: effective dates strictly increasing (a repeated date
        would make two versions apply to one day), and no days before the first left
        without rates (``[subsidy]``'s own keys are the version in force until then)."""
        dated: list[tuple[int, date]] = []
        for i, version in enumerate(versions):
            day = version.get("effective") if isinstance(version, dict) else None
            if isinstance(day, date) and not isinstance(day, datetime):
                dated.append((i, day))
        for (j, before), (i, day) in itertools.pairwise(dated):
            other = self.describe(Spot(self.file, ("subsidy", "versions", j)))
            if day == before:
                self.report(
                    ("subsidy", "versions", i, "effective"),
                    f"effective {day} is also the date of the version at {other}: two "
                    "versions would apply to the same days; merge them or change one date",
                )
            elif day < before:
                self.report(
                    ("subsidy", "versions", i, "effective"),
                    f"effective {day} is before {before} of the version above it (at "
                    f"{other}): list [[subsidy.versions]] in date order",
                )
        flat = any(key in raw for key in ("rates", "venue_caps", "operator_factors"))
        if dated and not flat:
            i, first = min(dated, key=lambda e: e[1])
            if first > FIRST_DAY:
                self.report(
                    ("subsidy", "versions", i, "effective"),
                    f"the days before {first} have no rates: give the rates in force until "
                    f"then in [subsidy] itself (rates, venue_caps, operator_factors; in "
                    f"force since forever), or make this version effective = {FIRST_DAY}",
                )

    def check_exporters(self, natlog: object, client_ids: set[str]) -> None:
        """``[[natlog.exporters]]`` ``nas`` names a defined client (read from the file, so
        it is checked even when another key of ``[natlog]`` is wrong)."""
        table = natlog if isinstance(natlog, dict) else {}
        exporters = table.get("exporters")
        if table.get("listen") is True and not exporters:
            path = ("natlog", "listen")
            self.warnings.append(
                ConfigProblem(
                    self.file,
                    self.loc.line(path),
                    format_key(path),
                    "no [[natlog.exporters]]: the listener drops every datagram",
                    True,
                )
            )
        for i, exporter in enumerate(exporters if isinstance(exporters, list) else ()):
            nas = exporter.get("nas") if isinstance(exporter, dict) else None
            if isinstance(nas, str) and nas and nas not in client_ids:
                hint = did_you_mean(nas, client_ids)
                self.report(
                    ("natlog", "exporters", i, "nas"), f"client '{nas}' is not defined{hint}"
                )

    # -- the runtime config, from models that passed
    def resolve(self, value: str, default: Path) -> Path:
        """A path from the config; relative ones are relative to the config's directory."""
        path = Path(value).expanduser() if value.strip() else default
        return (self.base / path).absolute()

    def config(
        self,
        brand: BrandTable,
        quota: QuotaTable,
        radius: RadiusTable,
        http: HttpTable,
        redis: RedisTable,
        sms: SmsTable,
        log: LogTable,
        security: SecurityTable,
        portal: PortalTable,
        subsidy: SubsidyTable,
        audit: AuditTable,
        reports: ReportsTable,
        enforcer: EnforcerTable,
        passpoint: PasspointTable,
        natlog: NatLogTable,
        operators: list[OperatorEntry],
        venues: list[VenueEntry],
        clients: list[ClientEntry],
        access_points: list[AccessPointEntry],
        tokens: list[ApiTokenEntry],
        *,
        privacy: PrivacyTable | None = None,
    ) -> Config:
        data_dir = self.resolve(redis.data_dir, Path("var"))
        interim = quota.interim_interval
        rates = _all_types(subsidy.rates)
        return Config(
            source=self.file.absolute(),
            brand=Brand(
                ssid=brand.ssid,
                name=MappingProxyType(
                    brand.name.texts() if brand.name else {"zh": brand.ssid, "en": brand.ssid}
                ),
                logo=self.resolve(brand.logo, Path()) if brand.logo is not None else None,
                home_url=brand.home_url,
            ),
            quota=QuotaPolicy(
                **{
                    **dict(quota),
                    "timezone": ZoneInfo(quota.timezone),
                    # derived defaults: 2.5 interim intervals; one interval, 60 s to a day
                    "stale_grace": quota.stale_grace or 2.5 * interim,
                    "min_grant_seconds": quota.min_grant_seconds
                    or min(quota.daily_seconds, max(60, interim)),
                }
            ),
            radius=RadiusSettings(**dict(radius)),
            http=HttpSettings(**dict(http)),
            redis=RedisSettings(**{**dict(redis), "data_dir": data_dir}),
            sms=SmsSettings(
                **{
                    **dict(sms),
                    "path": self.resolve(sms.path, data_dir / "sms.jsonl"),
                    "webhook_url": sms.webhook_url or "",
                    "webhook_headers": MappingProxyType(dict(sms.webhook_headers)),
                    "allowed_country_codes": tuple(sms.allowed_country_codes or ("+86",)),
                }
            ),
            log=LogSettings(**dict(log)),
            security=SecuritySettings(**dict(security)),
            operators=MappingProxyType(
                {o.id: Operator(id=o.id, name=MappingProxyType(o.name.texts())) for o in operators}
            ),
            venues=MappingProxyType(
                {
                    v.id: Venue(
                        id=v.id,
                        name=MappingProxyType(v.name.texts()),
                        type=v.type,
                        district=v.district.strip(),
                        operator=v.operator,
                    )
                    for v in venues
                }
            ),
            clients=tuple(self.client(c, radius.require_message_authenticator) for c in clients),
            access_points=MappingProxyType(
                {a.match: AccessPoint(match=a.match, venue=a.venue) for a in access_points}
            ),
            subsidy=Subsidy(
                rates=rates,
                venue_caps=MappingProxyType(dict(subsidy.venue_caps)),
                operator_factors=MappingProxyType(dict(subsidy.operator_factors)),
                bill_beyond_allowance=subsidy.bill_beyond_allowance,
                versions=_versions(subsidy),
            ),
            api_tokens=tuple(
                ApiToken(
                    name=t.name,
                    sha256=t.sha256,
                    roles=frozenset(t.roles),
                    expires=int(t.expires.timestamp()) if t.expires is not None else None,
                )
                for t in tokens
            ),
            portal=PortalSettings(
                **{
                    **dict(portal),
                    "trusted_proxies": tuple(
                        ipaddress.ip_network(p, strict=False) for p in portal.trusted_proxies
                    ),
                }
            ),
            audit=AuditSettings(**dict(audit)),
            reports=ReportSettings(
                **{
                    **dict(reports),
                    "archive_dir": self.resolve(reports.archive_dir, data_dir / "archive"),
                    "signing_key_file": self.resolve(
                        reports.signing_key_file, data_dir / "report-signing.key"
                    ),
                }
            ),
            enforcer=EnforcerSettings(**dict(enforcer)),
            passpoint=self.passpoint(passpoint),
            natlog=NatLogSettings(
                retention_days=natlog.retention_days,
                lookback_hours=natlog.lookback_hours,
                bind=natlog.bind,
                syslog_port=natlog.syslog_port,
                ipfix_port=natlog.ipfix_port,
                listen=natlog.listen,
                template_timeout=natlog.template_timeout,
                exporters=tuple(NatLogExporter(e.address, e.nas) for e in natlog.exporters),
            ),
            privacy=_privacy(privacy or PrivacyTable()),
            warnings=tuple(sorted(self.warnings, key=lambda p: p.line or 0)),
        )

    def with_radsec(self, t: RadsecTable, config: Config) -> Config:
        def pem(value: str) -> Path | None:
            return self.resolve(value, Path()) if t.enabled and value.strip() else None

        settings = RadsecSettings(
            enabled=t.enabled,
            bind=t.bind,
            port=t.port,
            certificate=pem(t.certificate),
            private_key=pem(t.private_key),
            ca_certificates=pem(t.ca_certificates),
            idle_timeout=t.idle_timeout,
            max_in_flight=t.max_in_flight,
        )
        return dataclasses.replace(config, radsec=settings)

    def passpoint(self, t: PasspointTable) -> PasspointSettings:
        def pem(value: str) -> Path | None:
            return self.resolve(value, Path()) if t.enabled and value.strip() else None

        return PasspointSettings(
            enabled=t.enabled,
            realm=t.realm,
            home_domain=t.home_domain or t.realm,
            friendly_name=t.friendly_name,
            roaming_consortium=tuple(t.roaming_consortium),
            ca_cert=pem(t.ca_cert),
            server_cert=pem(t.server_cert),
            server_key=pem(t.server_key),
            credential_days=t.credential_days,
            fragment_size=t.fragment_size,
            resumption_seconds=t.resumption_seconds,
            state_seconds=t.state_seconds,
        )

    @staticmethod
    def client(c: ClientEntry, require_ma: bool) -> Client:
        ma = c.require_message_authenticator
        return Client(
            **{
                **{k: v for k, v in c if k != "address"},
                "network": ipaddress.ip_network(c.address, strict=False),
                "secret": c.secret.encode(),
                "require_message_authenticator": require_ma if ma is None else ma,
                "login_hosts": tuple(c.login_hosts),
                "radsec_fingerprint": tuple(c.radsec_fingerprint),
                "radsec_subject": c.radsec_subject.strip().lower(),
                "uam_addresses": tuple(
                    ipaddress.ip_network(a, strict=False) for a in c.uam_addresses
                ),
                "public_addresses": tuple(
                    ipaddress.ip_network(a, strict=False) for a in c.public_addresses
                ),
                "port_block_vsa": (v.vendor, v.address, v.first_port, v.last_port)
                if (v := c.port_block_vsa)
                else None,
            }
        )


def _all_types(rates: Mapping[str, Decimal]) -> Mapping[str, Decimal]:
    """Every venue type's rate (0 for one not listed)."""
    return MappingProxyType({kind: Decimal(0) for kind in VENUE_TYPES} | dict(rates))


def _versions(subsidy: SubsidyTable) -> tuple[RateVersion, ...]:
    """``[[subsidy.versions]]`` resolved: a table a version leaves out is the previous one's."""
    rates, caps, factors = subsidy.rates, subsidy.venue_caps, subsidy.operator_factors
    out: list[RateVersion] = []
    for i, v in enumerate(subsidy.versions):
        rates = rates if v.rates is None else v.rates
        caps = caps if v.venue_caps is None else v.venue_caps
        factors = factors if v.operator_factors is None else v.operator_factors
        out.append(
            RateVersion(
                effective=v.effective,
                rates=_all_types(rates),
                venue_caps=MappingProxyType(dict(caps)),
                operator_factors=MappingProxyType(dict(factors)),
                source=f"subsidy.versions[{i}]",
            )
        )
    return tuple(out)


@functools.cache
def _rows(model: type[T]) -> TypeAdapter[list[T]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _access_point_key(entry: Entry[AccessPointEntry]) -> str:
    """An access point's match as the registry keys it (the model has it normalised)."""
    if entry.model is not None:
        return entry.model.match
    return normalize_mac(entry.text("match")) or entry.text("match")


def _section_hint(key: str) -> str:
    """A setting above every table header: the table it probably belongs in."""
    homes = {k: section for section, model in SECTIONS.items() for k in model.model_fields}
    close = difflib.get_close_matches(key, list(homes), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}' in [{homes[close[0]]}]?)"
    return ""


def _privacy(t: PrivacyTable) -> PrivacySettings:
    def texts(name: Name | None) -> Mapping[str, str]:
        return MappingProxyType(name.texts() if name else {})

    return PrivacySettings(
        handler=texts(t.handler),
        contact_email=t.contact_email.strip(),
        contact_phone=t.contact_phone.strip(),
        contact_address=texts(t.contact_address),
        export_log_retention_days=t.export_log_retention_days,
        usage_retention_days=t.usage_retention_days,
    )
