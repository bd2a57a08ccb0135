"""The report page's figures: a period at a glance (a calendar month, the current one
unless another month or a range is chosen), by the same method as the exports
(blocking: DuckDB). Rendering them is ``controller.web.reports_page``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from controller.config import Config
from controller.domain import quota
from controller.domain.periods import Period, month_period
from controller.domain.venue_types import VENUE_TYPES
from controller.services.reports.query import LedgerReader
from controller.services.reports.subsidy import hours, priced_usage
from controller.storage.archive import Archive


@dataclass(frozen=True, slots=True)
class Dashboard:
    first: date
    last: date
    days: list[date]
    open_days: list[date]
    hours_by_type: dict[tuple[date, str], Decimal]
    hours: str
    persons: int
    sessions: int
    exhausted: int
    amount: str
    top: list[dict[str, str]]
    operators: list[dict[str, Any]]


def dashboard(
    archive: Archive, config: Config, now: float, lang: str, period: Period | None = None
) -> Dashboard:
    """The figures of ``period`` (default: the current calendar month), blocking
    (DuckDB); the same method as the exports."""
    if period is None:
        period = month_period(quota.local_day(int(now), config.quota.timezone))
    first, last = period.first, period.last
    reader = LedgerReader(archive, config, now)
    priced = priced_usage(reader, config, first, last)
    persons, exhausted = reader.people(first, last, config.quota.used_up_seconds)
    days = [first + timedelta(days=i) for i in range(period.days)]
    seconds_by_type: dict[tuple[date, str], int] = {}
    venues: dict[str, list[Any]] = {}
    operators: dict[str, list[Any]] = {}
    total_seconds, total_sessions, total_amount = 0, 0, Decimal(0)
    for p in priced:
        u = p.usage
        key = (u.day, u.venue_type)
        seconds_by_type[key] = seconds_by_type.get(key, 0) + u.seconds
        v = venues.setdefault(u.venue, [0, Decimal(0), u.venue_type, u.district])
        v[0] += u.seconds
        v[1] += p.amount
        o = operators.setdefault(u.operator, [0, 0, Decimal(0)])
        o[0] += u.seconds
        o[1] += u.sessions
        o[2] += p.amount
        total_seconds += u.seconds
        total_sessions += u.sessions
        total_amount += p.amount
    top = sorted(venues.items(), key=lambda kv: (-kv[1][0], kv[0]))[:10]
    return Dashboard(
        first=first,
        last=last,
        days=days,
        open_days=[d for d in days if reader.is_open(d)],
        hours_by_type={k: Decimal(s) / Decimal(3600) for k, s in seconds_by_type.items()},
        hours=f"{hours(total_seconds):.2f}",
        persons=persons,
        sessions=total_sessions,
        exhausted=sum(exhausted.values()),
        amount=f"{total_amount:.2f}",
        top=[
            {
                "name": config.venues[vid].name[lang] if vid in config.venues else vid,
                "type": VENUE_TYPES.get(v[2], {}).get(lang, v[2]),
                "district": v[3],
                "hours": f"{hours(v[0]):.2f}",
                "amount": f"{v[1]:.2f}",
            }
            for vid, v in top
        ],
        operators=[
            {
                "name": config.operators[oid].name[lang] if oid in config.operators else oid,
                "hours": f"{hours(o[0]):.2f}",
                "sessions": o[1],
                "amount": f"{o[2]:.2f}",
            }
            for oid, o in sorted(operators.items())
        ],
    )
