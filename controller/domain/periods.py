"""Dates, instants and day ranges as every API and command takes them: one parser, one
set of bounds.

Everything a caller gives as a date goes through here: the reports' and the audit
export's ``from``/``to``, an admin block's ``until``, and the same options of the
commands. The accepted forms are deliberately narrow (ISO 8601's extended calendar
forms, not everything ``fromisoformat`` takes, such as week dates or ``YYYYMMDD``):

- a day: ``YYYY-MM-DD``;
- an instant: ``YYYY-MM-DDTHH:MM[:SS[.ffffff]]`` with an optional ``Z`` or ``±HH:MM``
  offset (local time of the configured zone without one).

A day must lie in ``FIRST_DAY..LAST_DAY``. The bounds are arithmetic, not policy: inside
them "the day after", "the first day of the next month", a UTC offset of up to a day
and the epoch seconds of any of these exist (Python's dates stop at years 1 and 9999,
so ``0001-01-01`` in UTC+8 or the month after ``9999-12`` raise instead). Anything outside
is a ``PeriodError`` with a stable code and a message naming the parameter, which the
HTTP edge answers with 400 and the commands with exit 2: never a 500.

Pure: no I/O; the zone is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from controller.domain.quota import day_start

FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(9998, 12, 31)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?"
)


class PeriodError(ValueError):
    """A date the caller must fix; ``code`` is the stable error code of the JSON answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Period:
    """Whole local days ``first..last`` (both included)."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _bounded(day: date, name: str, text: str, code: str) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise PeriodError(
            code,
            f"'{name}': {text} is outside the supported dates "
            f"{FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}",
        )
    return day


def parse_day(text: str | None, name: str, *, code: str = "bad_date") -> date:
    """``YYYY-MM-DD`` within the bounds."""
    if not text:
        raise PeriodError("missing_parameter", f"'{name}' is required (YYYY-MM-DD)")
    value = text.strip()
    try:
        if not _DAY.fullmatch(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise PeriodError(code, f"'{name}' must be a date as YYYY-MM-DD, got '{text}'") from None
    return _bounded(day, name, value, code)


def parse_instant(
    text: str | None, tz: ZoneInfo, *, name: str, end: bool = False, code: str = "bad_date"
) -> int:
    """Epoch seconds of a day's local midnight (``end``: of the day after, so that a day
    given as the end of a range includes that day) or of a date-time."""
    if not text:
        raise PeriodError("missing_parameter", f"'{name}' is required (YYYY-MM-DD or date-time)")
    value = text.strip()
    if _DAY.fullmatch(value):
        day = parse_day(value, name, code=code)
        return day_start(day + timedelta(days=1) if end else day, tz)
    try:
        if not _INSTANT.fullmatch(value):
            raise ValueError
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PeriodError(
            code,
            f"'{name}': '{text}' is not a date (YYYY-MM-DD) or date-time "
            "(YYYY-MM-DDTHH:MM[:SS][+08:00])",
        ) from None
    _bounded(moment.date(), name, value, code)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return int(moment.timestamp())


def parse_period(first: str | None, last: str | None, *, longest: int, hint: str) -> Period:
    """``from``/``to`` days of a report: ordered, at most ``longest`` days (``hint`` names
    the setting that says so)."""
    a = parse_day(first, "from")
    b = parse_day(last, "to")
    if b < a:
        raise PeriodError("reversed_range", f"'to' ({b}) is before 'from' ({a})")
    period = Period(a, b)
    if period.days > longest:
        raise PeriodError(
            "range_too_long",
            f"{period.days} days asked; at most {longest} days per report ({hint})",
        )
    return period


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    """The first day of the month after ``day``'s (exists for every bounded day)."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


_MONTH = re.compile(r"\d{4}-\d{2}")


def month_period(day: date) -> Period:
    """The calendar month of ``day``: its first to its last day (not a rolling 30 days)."""
    first = month_start(day)
    return Period(first, next_month(first) - timedelta(days=1))


def parse_month(text: str | None, name: str = "month") -> Period:
    """``YYYY-MM`` within the bounds: that calendar month."""
    value = (text or "").strip()
    try:
        if not _MONTH.fullmatch(value):
            raise ValueError
        first = date(int(value[:4]), int(value[5:]), 1)
    except ValueError:
        raise PeriodError(
            "bad_month", f"'{name}' must be a month as YYYY-MM, got '{text}'"
        ) from None
    _bounded(first, name, value, "bad_month")
    return month_period(first)


def choose_period(
    month: str | None,
    first: str | None,
    last: str | None,
    *,
    today: date,
    longest: int,
    hint: str,
) -> Period:
    """The period a page asks for: a calendar ``month`` (``YYYY-MM``), or a ``from``/``to``
    range of at most ``longest`` days, or (neither given) the month of ``today``; giving
    both is an error, not a guess."""
    ranged = bool(first) or bool(last)
    if month and ranged:
        raise PeriodError("ambiguous_period", "give either 'month' or 'from' and 'to', not both")
    if ranged:
        return parse_period(first, last, longest=longest, hint=hint)
    period = parse_month(month) if month else month_period(today)
    if period.days > longest:
        raise PeriodError(
            "range_too_long", f"a month has {period.days} days; at most {longest} ({hint})"
        )
    return period
