"""The per-day archive engine: the usage ledger and the audit log as Parquet files under
one root, read with DuckDB (the one module that calls DuckDB; its errors are mapped here).

Layout (one directory per local day of ``quota.timezone``)::

    <archive>/sessions/2026-11-25/part-<ms>-<rand>.parquet   ledger rows (session x day)
    <archive>/sessions/2026-11-25/sealed.parquet             the closed day's final figures
    <archive>/audit/2026-11-25/part-<ms>-<rand>.parquet      audit records (with phone)
    <archive>/audit-exports.jsonl                            who exported what, when
    <archive>/audit-exports.lock                             appends and its trim take turns
    <archive>/sessions/2026-11-25/rows-forgotten             rows past their retention: emptied

``<ms>`` is the newest ``archived_at`` (epoch ms) in the file: every file was written at
one moment, so a file is either entirely on time or entirely late for its day.

A day closes ``reports.settle_hours`` after its local midnight. Its figures are the rows
archived before then (the newest version of each session); rows arriving later are
logged and counted as late and never change them. One hour after closing (clock-skew
margin between instances) the day is sealed: its on-time rows, deduplicated, become
``sealed.parquet`` and the on-time parts are removed; late parts stay for inspection.
Open days' parts are merged when they pile up. Files are immutable and replaced
atomically, so readers (other processes, other machines on shared storage) need no lock.

What fills it (the outbox drained at least once, deduplicated by ``record_id`` when
read) is the archiver loop, ``controller.services.archiver``; the rows themselves are
``controller.domain.ledger`` and ``controller.domain.audit``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import threading
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import duckdb
import structlog
from prometheus_client import Counter

from controller.config import Config
from controller.domain.audit import AUDIT_ADDED, AUDIT_SCHEMA
from controller.domain.ledger import LEDGER_SCHEMA, day_close_ms
from controller.domain.natlog import NAT_SCHEMA
from controller.storage.archive_text import CsvPart, rows_to_parts
from controller.storage.datafiles import open_private, private_dir

log = structlog.get_logger("citywifi.archive")

MERGE_PARTS = 32  # merge an open day's parts when there are more than this many
DUCKDB_MEMORY = "512MB"  # per query; DuckDB spills beyond it (process RSS stays under 1 GiB)
SEALED = "sealed.parquet"
# the archiver's parts: snappy (~3 µs less CPU per record than zstd, issue 16); merging
# and sealing rewrite them zstd, the archive's long-term form
PART_COMPRESSION = "snappy"
ROWS_FORGOTTEN = "rows-forgotten"  # marker: the day's ledger rows are past their retention
# a sealed day's per-venue figures (what reports read); "-2": with beyond_seconds (the
# figures.parquet of older versions are left alone and computed again under this name)
FIGURES = "figures-2.parquet"
DEFAULT_ALLOWANCE = 7200  # quota.daily_seconds' default; callers pass the configured one
QUARANTINE = "quarantine"  # <archive>/quarantine/<kind>/<day>/: files DuckDB could not read
MAX_QUARANTINE_ROUNDS = 64  # files quarantined by one statement before it gives up
_NAMED_FILE = re.compile(r"""['"]([^'"]+\.parquet)['"]""")  # a file a DuckDB error names

T = TypeVar("T")
SqlBuilder = Callable[[], tuple[str, Sequence[Any]]]

ARCHIVED = Counter("citywifi_archive_rows_total", "Rows written to the archive", ["kind"])
QUARANTINED = Counter(
    "citywifi_archive_quarantined_files_total",
    "Archive files DuckDB could not read, moved to <archive>/quarantine/ (reports and "
    "maintenance carry on without them; alert: each needs an operator)",
)


SCHEMAS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "sessions": LEDGER_SCHEMA,
    "audit": AUDIT_SCHEMA,
    "nat": NAT_SCHEMA,  # NAT translations (controller.storage.nat_archive)
}
# Columns added to a kind after files were written without them: not required of a
# file, and merged by name (``union_by_name``)
ADDED_COLUMNS: Mapping[str, frozenset[str]] = {"audit": AUDIT_ADDED}


def archive_root(config: Config) -> Path:
    return config.reports.archive_dir or (config.redis.data_dir / "archive")


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
        # ``write``'s DuckDB session, kept: a connection costs ~14 ms of CPU, ~7 µs per
        # record at the archiver's batch size (issue 16); one writer at a time
        self._writer: duckdb.DuckDBPyConnection | None = None
        self._writing = threading.Lock()

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
        compression: str = "zstd",
    ) -> int:
        """COPY a query to ``target`` durably: temp file, fsync, rename, fsync the directory.
        Returns the rows copied (-1: DuckDB did not say)."""
        self._create_dirs(target.parent)
        tmp = target.parent / f".tmp-{secrets.token_hex(6)}.parquet"
        try:
            options = f"FORMAT parquet, COMPRESSION {compression}"
            copied = con.execute(
                f"COPY ({source_sql}) TO {_sql_path(tmp)} ({options})", list(args)
            ).fetchone()
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
        return int(copied[0]) if copied else -1

    def _connect(self, threads: int | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB session that spills to disk beyond ``DUCKDB_MEMORY``: a month's report
        over unsealed days must not take the host's memory (docs/performance.md).
        ``threads=1`` for the archiver's writer: its COPYs are a round's rows, too few to
        gain from a second thread, whose set-up cost ~1.5 ms of CPU per COPY (issue 16),
        and the other core is the RADIUS path's."""
        spill = self.root / ".spill"
        self._create_dirs(spill)
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": DUCKDB_MEMORY,
            "temp_directory": str(spill),
        }
        if threads is not None:
            config["threads"] = threads
        return duckdb.connect(config=config)

    def write(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> list[Path]:
        """Append rows (tuples in the kind's schema order, ``day`` first) as one file per day.

        Each file is durable (fsynced, renamed, directory fsynced) before this returns.
        The rows reach DuckDB as CSV text in a temporary file (``csv`` and DuckDB's reader
        are C: ~1 µs per row, against ~9 for binding Python lists), read with the kind's
        exact column types; should DuckDB refuse that file, the same rows go in as bound
        lists (``_write_bound``), so no row is lost to the fast path."""
        if not rows:
            return []
        stamp = [name for name, _ in SCHEMAS[kind]].index("archived_at")
        parts = rows_to_parts(rows, stamp)
        return self.write_parts(kind, parts, lambda day: [r for r in rows if r[0] == day])

    def write_parts(
        self,
        kind: str,
        parts: Mapping[date, CsvPart],
        rows_of: Callable[[date], Sequence[tuple[Any, ...]]],
    ) -> list[Path]:
        """``write`` of rows already as CSV text (``controller.storage.archive_text``),
        one file per day; ``rows_of(day)`` gives the same rows as tuples, for the bound
        path should DuckDB refuse a day's text."""
        schema = SCHEMAS[kind]
        written = []
        count = 0
        with self._writing:
            if self._writer is None:
                self._writer = self._connect(threads=1)
            con = self._writer
            try:
                for day, part in sorted(parts.items()):
                    if not part.count:
                        continue
                    target = (
                        self.day_dir(kind, day)
                        / f"part-{part.newest:013d}-{secrets.token_hex(4)}.parquet"
                    )
                    try:
                        if part.refused:
                            raise ValueError("a row csv could not write")
                        self._write_csv(con, target, schema, part)
                    except (duckdb.Error, ValueError) as exc:
                        log.warning("archive.csv_refused", kind=kind, error=type(exc).__name__)
                        self._write_bound(con, target, schema, rows_of(day))
                    written.append(target)
                    count += part.count
            except BaseException:
                self._writer = None  # a failed session is not reused
                con.close()
                raise
        ARCHIVED.labels(kind).inc(count)
        return written

    def _write_csv(
        self,
        con: duckdb.DuckDBPyConnection,
        target: Path,
        schema: Sequence[tuple[str, str]],
        part: CsvPart,
    ) -> None:
        self._create_dirs(target.parent)
        text = target.parent / f".tmp-{secrets.token_hex(6)}.csv"
        try:
            fd = open_private(text, os.O_WRONLY | os.O_TRUNC)  # phone numbers: 0600
            with open(fd, "wb") as f:
                f.writelines(part.chunks)
            columns = ", ".join(f"'{name}': '{typ}'" for name, typ in schema)
            texts = ", ".join(f"'{name}'" for name, typ in schema if typ == "VARCHAR")
            source = (
                f"SELECT * FROM read_csv({_sql_path(text)}, columns = {{{columns}}}, "
                "header = false, delim = ',', quote = '\"', escape = '\"', new_line = '\\n', "
                f"auto_detect = false, strict_mode = true, force_not_null = [{texts}])"
            )
            count = self._write_file(con, target, source, compression=PART_COMPRESSION)
            if count != part.count:
                raise ValueError(f"{count} rows read back of {part.count}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                text.unlink()

    def _write_bound(
        self,
        con: duckdb.DuckDBPyConnection,
        target: Path,
        schema: Sequence[tuple[str, str]],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        columns = [list(c) for c in zip(*rows, strict=True)]
        select = ", ".join(
            f"unnest(${i + 1}::{typ}[]) AS {name}" for i, (name, typ) in enumerate(schema)
        )
        self._write_file(con, target, f"SELECT {select}", columns, compression=PART_COMPRESSION)

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
                required = {name for name, _ in SCHEMAS[kind]} - ADDED_COLUMNS.get(kind, set())
                if not required <= have:
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

    def seal(self, day: date, close_ms: int, allowance: int = DEFAULT_ALLOWANCE) -> bool:
        """Freeze a closed day: its on-time rows, newest version per session, in one file;
        then its per-venue figures, with ``allowance`` (``quota.daily_seconds``) for the
        seconds beyond it."""
        if self.sealed("sessions", day) is None and self.quarantined("sessions", day, SEALED):
            log.error("archive.seal_skipped", day=day.isoformat(), reason="sealed file quarantined")
            return False
        return self._tolerant(
            lambda: self._seal(day, close_ms, allowance),
            lambda: (
                [p for _, p in self.parts("sessions", day)]
                + [self.day_dir("sessions", day) / SEALED]
            ),
        )

    def _seal(self, day: date, close_ms: int, allowance: int) -> bool:
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
                rows = f"SELECT * FROM read_parquet({_sql_path(sealed)})"
                figures = figures_sql(rows, allowance)
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
        files = f"[{', '.join(_sql_path(p) for _, p in parts)}]"
        source = f"SELECT {names} FROM {read_files(kind, files)}"
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

    def forget_ledger_rows(self, day: date) -> bool:
        """The end of a sealed day's ledger retention (PIPL Art. 19): its rows (person
        ids, sessions) are replaced by an empty sealed file and its parts, late ones
        included, deleted; the per-venue figures stay, so settlements still add up. An
        unsealed day is left alone (False); a day done already is skipped (marker file)."""
        d = self.day_dir("sessions", day)
        marker = d / ROWS_FORGOTTEN
        if marker.exists() or self.figures(day) is None:
            return False
        con = self._connect()
        try:
            names = ", ".join(name for name, _ in LEDGER_SCHEMA)
            self._write_file(
                con, d / SEALED, f"SELECT {names} FROM ({empty_select(LEDGER_SCHEMA)})"
            )
        finally:
            con.close()
        for _, path in self.parts("sessions", day):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(open_private(marker, os.O_WRONLY))
        _fsync_dir(d)
        return True

    @contextlib.contextmanager
    def _export_log_lock(self) -> Iterator[None]:
        """Appends and the retention's rewrite take turns (an append into a file being
        replaced would land in the old one)."""
        fd = open_private(self.root / "audit-exports.lock", os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def append_export_log(self, entry: Mapping[str, Any]) -> None:
        path = self.root / "audit-exports.jsonl"
        with self._export_log_lock():
            fd = open_private(path, os.O_WRONLY | os.O_APPEND)
            try:
                line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def trim_export_log(self, keep: Callable[[Mapping[str, Any]], bool]) -> int:
        """Rewrite the export log without the entries ``keep`` refuses (their retention
        ended); returns how many went. Unreadable lines are kept (nothing is lost
        silently)."""
        path = self.root / "audit-exports.jsonl"
        if not path.exists():
            return 0
        with self._export_log_lock():
            lines = path.read_text().splitlines(keepends=True)
            kept: list[str] = []
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = None
                if not isinstance(entry, dict) or keep(entry):
                    kept.append(line)
            gone = len(lines) - len(kept)
            if gone:
                fresh = path.with_name(f".audit-exports-{secrets.token_hex(4)}.jsonl")
                fd = open_private(fresh, os.O_WRONLY | os.O_TRUNC)
                try:
                    os.write(fd, "".join(kept).encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(fresh, path)
                _fsync_dir(self.root)
        return gone

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


def figures_sql(rows_sql: str, allowance: int = DEFAULT_ALLOWANCE) -> str:
    """Per venue figures of one day's effective ledger rows (verified persons only).

    ``first_sessions`` counts the sessions whose first ledger day this is, so that a
    period's sessions are ``sum(first_sessions)`` plus the first day's carried-over ones,
    without a distinct count over the raw rows.

    ``beyond_seconds``: of ``seconds``, those beyond the person's daily ``allowance``. The
    ledger keeps what each NAS reported (``account.lua`` charges it all, so the next login
    is refused), so a NAS that ignored Session-Timeout (RFC 2865 §5.27) and the
    Disconnect-Request (RFC 5176) leaves more than the allowance on a person-day. A
    person's rows of the day, in the order their sessions started (then by record id, a
    total order), fill the allowance; what follows is beyond it, on the row's venue.
    Only the person-days above the allowance are windowed (the rows are read once,
    materialised). Computed once at sealing, so a month's report stays a read of 30
    small files.
    """
    limit = int(allowance)
    return f"""
        WITH r AS MATERIALIZED (SELECT * FROM ({rows_sql}) WHERE known),
        base AS (
            SELECT day, venue, venue_type, district, operator,
                   count(*) AS sessions,
                   count_if(day = first_day) AS first_sessions,
                   count(DISTINCT pid) AS persons,
                   sum(seconds) AS seconds,
                   sum(octets_in) AS octets_in,
                   sum(octets_out) AS octets_out
            FROM r GROUP BY ALL
        ),
        over AS (SELECT day, pid FROM r GROUP BY day, pid HAVING sum(seconds) > {limit}),
        filled AS (
            SELECT r.day, r.venue, r.venue_type, r.district, r.operator, r.seconds,
                   sum(r.seconds) OVER (
                       PARTITION BY r.day, r.pid ORDER BY r.start, r.record_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS upto
            FROM r SEMI JOIN over ON r.day = over.day AND r.pid = over.pid
        ),
        beyond AS (
            SELECT day, venue, venue_type, district, operator,
                   sum(greatest(0, upto - {limit}) - greatest(0, upto - seconds - {limit}))
                       AS beyond_seconds
            FROM filled GROUP BY ALL
        )
        SELECT base.*, CAST(coalesce(beyond.beyond_seconds, 0) AS BIGINT) AS beyond_seconds
        FROM base LEFT JOIN beyond USING (day, venue, venue_type, district, operator)
        ORDER BY ALL
    """


def read_files(kind: str, files: str = "?") -> str:
    """``read_parquet(files)`` of a kind, as a FROM item; for a kind with added columns
    read by name and completed with the columns an older file lacks (NULL)."""
    if kind not in ADDED_COLUMNS:
        return f"read_parquet({files})"
    return (
        f"(SELECT * FROM read_parquet({files}, union_by_name = true)"
        f" UNION ALL BY NAME {empty_select(SCHEMAS[kind])})"
    )


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
