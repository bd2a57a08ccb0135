"""The archive's rows as CSV text, built straight from the outbox's raw stream fields.

The archiver turns thousands of outbox entries a second into audit rows (issue 16 item
3: ≤ 10 µs of CPU per record). Decoding each entry into a ``dict`` of ``str``, building
an ``AuditRow`` and handing it to ``csv`` cost ~10 µs a login; here a login entry's
fields (``bytes``, as hiredis parsed them) are formatted into its CSV line in one
``bytes % tuple``, the columns picked by a plan made once per field layout
(``EntryPlan``). What ``controller.domain.audit.login_audit_row`` makes of the same entry
is the reference: ``tests/test_archive_text.py`` holds the two to the same Parquet rows,
whatever the fields hold.

The dialect is ``Archive``'s reader's (``controller.storage.archive``): ``,`` between
fields, strings always in ``"``, a ``"`` inside one doubled, an empty unquoted field is
NULL (integers only). A part (``CsvPart``) is one kind's rows of one local day.

The per-entry work of the two commonest steps has a C twin in
``controller.storage._archive_fmt`` (an optional extension, built by setup.py like
``radius._speedups``): ``route`` sorts a read's entries by kind on the event loop's
thread, ``login_rows`` and ``session_rows`` format a round's logins and closed sessions
in the writer thread, each one C call per read or round instead of a dozen Python
operations per entry. The Python here (``route_py``, ``login_lines``,
``session_lines``) is the reference and the fallback, used when the
extension is not built or ``CITYWIFI_PURE_PYTHON=1`` (``radius.fastpath.switched_off``);
``tests/test_archive_fmt.py`` and ``tests/fuzz_atheris_archive.py`` hold the two to the
same bytes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from operator import itemgetter
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

from controller.domain import quota
from radius import fastpath

try:
    from controller.storage import _archive_fmt as _built
except ImportError:  # the optional build did not happen: the Python below runs
    _built_or_none: ModuleType | None = None
else:
    _built_or_none = _built

# An outbox entry as read from the stream: its id and its flat field list
# (name, value, name, value, ...), both bytes
RawEntry = tuple[bytes, list[bytes]]


def compiled() -> ModuleType | None:
    """``controller.storage._archive_fmt`` when it is built and not switched off
    (``CITYWIFI_PURE_PYTHON``), else None (asked per read and round: a test may flip it)."""
    return None if fastpath.switched_off() else _built_or_none


# the string columns of a login's audit row taken from its entry, in AUDIT_SCHEMA order
# (the ones between ``venue`` and ``result``, and after ``archived_at``, are fixed)
_WHO = (b"pid", b"mac", b"ip", b"client", b"nas_id", b"nas_ip", b"ap", b"venue")
_RESULT = (b"result",)
_ADDRESS = (
    b"ipv6",
    b"ipv6_prefix",
    b"ipv6_delegated",
    b"nas_ipv6",
    b"nas_src",
    b"nas_public",
    b"nat_ip",
    b"nat_ports",
)
LOGIN_COLUMNS = _WHO + _RESULT + _ADDRESS
# what a closed session's rows take from its record (``session_lines``)
_SESSION_COLUMNS = (
    *(b"start", b"closed", b"seen", b"in", b"out", b"known"),
    *(b"acct_session_id", b"venue_type", b"district", b"operator", b"cause"),
    *_WHO,
    *_ADDRESS,
)

# a login's audit row: day, record_id, kind, time, phone, pid .. venue, start and stop
# (NULL), result, cause (""), archived_at (the round's, put in for ``@AT@``), the address
_LOGIN = (
    b'%b,"login:%b","login",%d,"%b",'
    + b'"%b",' * len(_WHO)
    + b',,"%b","",@AT@,'
    + b",".join([b'"%b"'] * len(_ADDRESS))
    + b"\n"
)
_LOGIN_QUOTES = _LOGIN.count(b'"')  # in a line whose values hold none


@dataclass(slots=True)
class CsvPart:
    """One kind's rows of one local day as CSV text; ``newest``: the largest
    ``archived_at`` among them (the file's name)."""

    chunks: list[bytes] = field(default_factory=list)
    count: int = 0
    newest: int = 0
    refused: bool = False  # ``csv`` could not write a row: the bound path takes the day

    def add_rows(self, rows: Sequence[tuple[Any, ...]], newest: int) -> None:
        """Rows as tuples of the kind's schema (``csv`` writes them: the general path)."""
        if not rows:
            return
        buffer = io.StringIO()
        try:
            csv.writer(buffer, lineterminator="\n").writerows(rows)
            text = buffer.getvalue()
            # ``csv`` leaves a CR unquoted (only "\n" ends its lines), which the reader's
            # ``new_line = '\n'`` refuses: such rows get every string quoted
            self.chunks.append(text.encode() if "\r" not in text else _quoted_rows(rows))
        except (csv.Error, UnicodeEncodeError):
            self.refused = True
        self.count += len(rows)
        self.newest = max(self.newest, newest)


def _quoted_field(value: object) -> bytes:
    if value is None:
        return b""  # NULL
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, str):
        return b'"' + value.replace('"', '""').encode() + b'"'
    return str(value).encode()  # a date


def _quoted_rows(rows: Sequence[tuple[Any, ...]]) -> bytes:
    return b"".join(b",".join(map(_quoted_field, row)) + b"\n" for row in rows)


def rows_to_parts(
    rows: Iterable[tuple[Any, ...]], stamp: int, parts: dict[date, CsvPart] | None = None
) -> dict[date, CsvPart]:
    """Tuples (``day`` first, ``archived_at`` at index ``stamp``) into per-day parts."""
    out: dict[date, CsvPart] = {} if parts is None else parts
    by_day: dict[date, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_day.setdefault(row[0], []).append(row)
    for day, day_rows in by_day.items():
        part = out.setdefault(day, CsvPart())
        part.add_rows(day_rows, max(row[stamp] for row in day_rows))
    return out


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """Where a field layout (an outbox entry's, a session record's) keeps its fields:
    indexes into the flat field list, of the value of the last field of that name (as a
    dict of the pairs keeps it); ``missing`` (the list's length) for a field the layout
    lacks, where ``plan_of`` puts an empty value."""

    k: int
    pid: int
    ref: int
    t: int
    seen: int
    missing: int
    has: frozenset[bytes]  # of the names the row builders default when absent
    # a session's per-day seconds: the index of its one ``d:<YYYYMMDD>`` field (missing:
    # none), -1 when not the common case (more than one, or another ``d:`` name)
    counted: int
    counted_day: bytes  # that field's day, "YYYY-MM-DD"
    login: Callable[[Sequence[bytes]], tuple[bytes, ...]]  # LOGIN_COLUMNS
    session: Callable[[Sequence[bytes]], tuple[bytes, ...]]  # _SESSION_COLUMNS


_plans: dict[tuple[bytes, ...], EntryPlan] = {}
MAX_PLANS = 1024  # layouts kept (a session's ``d:`` names make new ones every day)


def plan_of(fields: list[bytes]) -> EntryPlan:
    """The plan of this field list's layout (made once per layout, kept); pads the list
    in place with the empty value(s) the plan points the layout's missing fields to."""
    names = tuple(fields[0::2])
    plan = _plans.get(names)
    if plan is None:
        if len(_plans) >= MAX_PLANS:
            _plans.clear()
        plan = _plans[names] = _make_plan(names, len(fields))
    while len(fields) <= plan.missing:
        fields.append(b"")
    return plan


def _make_plan(names: tuple[bytes, ...], width: int) -> EntryPlan:
    at = {name: 2 * i + 1 for i, name in enumerate(names)}  # the last one wins
    missing = width if width % 2 == 0 else width + 1  # an odd list: its tail is ignored
    days = [name for name in at if name[:2] == b"d:"]
    counted, counted_day = missing, b""
    if len(days) > 1 or (days and not (len(days[0]) == 10 and days[0][2:].isdigit())):
        counted = -1
    elif days:
        counted = at[days[0]]
        d = days[0][2:]
        counted_day = d[:4] + b"-" + d[4:6] + b"-" + d[6:]
    return EntryPlan(
        k=at.get(b"k", missing),
        pid=at.get(b"pid", missing),
        ref=at.get(b"ref", missing),
        t=at.get(b"t", missing),
        seen=at.get(b"seen", missing),
        missing=missing,
        has=frozenset(name for name in (b"start", b"known", b"seen", b"closed") if name in at),
        counted=counted,
        counted_day=counted_day,
        login=itemgetter(*[at.get(name, missing) for name in LOGIN_COLUMNS]),
        session=itemgetter(*[at.get(name, missing) for name in _SESSION_COLUMNS]),
    )


def route_py(
    entries: Sequence[RawEntry],
    ids: list[bytes],
    logins: list[RawEntry],
    consoles: list[RawEntry],
    pids: set[bytes],
    refs: set[bytes],
) -> None:
    """Sort a read's entries by kind (the reference of ``_archive_fmt.route``): every id
    to ``ids``; a login to ``logins``, its ``pid`` to ``pids``; a close's ``ref`` to
    ``refs``; a console account action (issue 17) to ``consoles``; anything else is
    only acknowledged."""
    for entry in entries:
        eid, f = entry
        ids.append(eid)
        plan = plan_of(f)
        kind = f[plan.k]
        if kind == b"login":
            logins.append(entry)
            pids.add(f[plan.pid])
        elif kind == b"close":
            refs.add(f[plan.ref])
        elif kind == b"console":
            consoles.append(entry)


def route(
    entries: list[RawEntry],
    ids: list[bytes],
    logins: list[RawEntry],
    consoles: list[RawEntry],
    pids: set[bytes],
    refs: set[bytes],
) -> None:
    """``route_py``, in one C call when the extension is there."""
    c = compiled()
    if c is None:
        route_py(entries, ids, logins, consoles, pids, refs)
    else:
        c.route(entries, ids, logins, consoles, pids, refs)


class LocalDays:
    """``quota.local_day`` of epoch seconds, remembering the last day's span when the
    zone's offset does not change inside it (every instant of the span is then on that
    day): one comparison per row instead of a zoneinfo conversion."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.lo = 1
        self.hi = 0
        self.day = date.min
        self.text = b""

    def of(self, ts: int) -> tuple[date, bytes]:
        if self.lo <= ts < self.hi:
            return self.day, self.text
        day = quota.local_day(ts, self.tz)
        text = day.isoformat().encode()
        lo = quota.day_start(day, self.tz)
        hi = quota.day_start(day + timedelta(days=1), self.tz)
        if lo <= ts < hi and self._offset(lo) == self._offset(hi - 1):
            self.lo, self.hi, self.day, self.text = lo, hi, day, text
        return day, text

    def _offset(self, ts: int) -> timedelta | None:
        return datetime.fromtimestamp(ts, self.tz).utcoffset()


def _epoch(raw: bytes) -> int | None:
    """``audit._int`` of the decoded value (int() of text takes what int() of bytes
    does not, such as non-ASCII digits)."""
    try:
        return int(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None


def _escaped(values: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(v.replace(b'"', b'""') for v in values)


def _login_time(raw_t: bytes, fallback: int) -> int:
    """A login row's ``time``: its ``t``, or the archive time's second when that is not
    an integer (or 0), as ``login_audit_row`` has it."""
    try:
        return int(raw_t) or fallback
    except ValueError:
        return _epoch(raw_t) or fallback


def login_lines(
    logins: Iterable[RawEntry],
    phones: dict[bytes, bytes],
    days: LocalDays,
    archived_at: int,
    parts: dict[date, CsvPart],
) -> None:
    """Add the audit rows of login entries to ``parts``: what ``login_audit_row`` makes
    of each, as CSV lines (the reference of ``login_rows``' C path)."""
    template = _LOGIN.replace(b"@AT@", b"%d" % archived_at)
    fallback = archived_at // 1000
    part = CsvPart()
    at, day_text, last_t = 0, b"", None
    for eid, f in logins:
        plan = plan_of(f)
        raw_t = f[plan.t]
        if raw_t != last_t:  # a new second: its local day (mostly the same part)
            at = _login_time(raw_t, fallback)
            day, day_text = days.of(at)
            part = parts.get(day) or parts.setdefault(day, CsvPart())
            part.newest = max(part.newest, archived_at)
            last_t = raw_t
        cols = plan.login(f)
        phone = phones.get(f[plan.pid], b"")
        line = template % (day_text, eid, at, phone, *cols)
        if line.count(b'"') != _LOGIN_QUOTES:  # a value holds a quote: double it
            eid_q, phone_q = _escaped((eid, phone))
            line = template % (day_text, eid_q, at, phone_q, *_escaped(cols))
        part.chunks.append(line)
        part.count += 1


# entries per call of the C formatter: it holds the GIL throughout (~0.5 µs a login), so
# a round's 10,000 go in slices of ~1 ms each, and the event loop's thread (the RADIUS
# path) gets the GIL in between, as between the Python fallback's bytecodes
C_SLICE = 2000


def login_rows(
    logins: list[RawEntry],
    phones: dict[bytes, bytes],
    days: LocalDays,
    archived_at: int,
    parts: dict[date, CsvPart],
) -> None:
    """``login_lines``, formatted in one C call when the extension is there: it asks
    back (``day_of``) only when an entry's ``t`` differs from the one before, and gives
    the lines in runs of one local day."""
    c = compiled()
    if c is None:
        login_lines(logins, phones, days, archived_at, parts)
        return
    fallback = archived_at // 1000

    def day_of(raw_t: bytes) -> tuple[bytes, date, bytes]:
        at = _login_time(raw_t, fallback)
        day, text = days.of(at)
        return b"%d" % at, day, text

    stamp = b"%d" % archived_at
    runs: list[tuple[date, bytes, int]] = []
    for lo in range(0, len(logins), C_SLICE):  # the GIL is let go between slices
        runs += c.login_csv(logins[lo : lo + C_SLICE], phones, day_of, stamp)
    for day, text, count in runs:
        part = parts.get(day) or parts.setdefault(day, CsvPart())
        part.chunks.append(text)
        part.count += count
        part.newest = max(part.newest, archived_at)


# a closed session's ledger row: day, first_day, record_id, pid, known, venue,
# venue_type, district, operator, client, ap, start, stop, seconds, octets_in,
# octets_out, cause, session_seconds, archived_at (LEDGER_SCHEMA)
_LEDGER = b'%b,%b,"%b","%b",%b,"%b","%b","%b","%b","%b","%b",%b,%b,%b,%d,%d,"%b",%b,%b\n'
# its audit row: day, record_id, "session", time, phone, who (8), start, stop, "closed",
# cause, archived_at, the address record (8)
_SESSION = (
    b'%b,"%b","session",%b,"%b",'
    + b'"%b",' * len(_WHO)
    + b'%b,%b,"closed","%b",%b,'
    + b",".join([b'"%b"'] * len(_ADDRESS))
    + b"\n"
)
BIGINT_MAX = 2**63 - 1


def session_lines(
    f: list[bytes],
    plan: EntryPlan,
    phone: bytes,
    days: LocalDays,
    archived_at: int,
    ledger: dict[date, CsvPart],
    audit: dict[date, CsvPart],
) -> bool:
    """Add a closed session's ledger row and audit row (what ``ledger_rows`` and
    ``session_audit_row`` make of the decoded record) to the parts, for the common
    session: counted on its start's local day (one ``d:`` field, or none), its numbers
    plain ASCII digits. ``f``: the record's field list, padded by ``plan_of``. False, nothing
    added: the caller builds this one the reference way (sessions over midnight,
    anything unusual)."""
    v = plan.session(f)
    start_raw, closed, seen, octets_in, octets_out = v[:5]
    numbers = start_raw + closed + seen + octets_in + octets_out
    if (numbers and not numbers.isdigit()) or plan.counted < 0:
        return False
    start = int(start_raw) if start_raw else 0
    day, day_text = days.of(start)
    seconds = b"0"
    if plan.counted != plan.missing:
        value = f[plan.counted]
        if value and not value.isdigit():
            return False
        if value and int(value) > 0:  # counted on that day: the start's, here
            if plan.counted_day != day_text:
                return False
            seconds = value
    has = plan.has
    known = b"true" if b"known" not in has or v[5] == b"1" else b"false"
    strings = v[6:]  # acct_session_id, venue_type, district, operator, cause, who (16)
    rid = b"%b|%b/%b|%b" % (v[11], v[14], v[6], start_raw if b"start" in has else b"0")
    if b'"' in rid or b'"' in phone or b'"' in b"".join(strings):
        rid, phone = _escaped((rid, phone))
        strings = _escaped(strings)
    start_text = b"%d" % start
    stamp = b"%d" % archived_at
    line = (
        _LEDGER
        % (
            day_text,
            day_text,
            rid,
            strings[5],  # pid
            known,
            strings[12],  # venue
            *strings[1:4],  # venue_type, district, operator
            strings[8],  # client
            strings[11],  # ap
            start_text,
            closed or start_text,  # the ledger's stop: the start when not closed
            seconds,
            min(int(octets_in) if octets_in else 0, BIGINT_MAX),
            min(int(octets_out) if octets_out else 0, BIGINT_MAX),
            strings[4],  # cause
            seen or b"0",
            stamp,
        )
    )
    row = (
        _SESSION
        % (
            day_text,
            rid,
            start_text,
            phone,
            *strings[5:13],  # pid .. venue
            start_text,
            closed,  # NULL when not closed
            strings[4],
            stamp,
            *strings[13:],  # the address record
        )
    )
    for parts, text in ((ledger, line), (audit, row)):
        part = parts.get(day)
        if part is None:
            part = parts[day] = CsvPart()
        part.chunks.append(text)
        part.count += 1
        part.newest = max(part.newest, archived_at)
    return True


def session_rows_py(
    records: list[tuple[list[bytes], bytes]],
    days: LocalDays,
    archived_at: int,
    ledger: dict[date, CsvPart],
    audit: dict[date, CsvPart],
) -> list[int]:
    """``session_lines`` of each (fields, phone) record (the reference of
    ``_archive_fmt.session_csv``); returns the indexes of the records it left to the
    reference builders."""
    refused = []
    for i, (f, phone) in enumerate(records):
        if not session_lines(f, plan_of(f), phone, days, archived_at, ledger, audit):
            refused.append(i)
    return refused


def session_rows(
    records: list[tuple[list[bytes], bytes]],
    days: LocalDays,
    archived_at: int,
    ledger: dict[date, CsvPart],
    audit: dict[date, CsvPart],
) -> list[int]:
    """``session_rows_py``, in one C call when the extension is there."""
    c = compiled()
    if c is None:
        return session_rows_py(records, days, archived_at, ledger, audit)

    def day_of(raw_start: bytes) -> tuple[bytes, date, bytes]:
        start = int(raw_start)
        day, text = days.of(start)
        return b"%d" % start, day, text

    stamp = b"%d" % archived_at
    runs: list[tuple[date, bytes, bytes, int]] = []
    refused: list[int] = []
    step = C_SLICE // 4  # a session's two lines cost ~4 logins'
    for lo in range(0, len(records), step):
        made: tuple[list[tuple[date, bytes, bytes, int]], list[int]]
        made = c.session_csv(records[lo : lo + step], day_of, stamp)
        runs += made[0]
        refused += [lo + i for i in made[1]]
    for day, ledger_text, audit_text, count in runs:
        for parts, text in ((ledger, ledger_text), (audit, audit_text)):
            part = parts.get(day)
            if part is None:
                part = parts[day] = CsvPart()
            part.chunks.append(text)
            part.count += count
            part.newest = max(part.newest, archived_at)
    return refused
