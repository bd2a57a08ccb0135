"""Subsidy rates, caps and factors versioned by effective date, and which version prices
which day.

A version is in force from its ``effective`` day until the day before the next one's;
the first version (``[subsidy]``'s own keys) has no effective day: it is in force since
forever, until the first ``[[subsidy.versions]]``. Versions are kept in effective order
(``controller.config.loader`` refuses unordered, duplicate and gapped ones), so the days
of any period split into consecutive spans, one per version.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class RateVersion:
    """The subsidy parameters in force from ``effective`` (None: since forever)."""

    effective: date | None
    rates: Mapping[str, Decimal]  # venue type -> yuan per free user-hour
    venue_caps: Mapping[str, Decimal]  # venue -> yuan per calendar month
    operator_factors: Mapping[str, Decimal]  # operator -> factor (1 when not listed)
    source: str = "subsidy"  # where the config says it: "subsidy", "subsidy.versions[0]"


@dataclass(frozen=True, slots=True)
class VersionSpan:
    """The days ``first..last`` (both included) priced with ``version``."""

    version: RateVersion
    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def _starts(versions: Sequence[RateVersion]) -> list[date]:
    return [v.effective or date.min for v in versions]


def in_force(versions: Sequence[RateVersion], day: date) -> RateVersion:
    """The version that prices ``day``: the last one effective on or before it."""
    if not versions:
        raise ValueError("no subsidy version")
    i = bisect.bisect_right(_starts(versions), day) - 1
    return versions[max(i, 0)]


def spans(versions: Sequence[RateVersion], first: date, last: date) -> list[VersionSpan]:
    """The consecutive spans of ``first..last``, each with the version in force on it
    (empty for an empty period); their days add up to the period's."""
    out: list[VersionSpan] = []
    if last < first:
        return out
    starts = _starts(versions)
    day = first
    while day <= last:
        i = max(bisect.bisect_right(starts, day) - 1, 0)
        end = last
        if i + 1 < len(versions):
            end = min(last, starts[i + 1] - timedelta(days=1))
        out.append(VersionSpan(versions[i], day, end))
        day = end + timedelta(days=1)
    return out


def capped(amount: Decimal, cap: Decimal | None, paid: Decimal) -> Decimal:
    """What a day's ``amount`` keeps under a monthly ``cap`` (None: no cap) when ``paid``
    was already paid that month: all of it, or what is left of the cap (never below 0).
    With one cap all month this is ``min(C, A(d)) - min(C, A(d - 1))`` of the running sum
    ``A``; a cap changed mid-month limits the days from its version on."""
    if cap is None:
        return amount
    return max(Decimal(0), min(amount, cap - paid))
