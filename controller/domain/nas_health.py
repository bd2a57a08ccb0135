"""The rules of the NAS health figures (issue 17): how one second's counts
(``radius.tally.Counted``) become the increments written to Redis, and how the figures
read back become what the console shows. Pure: time is an argument.

Redis holds, per configured client and per scope (``city``; ``op:<operator id>``, the
sum of that operator's clients), a hash of totals (the tally's field names, see
``radius.tally``) and two rings: per minute (fields ``<epoch minute>|<series>``, one
hash per hour, kept three hours) and per ``BIN`` minutes (``<bin>|<series>``, one hash
per UTC day, kept two days), where a series is one of ``SERIES``. (A day of minutes
would cost some 400 kB per NAS; the two rings together about 60 kB.) The totals feed
``/metrics`` and the counters tables; the minute ring the rates ("requests/s over the
last minute", "logins per minute") and a NAS's recent minutes, read field by field
(HMGET); the bin ring the day chart, 48 bins a day, small enough to read whole on every
poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

CITY: Final = "city"
SERIES: Final = ("req", "accept", "reject", "drop", "dis_ok", "dis_fail", "sms_ok", "sms_failed")
MINUTES_KEPT: Final = 3 * 3600  # seconds an hour's minute hash lives (the last 60 min readable)
BINS_KEPT: Final = 2 * 86400  # seconds a day's 30-minute hash lives (yesterday stays readable)
SILENT_AFTER: Final = 15 * 60  # seconds without any request: "silent" (two missed interims)
BIN: Final = 30  # minutes per bin of the day chart's ring (1440 is a multiple: a bin is in one day)


def operator_scope(operator: str) -> str:
    return f"op:{operator}"


def series_of(name: str) -> tuple[str, ...]:
    """The per-minute series a total's field also counts toward."""
    kind, _, what = name.partition(":")
    if kind in ("auth", "acct"):
        if name == "auth:accept":
            return ("req", "accept")
        if name == "auth:reject":
            return ("req", "reject")
        return ("req",)
    if kind == "drop":
        return ("drop",)
    if kind == "dis":
        return ("dis_ok",) if what == "ack" else ("dis_fail",)
    if kind == "sms":
        return ("sms_ok",) if what == "ok" else ("sms_failed",)
    return ()


@dataclass(frozen=True, slots=True)
class StatsDelta:
    """One flush: field increments per client and per scope, the minute they fall in,
    and when each client was last heard (epoch seconds)."""

    minute: int  # epoch minute (epoch // 60)
    clients: dict[str, dict[str, int]] = field(default_factory=dict)
    scopes: dict[str, dict[str, int]] = field(default_factory=dict)
    heard: dict[str, int] = field(default_factory=dict)


def _add(to: dict[str, dict[str, int]], target: str, name: str, n: int) -> None:
    row = to.setdefault(target, {})
    row[name] = row.get(name, 0) + n


def delta_of(
    counts: Mapping[tuple[str | None, str], int],
    heard: Iterable[str],
    operator_of: Mapping[str, str],
    now: int,
) -> StatsDelta:
    """The increments of one flush. ``operator_of``: configured client id -> its venue's
    operator ("" for none). A client not configured (any more) counts toward the city
    only, so the per-client keys and the ``/metrics`` labels stay bounded by the config."""
    delta = StatsDelta(minute=now // 60)
    for (client, name), n in counts.items():
        if not n:
            continue
        _add(delta.scopes, CITY, name, n)
        if client is not None and client in operator_of:
            _add(delta.clients, client, name, n)
            if operator_of[client]:
                _add(delta.scopes, operator_scope(operator_of[client]), name, n)
    for client in heard:
        if client in operator_of:
            delta.heard[client] = now
    return delta


def minute_fields(row: Mapping[str, int], minute: int) -> dict[str, int]:
    """A target's increments as fields of its minute ring (``<minute>|<series>``)."""
    out: dict[str, int] = {}
    for name, n in row.items():
        for s in series_of(name):
            f = f"{minute}|{s}"
            out[f] = out.get(f, 0) + n
    return out


def bin_fields(row: Mapping[str, int], minute: int) -> dict[str, int]:
    """A target's increments as fields of its day-chart ring (``<bin>|<series>``, the bin
    being ``minute // BIN``)."""
    return minute_fields(row, minute // BIN)


def by_minute(fields: Mapping[str, int]) -> dict[int, dict[str, int]]:
    """A ring's fields read back: epoch minute (or bin) -> series -> count."""
    out: dict[int, dict[str, int]] = {}
    for f, n in fields.items():
        minute, _, series = f.partition("|")
        if minute.isdigit() and series:
            out.setdefault(int(minute), {})[series] = n
    return out


def prefixed(totals: Mapping[str, int], prefix: str) -> dict[str, int]:
    """``{"drop:overload": 3, ...}`` with prefix "drop" -> ``{"overload": 3}``."""
    head = prefix + ":"
    return {k[len(head) :]: n for k, n in sorted(totals.items()) if k.startswith(head) and n}


def ratio(ok: int, total: int) -> float | None:
    return ok / total if total else None


@dataclass(frozen=True, slots=True)
class NasHealth:
    """One configured client as the NAS health page shows it."""

    client: str
    venue: str
    operator: str
    last_request: int | None  # epoch of the last request seen (auth or acct); None: never
    silent_for: int | None  # seconds without a request, once over SILENT_AFTER or never
    per_second: float  # requests answered per second over the last full minute
    requests: dict[str, int]  # "auth:accept" ... -> total
    drops: dict[str, int]  # reason -> total
    disconnects: dict[str, int]  # ack | nak | timeout -> total
    open_sessions: int

    @property
    def never(self) -> bool:
        return self.last_request is None

    @property
    def disconnect_ratio(self) -> float | None:
        """Disconnects acknowledged / Disconnects sent (None: none sent)."""
        return ratio(self.disconnects.get("ack", 0), sum(self.disconnects.values()))


def silence(last_request: int | None, now: int, after: int = SILENT_AFTER) -> int | None:
    """Seconds a NAS has been silent when that is over ``after``; for one never heard
    from, 0 (silent, since unknown). None: it is talking."""
    if last_request is None:
        return 0
    gap = now - last_request
    return gap if gap > after else None


def health(
    client: str,
    venue: str,
    operator: str,
    totals: Mapping[str, int],
    last_minute: Mapping[str, int],
    last_request: int | None,
    open_sessions: int,
    now: int,
) -> NasHealth:
    return NasHealth(
        client=client,
        venue=venue,
        operator=operator,
        last_request=last_request,
        silent_for=silence(last_request, now),
        per_second=round(last_minute.get("req", 0) / 60, 2),
        requests={k: n for k, n in sorted(totals.items()) if k.split(":")[0] in ("auth", "acct")},
        drops=prefixed(totals, "drop"),
        disconnects=prefixed(totals, "dis"),
        open_sessions=open_sessions,
    )


def day_bins(bins: Mapping[int, Mapping[str, int]], now: int, series: str) -> list[tuple[int, int]]:
    """The last 24 hours of one series from the bin ring: (epoch minute the bin starts,
    count), oldest first; the last bin is the current one."""
    last = now // 60 // BIN
    return [
        (b * BIN, bins.get(b, {}).get(series, 0)) for b in range(last - 1440 // BIN + 1, last + 1)
    ]
