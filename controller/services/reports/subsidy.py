"""The subsidy method, in exact decimal arithmetic, and the report it produces.

For each day d and venue v (docs/reports.md has the worked example)::

    amount(d, v) = round_half_up(free_seconds(d, v) / 3600
                                 x rate(venue_type(v)) x factor(operator(v)), 0.01 yuan)

with the rate, factor and cap of the version in force on d (``[subsidy]`` and its
``[[subsidy.versions]]``, ``controller.domain.rate_history``); then, when v has a monthly
cap C, the amounts of v in a calendar month are taken in date order and each day keeps
what is left of C: ``capped(d) = min(C, A(d)) - min(C, A(d - 1))`` with ``A`` the running
sum of the month (days of the month before ``from`` count toward the cap too). Roll-ups
are sums of these rounded day amounts, so every total equals the sum of its rows to the
fen.

``free_seconds`` are a venue's seconds within the persons' daily allowance; the seconds a
NAS carried beyond it (``controller.storage.archive.figures_sql``) are shown apart, as
``beyond_allowance_seconds``, and priced only when ``[subsidy] bill_beyond_allowance``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from controller.config import Config, Subsidy
from controller.domain.periods import month_start, next_month
from controller.domain.rate_history import RateVersion, capped, in_force, spans
from controller.domain.venue_types import VENUE_TYPES
from controller.services.reports.meta import Presentation, Signature, presentation
from controller.services.reports.query import DayVenue, LedgerReader, ReportRequest, days_between
from controller.storage.archive import Archive

METHOD = (
    "citywifi-subsidy-3: per day and venue, free_seconds/3600 x rate(venue_type) x "
    "factor(operator), rounded half up to 0.01 yuan, with the rates, caps and factors in "
    "force that day (rate_versions); a venue's monthly cap is applied in date order (each "
    "day keeps what is left of the cap in force that day); verified persons only; a "
    "session spanning midnight counts on each day; "
    "free_seconds are within each person's daily allowance (sessions in start order), "
    "seconds beyond it are shown apart and priced only if bill_beyond_allowance"
)
FEN = Decimal("0.01")
ONE = Decimal(1)
HOUR = Decimal(3600)

Progress = Callable[[int, int], None]  # (steps done, steps in all)


def fen(value: Decimal) -> Decimal:
    return value.quantize(FEN, rounding=ROUND_HALF_UP)


def hours(seconds: int) -> Decimal:
    return fen(Decimal(seconds) / HOUR)


@dataclass(frozen=True, slots=True)
class Priced:
    usage: DayVenue
    rate: Decimal
    factor: Decimal
    amount: Decimal
    beyond: int = 0  # of usage.seconds, beyond the persons' daily allowance

    @property
    def free_seconds(self) -> int:
        """The seconds within the allowance (the ones the city offered)."""
        return self.usage.seconds - self.beyond


def price(rows: Sequence[DayVenue], subsidy: Subsidy) -> list[Priced]:
    """Amounts of day x venue rows (which must include every earlier day of their month),
    each day with the rates, cap and factor in force that day (``rate_history``); their
    seconds beyond the allowance are priced only if the policy says so."""
    out: list[Priced] = []
    history = subsidy.history()
    paid: dict[tuple[str, date], Decimal] = {}  # (venue, month) -> capped amounts so far
    by_day: dict[date, RateVersion] = {}
    ever_capped = {venue for v in history for venue in v.venue_caps}
    for row in sorted(rows, key=lambda r: (r.day, r.venue, r.venue_type, r.district, r.operator)):
        version = by_day.get(row.day) or by_day.setdefault(row.day, in_force(history, row.day))
        rate = version.rates.get(row.venue_type, Decimal(0))
        factor = version.operator_factors.get(row.operator, ONE)
        over = min(row.seconds, row.beyond)
        billed = row.seconds if subsidy.bill_beyond_allowance else row.seconds - over
        amount = fen(Decimal(billed) * rate * factor / HOUR)
        if row.venue in ever_capped:  # a cap in some version: the month's payments count
            key = (row.venue, month_start(row.day))
            before = paid.get(key, Decimal(0))
            amount = capped(amount, version.venue_caps.get(row.venue), before)
            paid[key] = before + amount
        out.append(Priced(row, rate, factor, amount, over))
    return out


def rate_versions(subsidy: Subsidy, first: date, last: date) -> list[dict[str, Any]]:
    """The parameters block's record of which version priced which days of the period:
    one entry per version in force on some day of ``first..last``, in date order."""
    return [
        {
            "version": span.version.source,
            "effective": span.version.effective.isoformat() if span.version.effective else None,
            "from": span.first.isoformat(),
            "to": span.last.isoformat(),
            "days": span.days,
            "rates_yuan_per_hour": {
                k: str(span.version.rates.get(k, Decimal(0))) for k in sorted(VENUE_TYPES)
            },
            "venue_caps_yuan_per_month": {
                k: str(v) for k, v in sorted(span.version.venue_caps.items())
            },
            "operator_factors": {
                k: str(v) for k, v in sorted(span.version.operator_factors.items())
            },
        }
        for span in spans(subsidy.history(), first, last)
    ]


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Report:
    """Columns, rows and the parameters they were made with; formats only render this."""

    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    parameters: dict[str, Any]
    # not part of the figures (nor of their digest): how the XLSX is laid out, and the
    # signature over the canonical bytes (controller.services.reports.signature)
    presentation: Presentation | None = None
    signature: Signature | None = None


DETAIL_COLUMNS = (
    "date",
    "venue_id",
    "venue_name_zh",
    "venue_name_en",
    "venue_type",
    "venue_type_zh",
    "district",
    "operator_id",
    "operator_name",
    "sessions",
    "persons",
    "free_seconds",
    "free_hours",
    "beyond_allowance_seconds",
    "beyond_allowance_hours",
    "octets_in",
    "octets_out",
    "rate_yuan_per_hour",
    "operator_factor",
    "subsidy_yuan",
    "day_status",
)
ROLLUP_KEYS: Mapping[str, tuple[str, ...]] = {
    "venue_type": ("venue_type", "venue_type_zh"),
    "district": ("district",),
    "operator": ("operator_id", "operator_name"),
}
ROLLUP_TOTALS = (
    "venues",
    "sessions",
    "persons",
    "free_seconds",
    "free_hours",
    "beyond_allowance_seconds",
    "beyond_allowance_hours",
    "octets_in",
    "octets_out",
    "subsidy_yuan",
    "open_days",
)


def _money(value: Decimal) -> str:
    return f"{fen(value):.2f}"


def _parameters(config: Config, req: ReportRequest, open_days: Sequence[date]) -> dict[str, Any]:
    s = config.subsidy
    return {
        "report": "subsidy",
        "method": METHOD,
        "from": req.first.isoformat(),
        "to": req.last.isoformat(),
        "group": req.group,
        "timezone": config.quota.timezone.key,
        "settle_hours": config.reports.settle_hours,
        "currency": "CNY",
        "rate_versions": rate_versions(s, req.first, req.last),
        "daily_allowance_seconds": config.quota.daily_seconds,
        "bill_beyond_allowance": s.bill_beyond_allowance,
        "open_days": [d.isoformat() for d in open_days],
    }


def priced_usage(
    reader: LedgerReader,
    config: Config,
    first: date,
    last: date,
    progress: Progress | None = None,
    steps: int = 0,
) -> list[Priced]:
    """Priced day x venue usage of ``first..last`` (reading from the month start for caps)."""
    days = days_between(month_start(first), last)
    usage: list[DayVenue] = []
    for i, day in enumerate(days):
        usage.extend(reader.day_venues(day))
        if progress:
            progress(i + 1, steps or len(days))
    return [p for p in price(usage, config.subsidy) if p.usage.day >= first]


def build(
    archive: Archive,
    config: Config,
    req: ReportRequest,
    now: float,
    progress: Progress | None = None,
) -> Report:
    """Compute the report (blocking: DuckDB); the same archive and query give the same rows."""
    reader = LedgerReader(archive, config, now)
    priced_days = len(days_between(month_start(req.first), req.last))
    months = sorted({month_start(d) for d in days_between(req.first, req.last)})
    steps = priced_days + (len(months) if req.group != "venue" else 0)
    priced = priced_usage(reader, config, req.first, req.last, progress, steps)
    open_days = [d for d in days_between(req.first, req.last) if reader.is_open(d)]
    params = _parameters(config, req, open_days)
    if req.group == "venue":
        rows = [_detail_row(config, p, reader.is_open(p.usage.day)) for p in priced]
        return Report(DETAIL_COLUMNS, rows, params, presentation(config, req.lang, now))
    rows = []
    for j, month in enumerate(months):
        first = max(month, req.first)
        last = min(req.last, next_month(month) - timedelta(days=1))
        persons = reader.persons(first, last, req.group)
        in_month = [p for p in priced if first <= p.usage.day <= last]
        open_count = sum(1 for d in open_days if first <= d <= last)
        rows.extend(
            _rollup_rows(config, req.group, month, first, last, in_month, persons, open_count)
        )
        if progress:
            progress(priced_days + j + 1, steps)
    columns = ("month", "period_from", "period_to", *ROLLUP_KEYS[req.group], *ROLLUP_TOTALS)
    return Report(columns, rows, params, presentation(config, req.lang, now))


def _venue_name(config: Config, venue: str, lang: str) -> str:
    v = config.venues.get(venue)
    return v.name.get(lang, venue) if v else venue


def _operator_name(config: Config, operator: str) -> str:
    op = config.operators.get(operator)
    return op.name.get("zh", operator) if op else operator


def _detail_row(config: Config, p: Priced, is_open: bool) -> dict[str, Any]:
    u = p.usage
    return {
        "date": u.day.isoformat(),
        "venue_id": u.venue,
        "venue_name_zh": _venue_name(config, u.venue, "zh"),
        "venue_name_en": _venue_name(config, u.venue, "en"),
        "venue_type": u.venue_type,
        "venue_type_zh": VENUE_TYPES.get(u.venue_type, {}).get("zh", u.venue_type),
        "district": u.district,
        "operator_id": u.operator,
        "operator_name": _operator_name(config, u.operator),
        "sessions": u.sessions,
        "persons": u.persons,
        "free_seconds": p.free_seconds,
        "free_hours": f"{hours(p.free_seconds):.2f}",
        "beyond_allowance_seconds": p.beyond,
        "beyond_allowance_hours": f"{hours(p.beyond):.2f}",
        "octets_in": u.octets_in,
        "octets_out": u.octets_out,
        "rate_yuan_per_hour": str(p.rate),
        "operator_factor": str(p.factor),
        "subsidy_yuan": _money(p.amount),
        "day_status": "open" if is_open else "closed",
    }


def _group_key(group: str, u: DayVenue) -> str:
    return str(getattr(u, group))


def _rollup_rows(
    config: Config,
    group: str,
    month: date,
    first: date,
    last: date,
    priced: Sequence[Priced],
    persons: Mapping[str, int],
    open_days: int,
) -> list[dict[str, Any]]:
    """One row per group value; a session spanning days counts once in the period."""
    sums: dict[str, list[Any]] = {}
    venues: dict[str, set[str]] = {}
    for p in priced:
        u = p.usage
        key = _group_key(group, u)
        acc = sums.setdefault(key, [0, 0, 0, 0, Decimal(0), 0])
        acc[0] += u.first_sessions + (u.sessions - u.first_sessions if u.day == first else 0)
        acc[1] += p.free_seconds
        acc[2] += u.octets_in
        acc[3] += u.octets_out
        acc[4] += p.amount
        acc[5] += p.beyond
        venues.setdefault(key, set()).add(u.venue)
    rows = []
    for key in sorted(sums):
        sessions, seconds, octets_in, octets_out, amount, beyond = sums[key]
        if group == "venue_type":
            names: dict[str, Any] = {
                "venue_type": key,
                "venue_type_zh": VENUE_TYPES.get(key, {}).get("zh", key),
            }
        elif group == "district":
            names = {"district": key}
        else:
            names = {"operator_id": key, "operator_name": _operator_name(config, key)}
        rows.append(
            {
                "month": month.strftime("%Y-%m"),
                "period_from": first.isoformat(),
                "period_to": last.isoformat(),
                **names,
                "venues": len(venues[key]),
                "sessions": sessions,
                "persons": persons.get(key, 0),
                "free_seconds": seconds,
                "free_hours": f"{hours(seconds):.2f}",
                "beyond_allowance_seconds": beyond,
                "beyond_allowance_hours": f"{hours(beyond):.2f}",
                "octets_in": octets_in,
                "octets_out": octets_out,
                "subsidy_yuan": _money(amount),
                "open_days": open_days,
            }
        )
    return rows
