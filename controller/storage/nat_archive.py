"""NAT translations in the day archive: ``<archive>/nat/<YYYY-MM-DD>/part-*.parquet``,
one directory per local day of the event (``quota.timezone``), directories ``0700`` and
files ``0600`` like the audit log (they lead to a person), written and read through
``controller.storage.archive.Archive`` (the one DuckDB module) and deleted whole days
at a time after ``natlog.retention_days``.

Rows are ``controller.domain.natlog.NAT_SCHEMA``; which of them is in force at an
instant is decided by ``controller.domain.natlog.in_force``, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from controller.domain.natlog import NAT_SCHEMA, NatTranslation, local_day
from controller.storage.archive import Archive, empty_select

KIND = "nat"
MERGE_EVERY = 32  # Archive.merge merges a day once it holds more parts than this


def write(
    archive: Archive, translations: Iterable[NatTranslation], tz: ZoneInfo, now_ms: int
) -> list[Path]:
    """Append translations as one part per local day, then merge days that piled up
    parts (a listener writes every few seconds)."""
    rows = [t.row(tz, now_ms) for t in translations]
    written = archive.write(KIND, rows)
    for day in sorted({row[0] for row in rows if isinstance(row[0], date)}):
        if len(archive.parts(KIND, day)) > MERGE_EVERY:
            archive.merge(KIND, day)
    return written


def covering(
    archive: Archive, public_ip: str, port: int, since_ms: int, until_ms: int, tz: ZoneInfo
) -> list[NatTranslation]:
    """Every event in ``[since_ms, until_ms]`` whose public address is ``public_ip`` and
    whose port range holds ``port`` (creates and deletes alike), oldest first, copies
    delivered twice (UDP, re-imported file) once. Blocking (DuckDB)."""
    first, last = local_day(since_ms, tz), local_day(until_ms, tz)
    names = ", ".join(name for name, _ in NAT_SCHEMA)

    def sql() -> tuple[str, list[object]]:
        files = archive.files(KIND, first, last)
        if not files:
            return empty_select(NAT_SCHEMA), []
        return (
            f"""
            SELECT {names} FROM read_parquet(?)
            WHERE public_ip = ? AND port_start <= ? AND port_end >= ?
              AND time >= ? AND time <= ?
            QUALIFY row_number() OVER (
                PARTITION BY time, event, protocol, private_ip, private_port, public_ip,
                             port_start, port_end, source
                ORDER BY archived_at) = 1
            ORDER BY time, event
            """,
            [files, public_ip, port, port, since_ms, until_ms],
        )

    return [NatTranslation.from_row(row) for row in archive.query(sql)]


def trim(archive: Archive, keep_from: date) -> list[date]:
    """Delete whole days before ``keep_from``."""
    return archive.trim(KIND, keep_from)
