"""NAT logs in, persons out: importing a CGN's translations (a file, or UDP syslog and
IPFIX datagrams from the configured exporters) into the archive, purging them after
``natlog.retention_days``, and ``who``: the person behind a public address and port at
an instant (MPS Order 82 Art. 8; docs/audit.md, "NAT logs and `audit who`").

``who`` first asks the sessions themselves (a port block their NAS reported holding the
port, their own address, an IPv6 prefix holding the address), then walks public IP:port
at T -> the translation in force (``domain.natlog.in_force``) -> private IP -> the
session with that Framed-IP-Address at T on the exporter's NAS (closed: the audit log's
session records; open: Redis) -> the person: the person id always, the phone number
only for a caller holding the ``audit`` role. Every lookup, found or not, is written to
the audit-export log like an export.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import structlog
from prometheus_client import Counter

from controller.config import Config
from controller.domain.audit import (
    AUDIT_SCHEMA,
    AUDIT_SELECT,
    AuditRow,
    oldest_kept_day,
    session_audit_row,
)
from controller.domain.ledger import record_id
from controller.domain.natlog import (
    IPFIX_VERSION,
    IpfixDecoder,
    NatTranslation,
    Tally,
    in_force,
    iter_ipfix_messages,
    parse_syslog_text,
)
from controller.domain.periods import PeriodError, parse_instant
from controller.storage import nat_archive
from controller.storage.archive import Archive, empty_select, read_files
from controller.storage.live_sessions import all_open, records
from controller.storage.store import Store, StoreUnavailable

log = structlog.get_logger("citywifi.natlog")

FORMATS = ("auto", "syslog", "ipfix")
MAX_DATAGRAM = 65535
FLUSH_ROWS = 5000  # the listener writes when this many wait, or every FLUSH_SECONDS
FLUSH_SECONDS = 5.0

RECEIVED = Counter("citywifi_natlog_translations_total", "NAT translations read", ["transport"])
DROPPED = Counter(
    "citywifi_natlog_dropped_total",
    "NAT log datagrams dropped: from an address not in [[natlog.exporters]] (unknown_source)"
    " or unreadable lines and records (bad)",
    ["reason"],
)


# --------------------------------------------------------------------------- import


@dataclass(frozen=True, slots=True)
class ImportResult:
    translations: int
    tally: Tally
    files: tuple[Path, ...]

    def summary(self) -> str:
        bad = ", ".join(f"{k} {v}" for k, v in sorted(self.tally.bad.items())) or "none"
        return (
            f"{self.translations} translation(s) stored, {self.tally.ignored} line(s)/record(s)"
            f" not NAT events, bad: {bad}"
        )


def detect_format(data: bytes) -> str:
    """IPFIX messages begin with version 10 (RFC 7011 §3.1); anything else is text."""
    return "ipfix" if data[:2] == IPFIX_VERSION.to_bytes(2, "big") else "syslog"


def parse_file(
    data: bytes, fmt: str, source: str, config: Config
) -> tuple[list[NatTranslation], Tally]:
    tally = Tally()
    if fmt == "auto":
        fmt = detect_format(data)
    if fmt == "ipfix":
        decoder = IpfixDecoder()
        found: list[NatTranslation] = []
        for message in iter_ipfix_messages(data, tally):
            found.extend(decoder.decode(message, source, tally))
        return found, tally
    text = data.decode("utf-8", errors="replace")
    return list(parse_syslog_text(text, source, config.quota.timezone, None, tally)), tally


def import_file(
    archive: Archive, config: Config, path: Path, fmt: str, source: str, now: float
) -> ImportResult:
    """Read a NAT log file (syslog text or IPFIX messages) into the archive. Lines
    without a time of their own are bad (``no_time``): a file has no receive time."""
    found, tally = parse_file(path.read_bytes(), fmt, _canonical(source) if source else "", config)
    kept = _within_retention(found, config, now, tally)
    files = nat_archive.write(archive, kept, config.quota.timezone, int(now * 1000))
    RECEIVED.labels("file").inc(len(kept))
    log.info(
        "natlog.imported",
        file=str(path),
        translations=len(kept),
        ignored=tally.ignored,
        bad=dict(tally.bad),
    )
    return ImportResult(len(kept), tally, tuple(files))


def _within_retention(
    found: Sequence[NatTranslation], config: Config, now: float, tally: Tally
) -> list[NatTranslation]:
    """Translations older than the retention are not stored (they would be purged at
    once); they count as bad ``expired``."""
    first = oldest_kept_day(now, config.quota.timezone, config.natlog.retention_days)
    tz = config.quota.timezone
    kept = [t for t in found if datetime.fromtimestamp(t.time_ms / 1000, tz).date() >= first]
    if len(kept) < len(found):
        tally.bad["expired"] += len(found) - len(kept)
    return kept


def trim(archive: Archive, config: Config, now: float) -> list[date]:
    """Delete NAT days older than ``natlog.retention_days`` (PIPL Art. 19: deleted at
    the end of the retention); returns the days removed."""
    keep_from = oldest_kept_day(now, config.quota.timezone, config.natlog.retention_days)
    removed = nat_archive.trim(archive, keep_from)
    if removed:
        log.info(
            "natlog.trimmed",
            days=len(removed),
            through=removed[-1].isoformat(),
            retention_days=config.natlog.retention_days,
        )
    return removed


# --------------------------------------------------------------------------- listener


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, listener: NatLogListener, transport_name: str) -> None:
        self.listener = listener
        self.name = transport_name

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.listener.received(self.name, data, str(addr[0]))


class NatLogListener:
    """UDP syslog (RFC 5426) and IPFIX (RFC 7011 §10.3) receivers. Trust nothing: a
    datagram whose source address is not a configured exporter is dropped and counted
    (``unknown_source``) before it is parsed; the translations of the others are
    buffered and written every ``FLUSH_SECONDS`` (or ``FLUSH_ROWS``). UDP gives no
    authenticity beyond the source address: the listener belongs on the management
    network the exporters send on (docs/audit.md)."""

    def __init__(self, archive: Archive, config: Config, clock: Callable[[], float]) -> None:
        self.archive = archive
        self.config = config
        self.clock = clock
        self.allowed = {_canonical(e.address) for e in config.natlog.exporters}
        self.decoder = IpfixDecoder(template_timeout=config.natlog.template_timeout)
        self.tally = Tally()
        self.dropped = 0
        self.pending: list[NatTranslation] = []
        self.stored = 0
        self.transports: list[asyncio.DatagramTransport] = []
        self.ports: dict[str, int] = {}
        self._flushing: asyncio.Lock | None = None
        self._wake: asyncio.Event | None = None

    def apply_config(self, config: Config) -> None:
        """SIGHUP: the exporters, retention and template timeout at once (the sockets
        stay as bound: ``reload.FIXED_FIELDS``)."""
        self.config = config
        self.allowed = {_canonical(e.address) for e in config.natlog.exporters}
        self.decoder.template_timeout = config.natlog.template_timeout

    def received(self, transport: str, data: bytes, host: str) -> None:
        source = _canonical(host)
        if source not in self.allowed:
            self.dropped += 1
            DROPPED.labels("unknown_source").inc()
            return
        tally = Tally()
        now_ms = int(self.clock() * 1000)
        if transport == "ipfix":
            found = self.decoder.decode(data, source, tally, now_ms / 1000)
        else:
            text = data.decode("utf-8", errors="replace")
            found = list(parse_syslog_text(text, source, self.config.quota.timezone, now_ms, tally))
        if tally.bad:
            DROPPED.labels("bad").inc(tally.bad_total)
        self.tally.add(tally)
        RECEIVED.labels(transport).inc(len(found))
        self.pending.extend(found)
        if len(self.pending) >= FLUSH_ROWS and self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self.config.natlog
        for name, port in (("syslog", settings.syslog_port), ("ipfix", settings.ipfix_port)):
            transport, _ = await loop.create_datagram_endpoint(
                lambda name=name: _Receiver(self, name),  # type: ignore[misc]
                local_addr=(settings.bind, port),
            )
            self.transports.append(transport)
            self.ports[name] = transport.get_extra_info("sockname")[1]
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        log.info("natlog.listening", bind=settings.bind, **self.ports, exporters=len(self.allowed))

    async def flush(self) -> int:
        """Write what is pending (in a thread: DuckDB blocks)."""
        assert self._flushing is not None
        async with self._flushing:
            batch, self.pending = self.pending, []
            if not batch:
                return 0
            now = self.clock()
            kept = _within_retention(batch, self.config, now, self.tally)
            try:
                await asyncio.to_thread(
                    nat_archive.write,
                    self.archive,
                    kept,
                    self.config.quota.timezone,
                    int(now * 1000),
                )
            except Exception:
                self.pending[:0] = kept  # kept for the next round (a full disk, a lock)
                raise
            self.stored += len(kept)
            return len(kept)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush on a timer (and when the buffer fills) until ``stop``; trim hourly."""
        assert self._wake is not None
        next_trim = 0.0
        while not stop.is_set():
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=FLUSH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            try:
                await self.flush()
                if self.clock() >= next_trim:
                    await asyncio.to_thread(trim, self.archive, self.config, self.clock())
                    next_trim = self.clock() + 3600
            except Exception as exc:  # the archive unwritable: keep receiving, retry
                log.error("natlog.write_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                if len(self.pending) > 100 * FLUSH_ROWS:  # bounded: drop the oldest
                    DROPPED.labels("backlog").inc(len(self.pending) - 100 * FLUSH_ROWS)
                    del self.pending[: len(self.pending) - 100 * FLUSH_ROWS]
        await self.flush()

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.transports.clear()


def _canonical(host: str) -> str:
    """The address as ``ipaddress`` writes it (an IPv4-mapped IPv6 sender as IPv4)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


# --------------------------------------------------------------------------- who

WhoQueryError = PeriodError  # stable ``code`` + message, answered 400 / exit 2


@dataclass(frozen=True, slots=True)
class WhoQuery:
    ip: str
    port: int
    at: int  # epoch seconds

    def describe(self, config: Config) -> dict[str, object]:
        return {
            "query": "who",
            "ip": self.ip,
            "port": self.port,
            "at_time": datetime.fromtimestamp(self.at, config.quota.timezone).isoformat(),
        }


def parse_who(ip: str | None, port: str | None, at: str | None, config: Config) -> WhoQuery:
    if not ip or port in (None, "") or not at:
        raise WhoQueryError("missing_parameter", "ip, port and at are required")
    try:
        address = str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise WhoQueryError("bad_ip", f"ip: '{ip}' is not an IP address") from None
    text = str(port).strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise WhoQueryError("bad_port", f"port: '{port}' is not a port (0-65535)")
    when = parse_instant(at, config.quota.timezone, name="at")
    return WhoQuery(address, int(text), when)


VIA_NAT_LOG = "nat-log"  # a CGN translation, then the session with its private address
VIA_PORT_BLOCK = "port-block"  # the session's NAS reported a port block holding the port
VIA_ADDRESS = "address"  # the session's own address (Framed-IP-Address or IPv6 address)
VIA_IPV6_PREFIX = "ipv6-prefix"  # the session's Framed- or Delegated-IPv6-Prefix holds it


@dataclass(frozen=True, slots=True)
class WhoMatch:
    translation: NatTranslation | None  # None: the session itself answers (``via``)
    nas: str  # the RADIUS client the exporter serves ("": any)
    sessions: tuple[AuditRow, ...]  # the sessions with the private IP at T (usually one)
    via: str = VIA_NAT_LOG


@dataclass(frozen=True, slots=True)
class WhoAnswer:
    query: WhoQuery
    matches: tuple[WhoMatch, ...] = field(default=())
    open_read: bool = True  # the open sessions (Redis) were read; False: Redis down

    @property
    def persons(self) -> list[AuditRow]:
        return [s for m in self.matches for s in m.sessions]

    def render(self, config: Config, with_phone: bool) -> dict[str, object]:
        """The answer as JSON-ready data: ``result`` is ``found`` or ``none``."""
        tz = config.quota.timezone

        def clock(ts: int | None) -> str:
            return datetime.fromtimestamp(ts, tz).isoformat() if ts is not None else ""

        out: list[dict[str, object]] = []
        for m in self.matches:
            t = m.translation
            base: dict[str, object] = {"via": m.via, "translation": None}
            if t is not None:
                base["translation"] = {
                    "event": t.event.value,
                    "since": datetime.fromtimestamp(t.time_ms / 1000, tz).isoformat(),
                    "protocol": t.protocol,
                    "private_ip": t.private_ip,
                    "private_port": t.private_port,
                    "public_ip": t.public_ip,
                    "ports": f"{t.port_start}-{t.port_end}",
                    "exporter": t.source,
                    "nas": m.nas,
                }
            if not m.sessions:
                out.append({**base, "person": None})
            for s in m.sessions:
                person: dict[str, object] = {
                    "person_id": s.pid,
                    "mac": s.mac,
                    "ip": s.ip,
                    "ipv6": s.ipv6,
                    "ipv6_prefix": s.ipv6_prefix,
                    "ipv6_delegated": s.ipv6_delegated,
                    "nat_ip": s.nat_ip,
                    "nat_ports": s.nat_ports,
                    "nas": s.client,
                    "nas_ip": s.nas_ip,
                    "nas_public": s.nas_public,
                    "venue": s.venue,
                    "session_start": clock(s.start),
                    "session_stop": clock(s.stop),
                    "open": s.open,
                    "record_id": s.record_id,
                }
                if with_phone:
                    person["phone"] = s.phone
                out.append({**base, "person": person})
        found = any(m.sessions for m in self.matches)
        doc: dict[str, object] = {
            **self.query.describe(config),
            "result": "found" if found else "none",
            "matches": out,
        }
        if not self.open_read:
            doc["open_sessions"] = "unavailable"  # Redis down: closed sessions only
        return doc


def _at(row: AuditRow, at: int) -> bool:
    """Whether the session held its addresses at ``at`` (an open one: since its start)."""
    start = row.start if row.start is not None else row.time
    return start <= at and (row.stop is None or row.stop >= at)


def _archived_sessions(
    archive: Archive, config: Config, where: str, args: Sequence[object], at: int, now: float
) -> list[AuditRow]:
    """Closed sessions (the audit log's session records) in force at ``at`` that meet
    ``where``, newest version of each."""
    tz = config.quota.timezone
    lookback = config.natlog.lookback_hours * 3600
    first = max(
        datetime.fromtimestamp(at - lookback, tz).date(),
        oldest_kept_day(now, tz, config.audit.retention_days),
    )
    last = datetime.fromtimestamp(at, tz).date()
    condition = f"kind = 'session' AND start <= ? AND coalesce(stop, start) >= ? AND ({where})"

    def sql() -> tuple[str, list[object]]:
        files = archive.files("audit", first, last)
        if not files:
            return empty_select(AUDIT_SCHEMA), []
        return (
            f"""
            SELECT * FROM (SELECT {AUDIT_SELECT} FROM {read_files("audit")})
            WHERE {condition}
            QUALIFY row_number() OVER (
                PARTITION BY record_id ORDER BY coalesce(stop, 0) DESC, archived_at) = 1
            ORDER BY start, record_id
            """,
            [files, at, at, *args],
        )

    return [AuditRow(*row) for row in archive.query(sql)]


def _merge(closed: Sequence[AuditRow], open_: Sequence[AuditRow]) -> tuple[AuditRow, ...]:
    """Closed and open sessions, one per record id (the archived, closed version wins:
    a Stop may have arrived between reading Redis and the archive)."""
    seen = {r.record_id for r in closed}
    rows = [*closed, *(r for r in open_ if r.record_id not in seen)]
    return tuple(sorted(rows, key=lambda r: (r.start or 0, r.record_id)))


def _holds(row: AuditRow, address: str) -> bool:
    """Whether a session had ``address`` as its own: its Framed-IP-Address, or (IPv6,
    a NAT64 translation's source) its IPv6 address or a prefix holding it."""
    if address in (row.ip, row.ipv6):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if not isinstance(ip, ipaddress.IPv6Address):
        return False
    return any(p and _in_prefix(p, ip) for p in (row.ipv6_prefix, row.ipv6_delegated))


def _sessions_at(
    archive: Archive,
    config: Config,
    private_ip: str,
    nas: str,
    at: int,
    now: float,
    open_rows: Sequence[AuditRow] = (),
) -> tuple[AuditRow, ...]:
    """Sessions, closed (archive) or open (Redis), holding ``private_ip`` at ``at`` on
    ``nas`` (any NAS if empty); an IPv6 one (NAT64) by address or prefix."""
    if ":" in private_ip:
        where = "(ipv6 = ? OR ipv6_prefix <> '' OR ipv6_delegated <> '')"
    else:
        where = "ip = ?"
    args: list[object] = [private_ip]
    if nas:
        where += " AND client = ?"
        args.append(nas)
    archived = _archived_sessions(archive, config, where, args, at, now)
    closed = [r for r in archived if _holds(r, private_ip)]
    live = [
        r
        for r in open_rows
        if _holds(r, private_ip) and (not nas or r.client == nas) and _at(r, at)
    ]
    return _merge(closed, live)


def _in_ports(ports: str, port: int) -> bool:
    first, _, last = ports.partition("-")
    if not (first.isdigit() and (last or first).isdigit()):
        return False
    return int(first) <= port <= int(last or first)


def _in_prefix(prefix: str, address: ipaddress.IPv6Address) -> bool:
    try:
        return address in ipaddress.IPv6Network(prefix, strict=False)
    except ValueError:
        return False


def direct_via(row: AuditRow, ip: str, port: int) -> str | None:
    """How a session's own record answers for ``ip:port`` (``VIA_*``), or None: its
    port block (the NAS's NAT), its own address, or its IPv6 prefixes."""
    if row.nat_ip and row.nat_ip == ip and _in_ports(row.nat_ports, port):
        return VIA_PORT_BLOCK
    if ip in (row.ip, row.ipv6) and not row.nat_ip:
        return VIA_ADDRESS
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        for prefix in (row.ipv6_prefix, row.ipv6_delegated):
            if prefix and _in_prefix(prefix, address):
                return VIA_IPV6_PREFIX
    return None


def _direct(
    archive: Archive, config: Config, q: WhoQuery, now: float, open_rows: Sequence[AuditRow]
) -> list[WhoMatch]:
    """The sessions whose own record holds ``q.ip`` (and ``q.port``) at ``q.at``."""
    if ipaddress.ip_address(q.ip).version == 6:
        where = "ipv6 = ? OR ipv6_prefix <> '' OR ipv6_delegated <> ''"
        args: list[object] = [q.ip]
    else:
        where = "ip = ? OR nat_ip = ?"
        args = [q.ip, q.ip]
    closed = _archived_sessions(archive, config, where, args, q.at, now)
    rows = _merge(closed, [r for r in open_rows if _at(r, q.at)])
    by_via: dict[str, list[AuditRow]] = {}
    for row in rows:
        via = direct_via(row, q.ip, q.port)
        if via is not None:
            by_via.setdefault(via, []).append(row)
    return [
        WhoMatch(None, rows_[0].client if len(rows_) == 1 else "", tuple(rows_), via)
        for via, rows_ in sorted(by_via.items())
    ]


def translations_at(
    archive: Archive, config: Config, q: WhoQuery
) -> list[tuple[NatTranslation, str]]:
    """The NAT-log translations in force at ``q.at`` for ``q.ip:q.port``, each with the
    NAS its exporter serves. Blocking (DuckDB)."""
    at_ms = q.at * 1000
    since_ms = at_ms - config.natlog.lookback_hours * 3_600_000
    candidates = nat_archive.covering(
        archive, q.ip, q.port, since_ms, at_ms + 999, config.quota.timezone
    )
    nas_of = {e.address: e.nas for e in config.natlog.exporters}
    return [(t, nas_of.get(t.source, "")) for t in in_force(candidates, at_ms + 999)]


def lookup(
    archive: Archive,
    config: Config,
    q: WhoQuery,
    now: float,
    open_rows: Sequence[AuditRow] = (),
    *,
    open_read: bool = True,
    translations: Sequence[tuple[NatTranslation, str]] | None = None,
) -> WhoAnswer:
    """The sessions whose own record answers (port block, address, IPv6 prefix), then
    the translations in force at ``q.at`` for ``q.ip:q.port`` (``translations_at``, or
    as given) and the sessions behind them; ``open_rows``: the open sessions (Redis) as
    audit rows. Blocking (DuckDB): call it from a thread."""
    matches = _direct(archive, config, q, now, open_rows)
    if translations is None:
        translations = translations_at(archive, config, q)
    for t, nas in translations:  # T is a whole second
        sessions = _sessions_at(archive, config, t.private_ip, nas, q.at, now, open_rows)
        matches.append(WhoMatch(t, nas, sessions))
    return WhoAnswer(q, tuple(matches), open_read)


# What a first pass over every open session reads to tell whether it can answer
MATCH_FIELDS = ("client", "ip", "ipv6", "ipv6_prefix", "ipv6_delegated", "nat_ip", "nat_ports")
OPEN_FIELDS = (
    "pid",
    "client",
    "acct_session_id",
    "start",
    "mac",
    "ip",
    "nas_ip",
    "nas_id",
    "ap",
    "venue",
    "ipv6",
    "ipv6_prefix",
    "ipv6_delegated",
    "nas_ipv6",
    "nas_src",
    "nas_public",
    "nat_ip",
    "nat_ports",
)


def _row(record: Mapping[str, str]) -> AuditRow:
    """The address fields of a session record (``MATCH_FIELDS``) as an audit row."""
    return AuditRow(
        day=date.min,
        record_id="",
        kind="session",
        time=0,
        phone="",
        pid="",
        mac="",
        ip=record.get("ip", ""),
        client=record.get("client", ""),
        nas_id="",
        nas_ip="",
        ap="",
        venue="",
        start=None,
        stop=None,
        result="",
        cause="",
        archived_at=0,
        ipv6=record.get("ipv6", ""),
        ipv6_prefix=record.get("ipv6_prefix", ""),
        ipv6_delegated=record.get("ipv6_delegated", ""),
        nat_ip=record.get("nat_ip", ""),
        nat_ports=record.get("nat_ports", ""),
    )


def may_answer(
    q: WhoQuery, private: Sequence[tuple[str, str]]
) -> Callable[[Mapping[str, str]], bool]:
    """Whether an open session's record (``MATCH_FIELDS``) can answer ``q``: by its own
    addresses (``direct_via``), or as the session behind a translation (``private``:
    (private IP, NAS or "") pairs)."""
    behind = {ip for ip, _ in private}
    behind_v6 = [(ip, nas) for ip, nas in private if ":" in ip]

    def keep(record: Mapping[str, str]) -> bool:
        ip = record.get("ip", "")
        client = record.get("client")
        if ip in behind and any(ip == p and (not nas or client == nas) for p, nas in private):
            return True
        has_v6 = record.get("ipv6") or record.get("ipv6_prefix") or record.get("ipv6_delegated")
        if behind_v6 and has_v6:  # NAT64: the private side is the session's IPv6
            row = _row(record)
            if any((not nas or client == nas) and _holds(row, p) for p, nas in behind_v6):
                return True
        if not (
            ip == q.ip
            or record.get("nat_ip") == q.ip
            or record.get("ipv6") == q.ip
            or record.get("ipv6_prefix")
            or record.get("ipv6_delegated")
        ):
            return False  # the common case: nothing of q in it
        return direct_via(_row(record), q.ip, q.port) is not None

    return keep


async def open_rows(
    store: Store,
    config: Config,
    q: WhoQuery,
    now: float,
    private: Sequence[tuple[str, str]] = (),
) -> list[AuditRow]:
    """The open sessions started by ``q.at`` that can answer ``q`` (``may_answer``) as
    audit rows (no phone yet: ``with_phones`` adds it). Every open session is looked at
    with a few fields; only the candidates are read whole. ``StoreUnavailable`` when
    Redis is down."""
    if q.at > now + 60:
        return []  # the future: no session is known to be open then
    found = await all_open(store, MATCH_FIELDS, q.at, keep=may_answer(q, private))
    if not found:
        return []
    full = await records(store, [(s.pid, s.sid) for s in found], OPEN_FIELDS)
    tz = config.quota.timezone
    now_ms = int(now * 1000)
    return [session_audit_row(record_id(r), r, "", tz, now_ms) for r in full if r.get("start")]


async def with_phones(store: Store, answer: WhoAnswer) -> WhoAnswer:
    """The phone numbers of the open sessions that answer (the archive has them already)."""
    pids = sorted({s.pid for s in answer.persons if s.open and s.pid})
    if not pids:
        return answer
    phones = await store.phones(pids)
    matches = tuple(
        WhoMatch(
            m.translation,
            m.nas,
            tuple(s._replace(phone=phones.get(s.pid, "")) if s.open else s for s in m.sessions),
            m.via,
        )
        for m in answer.matches
    )
    return WhoAnswer(answer.query, matches, answer.open_read)


def log_lookup(archive: Archive, config: Config, who_: str, answer: WhoAnswer, now: float) -> None:
    """Every lookup is recorded like an export: who asked, when, what, how many persons
    (their person ids, never a phone number)."""
    entry: dict[str, object] = {
        "at": datetime.fromtimestamp(now, config.quota.timezone).isoformat(),
        "who": who_,
        "records": len(answer.persons),
        "person_ids": sorted({p.pid for p in answer.persons}),
        **answer.query.describe(config),
    }
    archive.append_export_log(entry)
    log.info("audit.who", **entry)


def who(
    archive: Archive,
    config: Config,
    who_: str,
    q: WhoQuery,
    now: float,
    *,
    with_phone: bool,
) -> dict[str, object]:
    """``who`` over the archive only (closed sessions): blocking."""
    answer = lookup(archive, config, q, now, open_read=False)
    log_lookup(archive, config, who_, answer, now)
    return answer.render(config, with_phone)


async def who_live(
    archive: Archive,
    store: Store | None,
    config: Config,
    who_: str,
    q: WhoQuery,
    now: float,
    *,
    with_phone: bool,
) -> dict[str, object]:
    """``who`` over the closed sessions (archive) and the open ones (Redis; without it,
    or with Redis down, the closed ones only, said as ``open_sessions: unavailable``).
    Every lookup is logged."""
    translations = await asyncio.to_thread(translations_at, archive, config, q)
    rows: list[AuditRow] = []
    read = store is not None
    if store is not None:
        private = [(t.private_ip, nas) for t, nas in translations]
        try:
            rows = await open_rows(store, config, q, now, private)
        except StoreUnavailable as exc:
            log.warning("audit.who_open_unavailable", error=str(exc)[:200])
            read = False
    answer = await asyncio.to_thread(
        lookup, archive, config, q, now, rows, open_read=read, translations=translations
    )
    if store is not None and read:
        try:
            answer = await with_phones(store, answer)
        except StoreUnavailable as exc:
            log.warning("audit.who_open_unavailable", error=str(exc)[:200])
    await asyncio.to_thread(log_lookup, archive, config, who_, answer, now)
    return answer.render(config, with_phone)


def render_text(doc: dict[str, object]) -> str:
    """One line per match for the terminal; ``none`` when nobody had the address."""
    head = f"{doc['ip']}:{doc['port']} at {doc['at_time']}: {doc['result']}"
    lines = [head]
    matches = doc.get("matches")
    for m in matches if isinstance(matches, list) else []:
        t = m["translation"]
        p = m["person"]
        if t is not None:
            where = f"  {t['private_ip']}:{t['private_port'] or '*'} via {t['exporter']}"
        else:
            where = f"  {m['via']}"
        if p is None:
            lines.append(f"{where}: no session with this address at that time")
        else:
            phone = f" phone {p['phone']}" if "phone" in p else ""
            until = "open" if p["open"] else p["session_stop"]
            lines.append(
                f"{where}: person {p['person_id']}{phone} mac {p['mac']} on {p['nas']}"
                f" ({p['venue']}) {p['session_start']} .. {until}"
            )
    return "\n".join(lines) + "\n"


def to_json(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode()
