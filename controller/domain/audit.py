"""The security audit log's records (MPS Order 82 Art. 13; docs/audit.md): one per closed
session and one per Access-Request decision, with the phone number the audit duty needs.
Pure builders of the outbox entry (``login_event``) and of the archive rows; the
export and the retention are ``controller.services.audit``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from controller.config import Client
from controller.domain import quota
from controller.domain.mac import normalize_mac
from controller.domain.registry import Registry
from radius.events import AccessRequest

AUDIT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("day", "DATE"),  # local day of ``time`` (the partition)
    ("record_id", "VARCHAR"),
    ("kind", "VARCHAR"),  # session | login
    ("time", "BIGINT"),  # epoch: session start, or the login decision
    ("phone", "VARCHAR"),  # E.164; empty when the person is not known
    ("pid", "VARCHAR"),
    ("mac", "VARCHAR"),
    ("ip", "VARCHAR"),
    ("client", "VARCHAR"),  # the NAS (RADIUS client id)
    ("nas_id", "VARCHAR"),
    ("nas_ip", "VARCHAR"),
    ("ap", "VARCHAR"),  # Called-Station-Id
    ("venue", "VARCHAR"),
    ("start", "BIGINT"),
    ("stop", "BIGINT"),
    ("result", "VARCHAR"),  # closed | accept | reject:<reason>
    ("cause", "VARCHAR"),  # Acct-Terminate-Cause of a session
    ("archived_at", "BIGINT"),  # epoch ms
    # the address record (docs/audit.md), added after the first release: files written
    # before lack them (read with ``union_by_name``, ``AUDIT_SELECT`` makes them "")
    ("ipv6", "VARCHAR"),  # Framed-IPv6-Address (RFC 6911)
    ("ipv6_prefix", "VARCHAR"),  # Framed-IPv6-Prefix (RFC 3162)
    ("ipv6_delegated", "VARCHAR"),  # Delegated-IPv6-Prefix (RFC 4818)
    ("nas_ipv6", "VARCHAR"),  # NAS-IPv6-Address
    ("nas_src", "VARCHAR"),  # the request's UDP source address
    ("nas_public", "VARCHAR"),  # the NAS's public addresses ([[clients]] public_addresses)
    ("nat_ip", "VARCHAR"),  # the NAT port block the NAS reported: public IPv4 ...
    ("nat_ports", "VARCHAR"),  # ... and "first-last"
)
# Columns an older audit file may lack (not required of it by ``Archive.readable``)
AUDIT_ADDED: frozenset[str] = frozenset(
    name for name, _ in AUDIT_SCHEMA[AUDIT_SCHEMA.index(("ipv6", "VARCHAR")) :]
)
# The select list of every audit read: an added column missing from an old file is ""
AUDIT_SELECT = ", ".join(
    f"coalesce({name}, '') AS {name}" if name in AUDIT_ADDED else name for name, _ in AUDIT_SCHEMA
)


class AuditRow(NamedTuple):
    day: date
    record_id: str
    kind: str
    time: int
    phone: str
    pid: str
    mac: str
    ip: str
    client: str
    nas_id: str
    nas_ip: str
    ap: str
    venue: str
    start: int | None
    stop: int | None
    result: str
    cause: str
    archived_at: int
    ipv6: str = ""
    ipv6_prefix: str = ""
    ipv6_delegated: str = ""
    nas_ipv6: str = ""
    nas_src: str = ""
    nas_public: str = ""
    nat_ip: str = ""
    nat_ports: str = ""

    @property
    def open(self) -> bool:
        """A session not closed yet (read from Redis, not the archive)."""
        return self.kind == "session" and self.stop is None


def login_event(
    registry: Registry,
    client: Client,
    event: AccessRequest,
    outcome: str,
    pid: str | None,
    now: int,
) -> dict[str, str]:
    """The outbox entry of one Access-Request decision (``outcome``: controller.domain.access
    Outcome value); the phone is looked up when it is archived."""
    record = login_fields(registry, client, event, now)
    record["pid"] = pid or ""
    record["result"] = login_result(outcome)
    return record


def login_fields(
    registry: Registry, client: Client, event: AccessRequest, now: int
) -> dict[str, str]:
    """A login record's fields known before the decision: all but ``pid`` and ``result``
    (storage/lua/mac_login.lua adds those two when it queues the record itself)."""
    called = event.called_station_id
    nas_id = event.nas_identifier
    return {
        "k": "login",
        "t": str(now),
        "mac": normalize_mac(event.calling_station_id) or "",
        "client": client.id,
        "nas_id": nas_id,
        "nas_ip": event.nas_ip_address,
        "ap": called,
        "venue": registry.venue_for(client, called, nas_id).id,
    }


def login_result(outcome: str) -> str:
    """A login record's "result": "accept", or "reject:<outcome>" (mac_login.lua alike)."""
    return outcome if outcome == "accept" else f"reject:{outcome}"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _stored_row(
    rec: Mapping[str, str],
    *,
    day: date,
    record_id: str,
    kind: str,
    time: int,
    phone: str,
    start: int | None,
    stop: int | None,
    result: str,
    cause: str,
    archived_at: int,
) -> AuditRow:
    """An audit row whose who/where fields (person, device, NAS, venue, the address
    record) are those of a stored record or outbox entry, "" where it has none."""
    return AuditRow(
        day=day,
        record_id=record_id,
        kind=kind,
        time=time,
        phone=phone,
        pid=rec.get("pid", ""),
        mac=rec.get("mac", ""),
        ip=rec.get("ip", ""),
        client=rec.get("client", ""),
        nas_id=rec.get("nas_id", ""),
        nas_ip=rec.get("nas_ip", ""),
        ap=rec.get("ap", ""),
        venue=rec.get("venue", ""),
        start=start,
        stop=stop,
        result=result,
        cause=cause,
        archived_at=archived_at,
        ipv6=rec.get("ipv6", ""),
        ipv6_prefix=rec.get("ipv6_prefix", ""),
        ipv6_delegated=rec.get("ipv6_delegated", ""),
        nas_ipv6=rec.get("nas_ipv6", ""),
        nas_src=rec.get("nas_src", ""),
        nas_public=rec.get("nas_public", ""),
        nat_ip=rec.get("nat_ip", ""),
        nat_ports=rec.get("nat_ports", ""),
    )


def session_audit_row(
    record_id: str, rec: Mapping[str, str], phone: str, tz: ZoneInfo, archived_at: int
) -> AuditRow:
    start = _int(rec.get("start")) or 0
    return _stored_row(
        rec,
        day=quota.local_day(start, tz),
        record_id=record_id,
        kind="session",
        time=start,
        phone=phone,
        start=start,
        stop=_int(rec.get("closed")),
        result="closed",
        cause=rec.get("cause", ""),
        archived_at=archived_at,
    )


def login_audit_row(
    entry_id: str, entry: Mapping[str, str], phone: str, tz: ZoneInfo, archived_at: int
) -> AuditRow:
    """A login outbox entry (``login_event``: no IP or address record, so those stay "")."""
    at = _int(entry.get("t")) or archived_at // 1000
    return _stored_row(
        entry,
        day=quota.local_day(at, tz),
        record_id=f"login:{entry_id}",
        kind="login",
        time=at,
        phone=phone,
        start=None,
        stop=None,
        result=entry.get("result", ""),
        cause="",
        archived_at=archived_at,
    )


def oldest_kept_day(now: float, tz: ZoneInfo, retention_days: int) -> date:
    """Partitions of days before this one are gone (a record lives retention_days full days)."""
    return quota.local_day(int(now), tz) - timedelta(days=retention_days)
