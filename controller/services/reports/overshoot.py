"""Seconds beyond the daily allowance, per day and venue: what a NAS carried after it
should have cut the person off.

Why a person-day can hold more than the allowance: the ledger records what each NAS
reported (``Acct-Session-Time``, RFC 2866 §5.7), and ``account.lua`` charges all of it to
the day, because the allowance counter must see the truth to refuse the next login. A
NAS that ignores ``Session-Timeout`` (RFC 2865 §5.27) and the enforcer's
Disconnect-Request (RFC 5176) therefore reports, say, 10,002 s for a person whose
allowance is 7,200 s, and the subsidy (which priced every ledger second) paid for 2,802 s
the city never offered. The report now separates those seconds; whether they are paid is
``[subsidy] bill_beyond_allowance``.

Which seconds are beyond: a person's ledger rows of one day, in the order their
sessions started (then by record id, so the order is total), fill the allowance; what
follows once it is full is beyond it, attributed to the row (venue, operator) that
carried it. Only person-days above the allowance are windowed, so the scan costs one
grouped pass over the rows of the range (like the roll-ups' distinct persons).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from controller.services.reports.query import LedgerReader, days_between
from controller.storage.archive import ledger_sql


@dataclass(frozen=True, slots=True)
class VenueDayKey:
    """One day x venue as the ledger attributes it (the key of ``DayVenue``)."""

    day: date
    venue: str
    venue_type: str
    district: str
    operator: str


def beyond_allowance(
    reader: LedgerReader, first: date, last: date, allowance: int
) -> dict[VenueDayKey, int]:
    """Seconds beyond ``allowance`` per day x venue over ``first..last`` (verified persons;
    only the day x venues with some)."""
    days = days_between(first, last)
    limit = int(allowance)

    def sql() -> tuple[str, list[object]]:
        ledger = ledger_sql(reader.archive, days, reader.tz, reader.settle, reader.now_ms)
        return (
            f"""
            WITH r AS (
                SELECT day, pid, record_id, start, venue, venue_type, district, operator,
                       seconds
                FROM ({ledger}) WHERE known
            ),
            over AS (
                SELECT day, pid FROM r GROUP BY day, pid HAVING sum(seconds) > {limit}
            ),
            filled AS (
                SELECT r.*, sum(r.seconds) OVER (
                    PARTITION BY r.day, r.pid ORDER BY r.start, r.record_id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                ) AS upto
                FROM r SEMI JOIN over ON r.day = over.day AND r.pid = over.pid
            )
            SELECT day, venue, venue_type, district, operator,
                   sum(greatest(0, upto - {limit})
                       - greatest(0, upto - seconds - {limit})) AS beyond
            FROM filled GROUP BY ALL HAVING beyond > 0 ORDER BY ALL
            """,
            [],
        )

    return {VenueDayKey(r[0], r[1], r[2], r[3], r[4]): int(r[5]) for r in reader.archive.query(sql)}
