"""The per-day archive: the usage ledger and the audit log, out of Redis's memory.

Closed sessions and login results leave Redis through the outbox stream ``cw:outbox``
(XADDed in the same pipeline as the close, or after an Access-Request decision). The
``Archiver`` drains it through a consumer group: read, write Parquet (fsynced, renamed
into place), then remember the archived version, XACK and XDEL. A crash before the ack
re-delivers the entries (XAUTOCLAIM after ``CLAIM_IDLE_MS``), so delivery is **at least
once**; duplicates are removed by session (``record_id``) when reading, and a retransmitted
Stop of an already archived version is skipped before writing.

Layout (one directory per local day of ``quota.timezone``)::

    <archive>/sessions/2026-11-25/part-<ms>-<rand>.parquet   ledger rows (session x day)
    <archive>/sessions/2026-11-25/sealed.parquet             the closed day's final figures
    <archive>/audit/2026-11-25/part-<ms>-<rand>.parquet      audit records (with phone)
    <archive>/audit-exports.jsonl                            who exported what, when

``<ms>`` is the newest ``archived_at`` (epoch ms) in the file: every file was written at
one moment, so a file is either entirely on time or entirely late for its day.

A day closes ``reports.settle_hours`` after its local midnight. Its figures are the rows
archived before then (the newest version of each session); rows arriving later are
logged and counted as late and never change them. One hour after closing (clock-skew
margin between instances) the day is sealed: its on-time rows, deduplicated, become
``sealed.parquet`` and the on-time parts are removed; late parts stay for inspection.
Open days' parts are merged when they pile up. Files are immutable and replaced
atomically, so readers (other processes, other machines on shared storage) need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import duckdb
import structlog
from prometheus_client import Counter, Gauge

from controller import audit, quota
from controller.config import Config
from controller.storage.datafiles import open_private, private_dir
from controller.storage.store import Store, StoreUnavailable

log = structlog.get_logger("citywifi.archive")

SEAL_GRACE_MS = 3600_000  # seal a closed day this long after it closed (instance clock skew)
MERGE_PARTS = 32  # merge an open day's parts when there are more than this many
CLAIM_IDLE_MS = 60_000  # re-deliver entries a consumer left unacknowledged this long
BATCH = 2000  # outbox entries per read
BIGINT_MAX = 2**63 - 1
DUCKDB_MEMORY = "512MB"  # per query; DuckDB spills beyond it (process RSS stays under 1 GiB)
SEALED = "sealed.parquet"
FIGURES = "figures.parquet"  # a sealed day's per-venue figures (what reports read)
QUARANTINE = "quarantine"  # <archive>/quarantine/<kind>/<day>/: files DuckDB could not read
MAX_QUARANTINE_ROUNDS = 64  # files quarantined by one statement before it gives up
_NAMED_FILE = re.compile(r"""['"]([^'"]+\.parquet)['"]""")  # a file a DuckDB error names

T = TypeVar("T")
SqlBuilder = Callable[[], tuple[str, Sequence[Any]]]

ARCHIVED = Counter("citywifi_archive_rows_total", "Rows written to the archive", ["kind"])
LATE = Counter(
    "citywifi_archive_late_rows_total",
    "Ledger rows archived after their day closed (kept out of the closed figures)",
)
MISSING = Counter(
    "citywifi_archive_missing_sessions_total",
    "Outbox entries whose session record had expired from Redis before archiving",
)
QUARANTINED = Counter(
    "citywifi_archive_quarantined_files_total",
    "Archive files DuckDB could not read, moved to <archive>/quarantine/ (reports and "
    "maintenance carry on without them; alert: each needs an operator)",
)
# the one city-wide stream: every process reads the same length, the latest wins
BACKLOG = Gauge(
    "citywifi_outbox_backlog",
    "Entries in the outbox stream not yet archived",
    multiprocess_mode="livemostrecent",
)

LEDGER_SCHEMA: tuple[tuple[str, str], ...] = (
    ("day", "DATE"),  # local day the seconds were counted on
    ("first_day", "DATE"),  # the session's first day in the ledger (counts it once a month)
    ("record_id", "VARCHAR"),  # the session: "<pid>|<client>/<acct-session-id>|<start>"
    ("pid", "VARCHAR"),  # opaque person id (keyed hash), never the phone
    ("known", "BOOLEAN"),  # false: accounting not tied to a verified person
    ("venue", "VARCHAR"),
    ("venue_type", "VARCHAR"),
    ("district", "VARCHAR"),
    ("operator", "VARCHAR"),
    ("client", "VARCHAR"),  # the NAS (RADIUS client id)
    ("ap", "VARCHAR"),  # Called-Station-Id
    ("start", "BIGINT"),  # session start, epoch
    ("stop", "BIGINT"),  # session stop, epoch
    ("seconds", "BIGINT"),  # free seconds counted toward the allowance on ``day``
    ("octets_in", "BIGINT"),  # the session's octets, shared out in proportion to seconds
    ("octets_out", "BIGINT"),
    ("cause", "VARCHAR"),  # Acct-Terminate-Cause (RFC 2866 §5.10) as a number
    ("session_seconds", "BIGINT"),  # whole session time: the version of the record
    ("archived_at", "BIGINT"),  # epoch ms
)


class LedgerRow(NamedTuple):
    day: date
    first_day: date
    record_id: str
    pid: str
    known: bool
    venue: str
    venue_type: str
    district: str
    operator: str
    client: str
    ap: str
    start: int
    stop: int
    seconds: int
    octets_in: int
    octets_out: int
    cause: str
    session_seconds: int
    archived_at: int


SCHEMAS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "sessions": LEDGER_SCHEMA,
    "audit": audit.AUDIT_SCHEMA,
}


def archive_root(config: Config) -> Path:
    return config.reports.archive_dir or (config.redis.data_dir / "archive")


def record_id(rec: Mapping[str, str]) -> str:
    """A session's identity: its Redis record, which a reused Acct-Session-Id can't hit twice."""
    return f"{rec.get('pid', '')}|{rec.get('client', '')}/{rec.get('acct_session_id', '')}|" + (
        rec.get("start", "0")
    )


def day_close_ms(day: date, tz: ZoneInfo, settle_hours: int) -> int:
    """When ``day``'s figures become final: its end (next local midnight) + the settle period."""
    return (quota.day_start(day + timedelta(days=1), tz) + settle_hours * 3600) * 1000


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def ledger_rows(rec: Mapping[str, str], tz: ZoneInfo, archived_at: int) -> list[LedgerRow]:
    """One row per local day of a closed session, seconds as the quota counted them.

    The per-day seconds are the ``d:<YYYYMMDD>`` fields account.lua adds with the day
    counters. Octets are not known per day; they are shared out in proportion to seconds
    (integer shares that add up to the total). A session without counted seconds still
    makes one row, on its start day.
    """
    start = _int(rec.get("start"))
    stop = _int(rec.get("closed"), start)
    per_day = sorted(
        (date(int(k[2:6]), int(k[6:8]), int(k[8:10])), _int(v))
        for k, v in rec.items()
        if k.startswith("d:") and len(k) == 10 and k[2:].isdigit() and _int(v) > 0
    )
    if not per_day:
        per_day = [(quota.local_day(start, tz), 0)]
    total = sum(s for _, s in per_day)
    # a NAS's 64-bit counters (Octets + Gigawords) can exceed BIGINT: clamp, don't fail
    octets_in = min(_int(rec.get("in")), BIGINT_MAX)
    octets_out = min(_int(rec.get("out")), BIGINT_MAX)
    rid = record_id(rec)
    rows: list[LedgerRow] = []
    done = 0
    for day, seconds in per_day:
        before, done = done, done + seconds
        if total:
            share_in = octets_in * done // total - octets_in * before // total
            share_out = octets_out * done // total - octets_out * before // total
        else:
            share_in, share_out = octets_in, octets_out  # the one row of a 0 s session
        rows.append(
            LedgerRow(
                day=day,
                first_day=per_day[0][0],
                record_id=rid,
                pid=rec.get("pid", ""),
                known=rec.get("known", "1") == "1",
                venue=rec.get("venue", ""),
                venue_type=rec.get("venue_type", ""),
                district=rec.get("district", ""),
                operator=rec.get("operator", ""),
                client=rec.get("client", ""),
                ap=rec.get("ap", ""),
                start=start,
                stop=stop,
                seconds=seconds,
                octets_in=share_in,
                octets_out=share_out,
                cause=rec.get("cause", ""),
                session_seconds=_int(rec.get("seen")),
                archived_at=archived_at,
            )
        )
    return rows


# --------------------------------------------------------------------------- storage


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


_SQL_PARQUET = re.compile(r"'((?:[^']|'')+\.parquet)'")


def _paths_in(sql: str, args: Sequence[Any]) -> list[Path]:
    """The Parquet files a statement names: quoted in its text or passed as arguments."""
    found = [m.replace("''", "'") for m in _SQL_PARQUET.findall(sql)]
    for arg in args:
        for value in arg if isinstance(arg, list | tuple) else [arg]:
            if isinstance(value, str | Path) and str(value).endswith(".parquet"):
                found.append(str(value))
    return [Path(p) for p in found]


class ArchiveError(RuntimeError):
    pass


def _part_ms(name: str) -> int | None:
    """``part-<ms>-<rand>.parquet`` -> ms; None for anything else."""
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    try:
        return int(name.split("-")[1])
    except (IndexError, ValueError):
        return None


class Archive:
    """Parquet files per kind and local day under one root; DuckDB reads them.

    A file DuckDB cannot read (truncated, overwritten, bit rot, another schema) would
    otherwise fail every report and every maintenance round that touches it. So each
    read and each seal or merge runs ``_tolerant``: on a DuckDB error the files it names
    (or, when it names none, the files the statement reads) are read in full once more;
    those that fail are moved aside to ``<archive>/quarantine/<kind>/<day>/`` (logged as
    ``archive.quarantined``, counted in ``citywifi_archive_quarantined_files_total``) and
    the statement is built and run again without them. Nothing is deleted: the operator
    inspects, repairs or restores the file (docs/reports.md, "Quarantined files").
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._intact: set[tuple[str, int, int]] = set()  # (path, size, mtime) read in full

    def day_dir(self, kind: str, day: date) -> Path:
        return self.root / kind / day.isoformat()

    def days(self, kind: str) -> list[date]:
        base = self.root / kind
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(base):
                with contextlib.suppress(ValueError):
                    out.append(date.fromisoformat(entry.name))
        return sorted(out)

    def parts(self, kind: str, day: date) -> list[tuple[int, Path]]:
        d = self.day_dir(kind, day)
        out = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(d):
                ms = _part_ms(entry.name)
                if ms is not None:
                    out.append((ms, d / entry.name))
        return sorted(out)

    def sealed(self, kind: str, day: date) -> Path | None:
        path = self.day_dir(kind, day) / SEALED
        return path if path.exists() else None

    def figures(self, day: date) -> Path | None:
        """The per-venue figures of a sealed day (written right after its sealed rows)."""
        path = self.day_dir("sessions", day) / FIGURES
        return path if path.exists() and self.sealed("sessions", day) else None

    def files(self, kind: str, first: date, last: date) -> list[str]:
        """Every data file of the days ``first..last`` (sealed days: just the sealed file)."""
        out: list[str] = []
        for day in self.days(kind):
            if first <= day <= last:
                sealed = self.sealed(kind, day)
                out.extend([str(sealed)] if sealed else [str(p) for _, p in self.parts(kind, day)])
        return out

    # -- writing
    def _create_dirs(self, path: Path) -> None:
        private_dir(path)  # audit rows carry phone numbers: 0700 (files 0600)

    def _write_file(
        self,
        con: duckdb.DuckDBPyConnection,
        target: Path,
        source_sql: str,
        args: Sequence[Any] = (),
    ) -> None:
        """COPY a query to ``target`` durably: temp file, fsync, rename, fsync the directory."""
        self._create_dirs(target.parent)
        tmp = target.parent / f".tmp-{secrets.token_hex(6)}.parquet"
        try:
            con.execute(
                f"COPY ({source_sql}) TO {_sql_path(tmp)} (FORMAT parquet, COMPRESSION zstd)",
                list(args),
            )
            os.chmod(tmp, 0o600)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(target.parent)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB session that spills to disk beyond ``DUCKDB_MEMORY``: a month's report
        over unsealed days must not take the host's memory (docs/performance.md)."""
        spill = self.root / ".spill"
        self._create_dirs(spill)
        return duckdb.connect(config={"memory_limit": DUCKDB_MEMORY, "temp_directory": str(spill)})

    def write(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> list[Path]:
        """Append rows (tuples in the kind's schema order, ``day`` first) as one file per day."""
        if not rows:
            return []
        schema = SCHEMAS[kind]
        by_day: dict[date, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_day.setdefault(row[0], []).append(row)
        written = []
        con = self._connect()
        try:
            for day, day_rows in sorted(by_day.items()):
                columns = [list(c) for c in zip(*day_rows, strict=True)]
                select = ", ".join(
                    f"unnest(${i + 1}::{typ}[]) AS {name}" for i, (name, typ) in enumerate(schema)
                )
                newest = max(row[-1] for row in day_rows)  # archived_at is last in every schema
                target = (
                    self.day_dir(kind, day) / f"part-{newest:013d}-{secrets.token_hex(4)}.parquet"
                )
                self._write_file(con, target, f"SELECT {select}", columns)
                written.append(target)
        finally:
            con.close()
        ARCHIVED.labels(kind).inc(len(rows))
        return written

    # -- reading
    def query(self, sql: str | SqlBuilder, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only query. Give it as a function building ``(sql, args)`` from the
        files as they are now, so that it can run again after a merge replaced a file
        under it or an unreadable file was quarantined."""
        build: SqlBuilder = sql if callable(sql) else (lambda: (sql, args))
        last: list[tuple[str, Sequence[Any]]] = []

        def attempt() -> list[tuple[Any, ...]]:
            text, params = build()
            last[:] = [(text, params)]
            con = self._connect()
            try:
                return con.execute(text, list(params)).fetchall()
            finally:
                con.close()

        return self._tolerant(attempt, lambda: _paths_in(*last[0]) if last else [])

    # -- unreadable files
    def _tolerant(self, attempt: Callable[[], T], reads: Callable[[], Iterable[Path]]) -> T:
        """``attempt()``; on a DuckDB error, quarantine the unreadable files among those the
        error names (else among ``reads()``) and try again; a bare I/O error (a merge
        replaced a file while it was read) is retried twice."""
        io_retries = 0
        for _ in range(MAX_QUARANTINE_ROUNDS):
            try:
                return attempt()
            except duckdb.Error as exc:
                if self._quarantine_unreadable(exc, reads):
                    continue
                if isinstance(exc, duckdb.IOException) and io_retries < 2:
                    io_retries += 1
                    continue
                raise
        raise ArchiveError(f"more than {MAX_QUARANTINE_ROUNDS} unreadable files at once")

    def _ours(self, path: Path) -> bool:
        quarantine = self.root / QUARANTINE
        return path.is_relative_to(self.root) and not path.is_relative_to(quarantine)

    def _quarantine_unreadable(
        self, exc: duckdb.Error, reads: Callable[[], Iterable[Path]]
    ) -> bool:
        named = [Path(m) for m in _NAMED_FILE.findall(str(exc))]
        suspects = [p for p in named if self._ours(p)] or [p for p in reads() if self._ours(p)]
        bad = [p for p in dict.fromkeys(suspects) if p.exists() and not self.readable(p)]
        for path in bad:
            self.quarantine(path, f"{type(exc).__name__}: {exc}"[:500])
        return bool(bad)

    def readable(self, path: Path) -> bool:
        """Whether every column of every row of ``path`` reads (and a part or sealed file
        has its kind's columns). Remembered per (path, size, mtime): files never change."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return True  # gone (merged away): not ours to judge
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in self._intact:
            return True
        kind = path.relative_to(self.root).parts[0]
        con = self._connect()
        try:
            con.execute(
                "SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM read_parquet(?)", [str(path)]
            ).fetchall()
            if path.name != FIGURES and kind in SCHEMAS:
                have = {
                    r[0]
                    for r in con.execute(
                        "SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet(?))",
                        [str(path)],
                    ).fetchall()
                }
                if not {name for name, _ in SCHEMAS[kind]} <= have:
                    return False
        except duckdb.IOException:
            return not path.exists()
        except duckdb.Error:
            return False
        finally:
            con.close()
        self._intact.add(key)
        return True

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move ``path`` to ``<archive>/quarantine/<same relative path>`` (never over
        another file), log and count it."""
        target = self.root / QUARANTINE / path.relative_to(self.root)
        if target.exists():
            target = target.with_name(f"{target.name}.{int(_time.time() * 1000)}")
        private_dir(target.parent)
        os.replace(path, target)
        _fsync_dir(path.parent)
        QUARANTINED.inc()
        log.error("archive.quarantined", file=str(path), moved_to=str(target), error=reason)
        return target

    def quarantined(self, kind: str, day: date, name: str) -> bool:
        """Whether a file ``name`` of that day was quarantined (a sealed day's one is not
        sealed again from nothing: restoring it stays possible)."""
        d = self.root / QUARANTINE / kind / day.isoformat()
        with contextlib.suppress(FileNotFoundError):
            return any(e.name == name or e.name.startswith(f"{name}.") for e in os.scandir(d))
        return False

    # -- maintenance
    @contextlib.contextmanager
    def maintenance_lock(self, wait: bool = False) -> Iterator[bool]:
        """One maintainer per archive at a time (others skip this round, or ``wait``)."""
        fd = open_private(self.root / ".maintenance.lock", os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def seal(self, day: date, close_ms: int) -> bool:
        """Freeze a closed day: its on-time rows, newest version per session, in one file."""
        if self.sealed("sessions", day) is None and self.quarantined("sessions", day, SEALED):
            log.error("archive.seal_skipped", day=day.isoformat(), reason="sealed file quarantined")
            return False
        return self._tolerant(
            lambda: self._seal(day, close_ms),
            lambda: (
                [p for _, p in self.parts("sessions", day)]
                + [self.day_dir("sessions", day) / SEALED]
            ),
        )

    def _seal(self, day: date, close_ms: int) -> bool:
        kind = "sessions"
        on_time = [p for ms, p in self.parts(kind, day) if ms <= close_ms]
        if self.sealed(kind, day) is None:
            names = ", ".join(name for name, _ in LEDGER_SCHEMA)
            source = (
                f"SELECT {names} FROM read_parquet([{', '.join(_sql_path(p) for p in on_time)}])"
                f" WHERE archived_at <= {int(close_ms)}"
                f" QUALIFY {_LATEST_VERSION} = 1 ORDER BY record_id"
                if on_time
                else f"SELECT {names} FROM ({empty_select(LEDGER_SCHEMA)})"
            )
            con = self._connect()
            try:
                self._write_file(con, self.day_dir(kind, day) / SEALED, source)
            finally:
                con.close()
            log.info("archive.sealed", day=day.isoformat(), parts=len(on_time))
            sealed_now = True
        else:
            sealed_now = False
        if self.figures(day) is None:
            sealed = self.day_dir(kind, day) / SEALED
            con = self._connect()
            try:
                figures = figures_sql(f"SELECT * FROM read_parquet({_sql_path(sealed)})")
                self._write_file(con, self.day_dir(kind, day) / FIGURES, figures)
            finally:
                con.close()
        for path in on_time:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return sealed_now

    def merge(self, kind: str, day: date) -> bool:
        """Replace an open day's many small parts by one (rows unchanged)."""
        return self._tolerant(
            lambda: self._merge(kind, day), lambda: [p for _, p in self.parts(kind, day)]
        )

    def _merge(self, kind: str, day: date) -> bool:
        parts = self.parts(kind, day)
        if len(parts) <= MERGE_PARTS:
            return False
        names = ", ".join(name for name, _ in SCHEMAS[kind])
        newest = max(ms for ms, _ in parts)
        target = self.day_dir(kind, day) / f"part-{newest:013d}-{secrets.token_hex(4)}.parquet"
        source = f"SELECT {names} FROM read_parquet([{', '.join(_sql_path(p) for _, p in parts)}])"
        con = self._connect()
        try:
            self._write_file(con, target, source)
        finally:
            con.close()
        for _, path in parts:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return True

    def trim(self, kind: str, keep_from: date) -> list[date]:
        """Delete whole days before ``keep_from``."""
        removed = []
        for day in self.days(kind):
            if day < keep_from:
                shutil.rmtree(self.day_dir(kind, day), ignore_errors=True)
                removed.append(day)
        return removed

    def append_export_log(self, entry: Mapping[str, Any]) -> None:
        path = self.root / "audit-exports.jsonl"
        fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def export_log(self) -> list[dict[str, Any]]:
        path = self.root / "audit-exports.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# The newest version of a session on a day wins; a re-delivered copy is identical.
_LATEST_VERSION = (
    "row_number() OVER (PARTITION BY record_id, day "
    "ORDER BY session_seconds DESC, stop DESC, archived_at)"
)


def figures_sql(rows_sql: str) -> str:
    """Per venue figures of one day's effective ledger rows (verified persons only).

    ``first_sessions`` counts the sessions whose first ledger day this is, so that a
    period's sessions are ``sum(first_sessions)`` plus the first day's carried-over ones,
    without a distinct count over the raw rows.
    """
    return f"""
        SELECT day, venue, venue_type, district, operator,
               count(*) AS sessions,
               count_if(day = first_day) AS first_sessions,
               count(DISTINCT pid) AS persons,
               sum(seconds) AS seconds,
               sum(octets_in) AS octets_in,
               sum(octets_out) AS octets_out
        FROM ({rows_sql}) WHERE known
        GROUP BY ALL ORDER BY ALL
    """


def empty_select(schema: Sequence[tuple[str, str]]) -> str:
    cols = ", ".join(f"CAST(NULL AS {typ}) AS {name}" for name, typ in schema)
    return f"SELECT {cols} WHERE false"


def ledger_sql(
    archive: Archive, days: Sequence[date], tz: ZoneInfo, settle_hours: int, now_ms: int
) -> str:
    """SQL of the effective ledger rows of ``days``: what the figures are made of.

    Sealed days read their sealed file as is. Closed, not yet sealed days keep the rows
    archived before the close, newest version per session (exactly what sealing will
    write). Open days take every row so far, newest version per session.
    """
    names = ", ".join(name for name, _ in LEDGER_SCHEMA)
    parts: list[str] = []
    for day in days:
        sealed = archive.sealed("sessions", day)
        if sealed is not None:
            parts.append(f"SELECT {names} FROM read_parquet({_sql_path(sealed)})")
            continue
        files = [p for _, p in archive.parts("sessions", day)]
        if not files:
            continue
        close = day_close_ms(day, tz, settle_hours)
        cutoff = f" AND archived_at <= {close}" if now_ms >= close else ""
        parts.append(
            f"SELECT {names} FROM read_parquet([{', '.join(_sql_path(p) for p in files)}])"
            f" WHERE day = DATE '{day.isoformat()}'{cutoff} QUALIFY {_LATEST_VERSION} = 1"
        )
    if not parts:
        return empty_select(LEDGER_SCHEMA)
    return "\nUNION ALL\n".join(parts)


# --------------------------------------------------------------------------- the outflow


class Archiver:
    """Drains the outbox into the archive; keeps days sealed and the audit log trimmed."""

    def __init__(
        self,
        store: Store,
        archive: Archive,
        config: Callable[[], Config],  # the current config (it may be reloaded)
        *,
        clock: Callable[[], float] = _time.time,
        interval: float = 1.0,
        maintenance_every: float = 60.0,
        trim_every: float = 600.0,
        claim_idle_ms: int = CLAIM_IDLE_MS,
    ) -> None:
        self.store = store
        self.archive = archive
        self._config = config
        self.clock = clock
        self.interval = interval
        self.maintenance_every = maintenance_every
        self.trim_every = trim_every
        self.claim_idle_ms = claim_idle_ms
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._last_maintenance = float("-inf")
        self._last_trim = float("-inf")

    @property
    def config(self) -> Config:
        return self._config()

    # -- one pass
    async def drain(self, max_rounds: int = 10_000) -> int:
        """Archive everything in the outbox now; returns the entries handled."""
        total = 0
        async with self._lock:
            for _ in range(max_rounds):
                handled = await self._round()
                total += handled
                if handled == 0:
                    break
        return total

    async def flush(self) -> None:
        """Read-your-writes for reports: drain what is there (bounded, so that steady
        traffic cannot hold a request). An unreachable Redis, or an entry the archive
        cannot take, just means no flush: the report is made from what is archived
        (unsettled days are flagged open) and the loop keeps retrying and logging."""
        try:
            await self.drain(max_rounds=50)
        except StoreUnavailable as exc:
            log.warning("archive.flush_skipped", error=str(exc))
        except Exception as exc:
            log.error("archive.flush_failed", error=type(exc).__name__)

    async def _round(self) -> int:
        entries = await self.store.outbox_read(self.consumer, BATCH, self.claim_idle_ms)
        if not entries:
            return 0
        tz = self.config.quota.timezone
        now_ms = int(self.clock() * 1000)
        refs = sorted({f["ref"] for _, f in entries if f.get("k") == "close" and f.get("ref")})
        records = dict(zip(refs, await self.store.outbox_sessions(refs), strict=True))
        pids = {rec.get("pid", "") for rec, _ in records.values()} | {
            f.get("pid", "") for _, f in entries if f.get("k") == "login"
        }
        phones = await self.store.phones(sorted(p for p in pids if p))
        ledger: list[LedgerRow] = []
        audits: list[audit.AuditRow] = []
        marks: dict[str, str] = {}
        for ref in refs:
            rec, mark = records[ref]
            if not rec:
                MISSING.inc()
                log.warning("archive.session_missing", session=ref)
                continue
            if "closed" not in rec:
                continue  # a close of a session Redis never saw open: nothing to keep
            seen = rec.get("seen", "0")
            if mark == seen:
                continue  # this version is archived already (a retransmitted Stop)
            rid = record_id(rec)
            ledger.extend(ledger_rows(rec, tz, now_ms))
            phone = phones.get(rec.get("pid", ""), "")
            audits.append(audit.session_audit_row(rid, rec, phone, tz, now_ms))
            marks[ref] = seen
        for eid, fields in entries:
            if fields.get("k") == "login":
                phone = phones.get(fields.get("pid", ""), "")
                audits.append(audit.login_audit_row(eid, fields, phone, tz, now_ms))
        self._count_late(ledger, now_ms)
        await asyncio.to_thread(self._write, ledger, audits)
        await self.store.outbox_done([eid for eid, _ in entries], marks)
        return len(entries)

    def _write(self, ledger: Sequence[LedgerRow], audits: Sequence[audit.AuditRow]) -> None:
        self.archive.write("sessions", ledger)
        self.archive.write("audit", audits)

    def _count_late(self, rows: Sequence[LedgerRow], now_ms: int) -> None:
        tz, settle = self.config.quota.timezone, self.config.reports.settle_hours
        for row in rows:
            if now_ms > day_close_ms(row.day, tz, settle):
                LATE.inc()
                log.warning(
                    "archive.late_row",
                    day=row.day.isoformat(),
                    session=row.record_id,
                    seconds=row.seconds,
                )

    # -- maintenance
    def maintain(self, now: float, *, wait: bool = False) -> None:
        """Seal closed days, merge open days' parts, trim the audit log (blocking).

        Each day is its own step: one that fails (a file that cannot be moved aside, a
        full disk) is logged and the others go on; the retention trim runs whatever
        happened before it. Sealing and merging are skipped when another maintainer
        holds the archive, unless ``wait``."""
        tz, settle = self.config.quota.timezone, self.config.reports.settle_hours
        now_ms = int(now * 1000)
        try:
            with self.archive.maintenance_lock(wait) as mine:
                if mine:
                    for day in self.archive.days("sessions"):
                        close = day_close_ms(day, tz, settle)
                        if now_ms >= close + SEAL_GRACE_MS:  # idempotent: cheap once done
                            self._step("seal", day, partial(self.archive.seal, day, close))
                        else:
                            self._step("merge", day, partial(self.archive.merge, "sessions", day))
                    for day in self.archive.days("audit"):
                        self._step("merge", day, partial(self.archive.merge, "audit", day))
        finally:
            self.trim(now)

    def _step(self, what: str, day: date, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception:
            log.exception("archive.maintenance_failed", step=what, day=day.isoformat())

    def trim(self, now: float) -> None:
        """The audit log's retention (MPS Order 82): on its own schedule, never held up by
        Redis, the outbox or another day's sealing, and without the maintenance lock
        (deleting a day twice is harmless)."""
        self._last_trim = _time.monotonic()
        try:
            audit.trim(self.archive, self.config, now)
        except Exception:
            log.exception("archive.trim_failed")

    async def maintain_if_due(self) -> None:
        mono = _time.monotonic()
        if mono - self._last_maintenance < self.maintenance_every:
            return
        self._last_maintenance = mono
        await asyncio.to_thread(self.maintain, self.clock())

    async def trim_if_due(self) -> None:
        if _time.monotonic() - self._last_trim >= self.trim_every:
            await asyncio.to_thread(self.trim, self.clock())

    # -- the loop
    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop the loop after a last drain (best effort: what stays is archived later)."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
                BACKLOG.set(await self.store.outbox_backlog())
            except StoreUnavailable as exc:
                log.warning("archive.store_unavailable", error=str(exc))
            except Exception:  # keep archiving after a bad batch; it is re-delivered later
                log.exception("archive.round_failed")
            # the archive's own upkeep needs no Redis: neither waits for the outbox
            for upkeep in (self.maintain_if_due, self.trim_if_due):
                try:
                    await upkeep()
                except Exception:
                    log.exception("archive.maintenance_failed")
            if self._stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
