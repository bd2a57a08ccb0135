"""The security audit log: who was online where and when, kept for the public-security
authority (MPS Order 82 Art. 13, Cybersecurity Law Art. 21; see docs/audit.md).

Records come from the outbox like the usage ledger (``controller.services.archiver``):
one per closed session (with its start and stop) and one per Access-Request decision
(accept or reject, with the reason); their rows are ``controller.domain.audit``. Unlike
the ledger they carry the phone number, so they live in their own archive partitions,
are trimmed after ``audit.retention_days`` (``trim``) and are readable only with the
``audit`` role (``export``; the route is ``controller.web.audit``); every export is
itself logged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog

from controller.config import Config
from controller.domain import quota
from controller.domain.audit import AUDIT_SCHEMA, AUDIT_SELECT, AuditRow, oldest_kept_day
from controller.domain.identity import person_id
from controller.domain.mac import normalize_mac
from controller.domain.periods import PeriodError, parse_instant
from controller.domain.phone import PhoneError, normalize_phone
from controller.services import natlog, privacy
from controller.storage.archive import Archive, empty_select, read_files

log = structlog.get_logger("citywifi.audit")


EXPORT_COLUMNS = (
    "time",
    "phone",
    "person_id",
    "mac",
    "ip",
    "nas",
    "nas_identifier",
    "nas_ip",
    "ap",
    "venue",
    "session_start",
    "session_stop",
    "result",
    "terminate_cause",
    "record_id",
    # the address record (docs/audit.md): empty when the NAS did not send it
    "ipv6",
    "ipv6_prefix",
    "ipv6_delegated",
    "nas_ipv6",
    "nas_src",
    "nas_public",
    "nat_ip",
    "nat_ports",
)


# --------------------------------------------------------------------------- retention


def trim(archive: Archive, config: Config, now: float) -> list[date]:
    """Delete audit partitions older than the retention (and NAT days older than theirs);
    returns the audit days removed."""
    keep_from = oldest_kept_day(now, config.quota.timezone, config.audit.retention_days)
    natlog.trim(archive, config, now)  # NAT translations: natlog.retention_days, same schedule
    trim_export_log(archive, config, now)
    privacy.forget_usage(archive, config, now)  # the ledger's rows: privacy.usage_retention_days
    privacy.trim_quarantine(archive, config, now)  # files set aside keep no longer
    removed = archive.trim("audit", keep_from)
    if removed:
        log.info(
            "audit.trimmed",
            days=len(removed),
            through=removed[-1].isoformat(),
            retention_days=config.audit.retention_days,
        )
    return removed


def trim_export_log(archive: Archive, config: Config, now: float) -> int:
    """Drop audit-export log entries (exports, ``who`` lookups, erasures) older than
    ``privacy.export_log_retention_days`` (PIPL Art. 56: at least three years)."""
    cutoff = now - config.privacy.export_log_retention_days * 86400

    def keep(entry: Mapping[str, object]) -> bool:
        try:
            return datetime.fromisoformat(str(entry.get("at", ""))).timestamp() >= cutoff
        except ValueError:
            return True  # an entry without a readable time is kept

    gone = archive.trim_export_log(keep)
    if gone:
        log.info(
            "audit.export_log_trimmed",
            entries=gone,
            retention_days=config.privacy.export_log_retention_days,
        )
    return gone


# --------------------------------------------------------------------------- export


# A bad export request: the dates' error family (stable ``code`` + message, answered 400).
AuditQueryError = PeriodError


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: int  # epoch, inclusive
    until: int  # epoch, exclusive
    phone: str = ""  # E.164
    mac: str = ""  # normalised
    format: str = "csv"
    pid: str = ""  # a person id (a person's own export, services.persons)

    def describe(self, tz: ZoneInfo, person_key: bytes) -> dict[str, str]:
        """What was asked, for the export log: the phone only as its person id."""
        out = {
            "from": datetime.fromtimestamp(self.since, tz).isoformat(),
            "to": datetime.fromtimestamp(self.until, tz).isoformat(),
            "format": self.format,
        }
        if self.phone:
            out["person_id"] = person_id(self.phone, person_key)
        if self.mac:
            out["mac"] = self.mac
        return out


def parse_query(params: Mapping[str, str], config: Config) -> AuditQuery:
    tz = config.quota.timezone
    missing = [k for k in ("from", "to") if not params.get(k)]
    if missing:
        raise AuditQueryError("missing_parameter", f"missing {' and '.join(missing)}")
    since = parse_instant(params["from"], tz, end=False, name="from")
    until = parse_instant(params["to"], tz, end=True, name="to")
    if until <= since:
        raise AuditQueryError("bad_range", "'to' must not be before 'from'")
    if until - since > (config.audit.retention_days + 1) * 86400:
        raise AuditQueryError(
            "range_too_long",
            f"at most {config.audit.retention_days} days (audit.retention_days) per export",
        )
    fmt = params.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise AuditQueryError("bad_format", f"format must be csv or json, not '{fmt}'")
    phone = ""
    if params.get("phone"):
        try:
            phone = normalize_phone(params["phone"])
        except PhoneError as exc:
            raise AuditQueryError("bad_phone", f"phone: {exc}") from None
    mac = ""
    if params.get("mac"):
        mac = normalize_mac(params["mac"]) or ""
        if not mac:
            raise AuditQueryError("bad_mac", f"mac: '{params['mac']}' is not a MAC address")
    return AuditQuery(since=since, until=until, phone=phone, mac=mac, format=fmt)


def query_records(archive: Archive, config: Config, q: AuditQuery, now: float) -> list[AuditRow]:
    """Records in ``[since, until)`` (never older than the retention), newest version of
    each, in time order. Blocking (DuckDB): call it from a thread."""
    tz = config.quota.timezone
    first = max(quota.local_day(q.since, tz), oldest_kept_day(now, tz, config.audit.retention_days))
    last = quota.local_day(q.until - 1, tz)
    keep_since = max(
        q.since, quota.day_start(oldest_kept_day(now, tz, config.audit.retention_days), tz)
    )
    where = ["time >= ?", "time < ?"]
    filters: list[object] = [keep_since, q.until]
    if q.phone:
        where.append("phone = ?")
        filters.append(q.phone)
    if q.mac:
        where.append("mac = ?")
        filters.append(q.mac)
    if q.pid:
        where.append("pid = ?")
        filters.append(q.pid)

    def sql() -> tuple[str, list[object]]:  # the files as they are (some may be quarantined)
        files = archive.files("audit", first, last)
        if not files:
            return empty_select(AUDIT_SCHEMA), []
        return (
            f"""
            SELECT {AUDIT_SELECT} FROM {read_files("audit")}
            WHERE {" AND ".join(where)}
            QUALIFY row_number() OVER (
                PARTITION BY record_id ORDER BY coalesce(stop, 0) DESC, archived_at) = 1
            ORDER BY time, record_id
        """,
            [files, *filters],
        )

    return [AuditRow(*row) for row in archive.query(sql)]


def _clock(ts: int | None, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat() if ts is not None else ""


def export_rows(rows: Sequence[AuditRow], tz: ZoneInfo) -> list[dict[str, str]]:
    return [
        {
            "time": _clock(r.time, tz),
            "phone": r.phone,
            "person_id": r.pid,
            "mac": r.mac,
            "ip": r.ip,
            "nas": r.client,
            "nas_identifier": r.nas_id,
            "nas_ip": r.nas_ip,
            "ap": r.ap,
            "venue": r.venue,
            "session_start": _clock(r.start, tz),
            "session_stop": _clock(r.stop, tz),
            "result": r.result,
            "terminate_cause": r.cause,
            "record_id": r.record_id,
            "ipv6": r.ipv6,
            "ipv6_prefix": r.ipv6_prefix,
            "ipv6_delegated": r.ipv6_delegated,
            "nas_ipv6": r.nas_ipv6,
            "nas_src": r.nas_src,
            "nas_public": r.nas_public,
            "nat_ip": r.nat_ip,
            "nat_ports": r.nat_ports,
        }
        for r in rows
    ]


def render(rows: Sequence[AuditRow], q: AuditQuery, tz: ZoneInfo) -> bytes:
    records = export_rows(rows, tz)
    if q.format == "json":
        return json.dumps(
            {"records": records, "count": len(records)}, ensure_ascii=False, indent=1
        ).encode()
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for rec in records:
        writer.writerow([rec[c] for c in EXPORT_COLUMNS])
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def log_export(
    archive: Archive,
    config: Config,
    person_key: bytes,
    who: str,
    q: AuditQuery,
    count: int,
    now: float,
) -> None:
    """Every export is itself recorded: who, when, what (never the phone number itself)."""
    entry = {
        "at": datetime.fromtimestamp(now, config.quota.timezone).isoformat(),
        "who": who,
        "records": count,
        **q.describe(config.quota.timezone, person_key),
    }
    archive.append_export_log(entry)
    log.info("audit.export", **entry)


def export(
    archive: Archive, config: Config, person_key: bytes, who: str, q: AuditQuery, now: float
) -> bytes:
    rows = query_records(archive, config, q, now)
    log_export(archive, config, person_key, who, q, len(rows), now)
    return render(rows, q, config.quota.timezone)
