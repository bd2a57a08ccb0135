"""The usage ledger's rows: one per session and local day, seconds as the quota counted
them (the archive's ``sessions`` kind; ``controller.storage.archive`` writes and reads
them, the reports aggregate them). Pure: built from a closed session's record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from controller.domain import quota

BIGINT_MAX = 2**63 - 1


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
