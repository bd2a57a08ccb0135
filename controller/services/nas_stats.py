"""NAS health counters (issue 17): what ``radius.tally.TALLY`` counted in this process,
written to Redis once a second, and read back for ``/metrics`` and the console.

``NasStats`` takes the tally every ``FLUSH`` second and writes it with one pipeline
(``controller.storage.nas_stats``): per configured client, per operator and for the
city; a failed write puts the batch back for the next. Every ``interval`` it reads the
totals of every configured client back from Redis and sets the ``citywifi_nas_*``
gauges, so every worker of every instance exports the same city-wide figures —
aggregate instances with ``max``, never ``sum`` — and they survive restarts. The
console reads the same keys (``nas_rows``, ``nas_detail``, ``scope_figures``): what it
shows and what Prometheus alerts on never disagree (beyond one refresh interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog
from prometheus_client import Gauge

from controller.config import Config
from controller.domain.nas_health import (
    CITY,
    NasHealth,
    day_bins,
    delta_of,
    health,
    operator_scope,
    prefixed,
)
from controller.services.tasks import cancel_and_wait
from controller.storage.nas_stats import NasStatsStore
from controller.storage.store import Store, StoreUnavailable
from radius.tally import TALLY, Tally

log = structlog.get_logger("citywifi.metrics")

# seconds between a process's writes of what it counted; in a worker of `serve --workers
# N` each take also folds the compiled RADIUS counters into its metric files, so the
# /metrics of any worker lags the others by this much at most (radius.metrics)
FLUSH: Final = 1.0
INTERVAL: Final = 5.0  # seconds between gauge refreshes from Redis

_FROM_REDIS = "city-wide, from Redis (survives restarts; aggregate instances with max)"
NAS_REQUESTS = Gauge(
    "citywifi_nas_requests_total",
    f"RADIUS requests answered per configured client, by port and result; {_FROM_REDIS}",
    ["client", "port", "result"],
    multiprocess_mode="livemostrecent",
)
NAS_REJECTS = Gauge(
    "citywifi_nas_rejects_total",
    f"Access-Rejects per configured client by reason; {_FROM_REDIS}",
    ["client", "reason"],
    multiprocess_mode="livemostrecent",
)
NAS_DROPS = Gauge(
    "citywifi_nas_dropped_total",
    f"RADIUS packets dropped per configured client by reason; {_FROM_REDIS}",
    ["client", "reason"],
    multiprocess_mode="livemostrecent",
)
NAS_DAE = Gauge(
    "citywifi_nas_dae_total",
    f"Disconnect (dis) and CoA (coa) results per configured client: ack, nak, timeout; "
    f"{_FROM_REDIS}",
    ["client", "kind", "result"],
    multiprocess_mode="livemostrecent",
)
NAS_LAST_REQUEST = Gauge(
    "citywifi_nas_last_request_timestamp_seconds",
    f"When each configured client last sent a request (auth or acct); {_FROM_REDIS}",
    ["client"],
    multiprocess_mode="livemax",
)
CITY_SMS = Gauge(
    "citywifi_city_sms_total",
    f"SMS codes handed to the SMS backend by result (ok, failed); {_FROM_REDIS}",
    ["result"],
    multiprocess_mode="livemostrecent",
)


def operators_of(config: Config) -> dict[str, str]:
    """Configured client id -> the operator of its venue ("" without one)."""
    out = {}
    for c in config.clients:
        venue = config.venues.get(c.venue) if c.venue else None
        out[c.id] = venue.operator if venue is not None else ""
    return out


class NasStats:
    """The flush and gauge loops; see the module docstring."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        *,
        clock: Callable[[], float] = time.time,
        tally: Tally = TALLY,
        interval: float = INTERVAL,
    ) -> None:
        self.db = NasStatsStore(store)
        self.config = config
        self.clock = clock
        self.tally = tally
        self.interval = interval
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self._every(FLUSH, self.flush, "metrics.nas_flush_failed")),
            asyncio.ensure_future(
                self._every(self.interval, self.refresh, "metrics.nas_refresh_failed")
            ),
        ]

    async def stop(self) -> None:
        """Stop the loops and flush once more: the controller stops this after its
        RADIUS endpoints drained, so this take holds their last counts (and, in a worker
        of ``serve --workers N``, folds them into its metric files)."""
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        with contextlib.suppress(StoreUnavailable):
            await self.flush()

    async def _every(self, seconds: float, work: Callable[[], object], event: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()  # type: ignore[misc]
            except StoreUnavailable:
                pass  # kept (flush) or tried again (refresh); the request path logs outages
            except Exception:
                log.exception(event)

    async def flush(self) -> None:
        """Write what the tally counted since the last flush (one pipeline)."""
        counted = self.tally.take()
        if not counted:
            return
        delta = delta_of(
            counted.counts, counted.heard, operators_of(self.config()), int(self.clock())
        )
        try:
            await self.db.write(delta)
        except StoreUnavailable:
            self.tally.give_back(counted)
            raise

    async def refresh(self) -> None:
        """Set the ``citywifi_nas_*`` gauges from Redis (configured clients only)."""
        clients = sorted(c.id for c in self.config().clients)
        totals = await self.db.client_totals(clients)
        heard = await self.db.heard(clients)
        (city,) = await self.db.totals([CITY])
        # no await from here on: a scrape sees the old figures or the new, and a client
        # removed by a reload loses its series (labels stay bounded by the config)
        for gauge in (NAS_REQUESTS, NAS_REJECTS, NAS_DROPS, NAS_DAE, NAS_LAST_REQUEST):
            gauge.clear()
        for client, row, at in zip(clients, totals, heard, strict=True):
            for name, n in row.items():
                kind, _, what = name.partition(":")
                if kind in ("auth", "acct"):
                    NAS_REQUESTS.labels(client, kind, what).set(n)
                elif kind == "reject":
                    NAS_REJECTS.labels(client, what).set(n)
                elif kind == "drop":
                    NAS_DROPS.labels(client, what).set(n)
                elif kind in ("dis", "coa"):
                    NAS_DAE.labels(client, kind, what).set(n)
            if at is not None:
                NAS_LAST_REQUEST.labels(client).set(at)
        for result in ("ok", "failed"):
            CITY_SMS.labels(result).set(city.get(f"sms:{result}", 0))


# -- what the console reads -------------------------------------------------------------


def scoped(config: Config, scope: frozenset[str] | None) -> list[tuple[str, str, str]]:
    """(client, venue, operator) of the configured clients a view shows: all, or those at
    the venues of the operators in ``scope``."""
    ops = operators_of(config)
    return sorted(
        (c.id, c.venue, ops[c.id]) for c in config.clients if scope is None or ops[c.id] in scope
    )


async def nas_rows(
    store: Store, config: Config, now: int, scope: frozenset[str] | None
) -> list[NasHealth]:
    """Every configured client of the view with its health (one pipeline)."""
    shown = scoped(config, scope)
    read = await NasStatsStore(store).clients([c for c, _, _ in shown], now // 60 - 1)
    return [
        health(client, venue, op, totals, minute, heard, open_, now)
        for (client, venue, op), (totals, minute, heard, open_) in zip(shown, read, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class NasDetail:
    health: NasHealth
    totals: dict[str, int]  # every counter of the client
    recent: list[tuple[int, dict[str, int]]]  # the last 60 minutes, newest first
    chart: list[tuple[int, int]]  # requests in 30-minute bins over 24 h


async def nas_detail(store: Store, config: Config, client: str, now: int) -> NasDetail | None:
    """One configured client in detail (None: not configured)."""
    shown = [row for row in scoped(config, None) if row[0] == client]
    if not shown:
        return None
    _, venue, op = shown[0]
    db = NasStatsStore(store)
    ((totals, minute, heard, open_),) = await db.clients([client], now // 60 - 1)
    minutes = range(now // 60, now // 60 - 60, -1)
    ring = await db.recent(client, minutes, client=True)
    recent = [(m, ring.get(m, {})) for m in minutes]
    return NasDetail(
        health=health(client, venue, op, totals, minute, heard, open_, now),
        totals=totals,
        recent=recent,
        chart=day_bins(await db.bins(client, now, client=True), now, "req"),
    )


@dataclass(frozen=True, slots=True)
class ScopeFigures:
    """The overview's counters of the city, or of the operators of a scope (summed)."""

    logins_per_minute: int  # Access-Accepts in the last full minute
    rejects: dict[str, int]  # reason -> total
    disconnects: dict[str, int]  # ack | nak | timeout -> total
    sms: dict[str, int] | None  # ok | failed -> total; None: not the city's view
    chart: dict[str, list[tuple[int, int]]]  # series -> 30-minute bins over 24 h


def _sum(rows: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for k, n in row.items():
            out[k] = out.get(k, 0) + n
    return out


async def scope_figures(store: Store, now: int, scope: frozenset[str] | None) -> ScopeFigures:
    names = [CITY] if scope is None else [operator_scope(op) for op in sorted(scope)]
    db = NasStatsStore(store)
    totals = _sum(await db.totals(names))
    last: dict[int, dict[str, int]] = {}
    bins: dict[int, dict[str, int]] = {}
    for name in names:
        for into, read in (
            (last, await db.recent(name, [now // 60 - 1], client=False)),
            (bins, await db.bins(name, now, client=False)),
        ):
            for m, row in read.items():
                cell = into.setdefault(m, {})
                for s, n in row.items():
                    cell[s] = cell.get(s, 0) + n
    return ScopeFigures(
        logins_per_minute=last.get(now // 60 - 1, {}).get("accept", 0),
        rejects=prefixed(totals, "reject"),
        disconnects=prefixed(totals, "dis"),
        sms=prefixed(totals, "sms") if scope is None else None,
        chart={s: day_bins(bins, now, s) for s in ("accept", "reject", "drop")},
    )
