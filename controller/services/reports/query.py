"""Report requests (validated into typed values) and the DuckDB aggregation of the ledger.

Only aggregates leave DuckDB: per day x venue (a few thousand rows a day for a whole city)
and distinct counts per month; the ledger itself (tens of millions of rows a month) never
passes through Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from controller.config import Config
from controller.domain.ledger import day_close_ms
from controller.domain.periods import PeriodError, parse_period
from controller.storage.archive import Archive, figures_sql, ledger_sql

GROUPS = ("venue", "venue_type", "district", "operator")
LANGS = ("zh", "en")
FORMATS = ("csv", "json", "xlsx")


# One error family for every request's dates and options (stable code + message).
ReportRequestError = PeriodError


@dataclass(frozen=True, slots=True)
class ReportRequest:
    first: date
    last: date
    format: str = "csv"
    group: str = "venue"
    lang: str = "zh"  # the workbook's language (not part of the figures)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def parse_request(params: Mapping[str, str], config: Config) -> ReportRequest:
    period = parse_period(
        params.get("from"),
        params.get("to"),
        longest=config.reports.max_range_days,
        hint="reports.max_range_days",
    )
    fmt = params.get("format", "csv")
    if fmt not in FORMATS:
        raise ReportRequestError("bad_format", f"format must be one of {', '.join(FORMATS)}")
    group = params.get("group", "venue")
    if group not in GROUPS:
        raise ReportRequestError(
            "bad_group", f"unknown group '{group}'; use one of {', '.join(GROUPS)}"
        )
    lang = params.get("lang", "zh")
    if lang not in LANGS:
        raise ReportRequestError("bad_lang", f"lang must be one of {', '.join(LANGS)}")
    return ReportRequest(first=period.first, last=period.last, format=fmt, group=group, lang=lang)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class DayVenue:
    """Usage of one venue on one day (verified persons only)."""

    day: date
    venue: str
    venue_type: str
    district: str
    operator: str
    sessions: int
    first_sessions: int  # sessions whose first ledger day this is
    persons: int
    seconds: int
    octets_in: int
    octets_out: int
    beyond: int = 0  # of seconds, beyond the persons' daily allowance (archive.figures_sql)


class LedgerReader:
    """Aggregates over the effective ledger (closed days frozen, newest version per session).

    A sealed day's per-venue figures were computed once when it was sealed; only open or
    not yet sealed days are aggregated from their rows. The one aggregate that needs the
    rows of a whole period is the count of distinct persons.
    """

    def __init__(self, archive: Archive, config: Config, now: float) -> None:
        self.archive = archive
        self.tz: ZoneInfo = config.quota.timezone
        self.settle = config.reports.settle_hours
        self.allowance = config.quota.daily_seconds
        self.now_ms = int(now * 1000)
        self._open: dict[date, bool] = {}

    def is_open(self, day: date) -> bool:
        status = self._open.get(day)
        if status is None:
            status = self._open[day] = self.now_ms < day_close_ms(day, self.tz, self.settle)
        return status

    def _ledger(self, days: Sequence[date]) -> str:
        return ledger_sql(self.archive, days, self.tz, self.settle, self.now_ms)

    # Every query is given as a function of the files as they are now: the archive runs
    # it again without a file it had to quarantine (controller.storage.archive.Archive._tolerant).

    def day_venues(self, day: date) -> list[DayVenue]:
        def sql() -> tuple[str, list[object]]:
            figures = self.archive.figures(day)
            if figures is not None:
                quoted = str(figures).replace("'", "''")
                return f"SELECT * FROM read_parquet('{quoted}') ORDER BY ALL", []
            return figures_sql(self._ledger([day]), self.allowance), []

        return [
            DayVenue(r[0], r[1], r[2], r[3], r[4], *(int(v) for v in r[5:]))
            for r in self.archive.query(sql)
        ]

    def persons(self, first: date, last: date, group: str) -> dict[str, int]:
        """Distinct verified persons per value of ``group`` over ``first..last``."""
        assert group in GROUPS

        def sql() -> tuple[str, list[object]]:
            ledger = self._ledger(days_between(first, last))
            return (
                f"""
                SELECT {group}, count(*) FROM (
                    SELECT {group}, pid FROM ({ledger}) WHERE known GROUP BY ALL
                ) GROUP BY ALL ORDER BY ALL
            """,
                [],
            )

        return {r[0]: int(r[1]) for r in self.archive.query(sql)}

    def people(self, first: date, last: date, used_up: int) -> tuple[int, dict[date, int]]:
        """Persons served over the days, and per day the persons whose allowance ran out:
        ``used_up`` seconds or more (less than the minimum grant left, ``QuotaPolicy``)."""
        days = days_between(first, last)

        def served_sql() -> tuple[str, list[object]]:
            ledger = self._ledger(days)
            return f"SELECT count(*) FROM (SELECT DISTINCT pid FROM ({ledger}) WHERE known)", []

        def exhausted_sql() -> tuple[str, list[object]]:
            return (
                f"""
                SELECT day, count(*) FROM (
                    SELECT day, pid FROM ({self._ledger(days)}) WHERE known
                    GROUP BY day, pid HAVING sum(seconds) >= {int(used_up)}
                ) GROUP BY day ORDER BY day
            """,
                [],
            )

        served = self.archive.query(served_sql)
        exhausted = self.archive.query(exhausted_sql)
        return int(served[0][0]), {r[0]: int(r[1]) for r in exhausted}
