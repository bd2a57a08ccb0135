"""Controller metrics that need Redis or the config: the city's online gauges, Redis
memory against its budget, config reloads. (Redis round trips are timed by the store
itself: ``controller.storage.metered.MeteredStore``.)

Open sessions (by venue type) and persons online are facts about the whole city, which no
process's own counters know (a worker sees a fraction of the NASes, an instance a fraction
of the workers). So they are counted from Redis, cheaply: every ``ONLINE_INTERVAL`` one
process (a sticky lead, ``SET NX PX`` renewed by its holder) walks the open-session index
``cw:idx:open`` with ZSCAN (members ``pid|sid``: persons are counted from the members
themselves), reads the venue type only of sessions it has not seen before (a session's
venue never changes; steady state is one HGET per new session) and writes a small JSON
summary to ``cw:stats:online``. Every process reads that one key each interval and sets
its gauges, so any worker of any instance exports the same city-wide value: aggregate
across instances with ``max``, never ``sum``. A scrape never touches Redis.

When each NAS last had accounting recorded is kept the same way, so that "this NAS
went silent" survives a restart (process counters start again at zero and cannot say
it): every recorded Start/Interim/Stop notes its client in a dict, and once a second a
process writes what it noted in one ``ZADD … GT`` to ``cw:stats:client_seen`` (at most
one write per second per process, whatever the packet rate); the gauge is read back
(``ZMSCORE``, configured clients only: bounded by the config) with the online count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from prometheus_client import Counter, Gauge

from controller.domain.state import AccountingResult, AccountingWrite
from controller.domain.venue_types import VENUE_TYPES
from controller.services.tasks import cancel_and_wait
from controller.storage import keys
from controller.storage.metered import PAGE, MeteredStore
from controller.storage.store import Store, StoreUnavailable

log = structlog.get_logger("citywifi.metrics")

SESSIONS_OPEN = Gauge(
    "citywifi_sessions_open",
    "Open sessions city-wide by venue type (from Redis; the same in every process: "
    "aggregate instances with max)",
    ["venue_type"],
    multiprocess_mode="livemostrecent",
)
PERSONS_ONLINE = Gauge(
    "citywifi_persons_online",
    "Distinct persons with an open session city-wide (from Redis; aggregate with max)",
    multiprocess_mode="livemostrecent",
)
ONLINE_COUNTED = Gauge(
    "citywifi_online_counted_timestamp_seconds",
    "When the online gauges were last counted from Redis (alert when it lags)",
    multiprocess_mode="livemax",
)
CONFIG_RELOADS = Counter(
    "citywifi_config_reloads_total",
    "SIGHUP config reloads by result: ok, refused (the old config is kept)",
    ["result"],
)
CONFIG_RELOAD_OK = Gauge(
    "citywifi_config_last_reload_successful",
    "1 while the last SIGHUP reload was applied (or none was tried), 0 after a refused one",
    multiprocess_mode="livemin",
)
CONFIG_RELOAD_OK.set(1)  # a process starts on a config it could load
CLIENT_LAST_SEEN = Gauge(
    "citywifi_radius_client_last_seen_timestamp_seconds",
    "When each RADIUS client (NAS) last had accounting recorded, city-wide (from Redis: "
    "survives restarts; aggregate instances with max)",
    ["client"],
    multiprocess_mode="livemax",
)


def reload_result(ok: bool) -> None:
    """Count a SIGHUP reload and keep the last one's outcome (the "refused" alert)."""
    CONFIG_RELOADS.labels("ok" if ok else "refused").inc()
    CONFIG_RELOAD_OK.set(1 if ok else 0)


ONLINE_INTERVAL: Final = 15.0  # seconds between counts (and between gauge updates)
SEEN_FLUSH: Final = 1.0  # seconds between a process's writes of the clients it heard
MAX_PAGES: Final = 100_000  # bounds a walk (ZSCAN may return members twice, never loops)
UNKNOWN: Final = "unknown"  # a session whose record has no venue type (expired, racing)


class OnlineStats:
    """Counts open sessions and persons online from Redis; see the module docstring."""

    def __init__(
        self,
        store: MeteredStore,
        *,
        interval: float = ONLINE_INTERVAL,
        clock: Callable[[], float] = time.time,
        clients: Callable[[], Iterable[str]] = tuple,  # the configured client ids, now
    ) -> None:
        self.store = store
        self.interval = interval
        self.clock = clock
        self.clients = clients
        self.token = secrets.token_hex(8)
        self._venue: dict[str, str] = {}  # ref -> venue type of sessions already seen
        self._heard: dict[str, int] = {}  # client id -> last accounting, not yet written
        self._task: asyncio.Task[None] | None = None
        self._seen_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._seen_task = asyncio.ensure_future(self._write_seen())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._seen_task)
        self._task = self._seen_task = None
        with contextlib.suppress(StoreUnavailable):
            await self.flush_seen()
        with contextlib.suppress(StoreUnavailable):
            await self.store.online_resign(self.token)  # another process counts at once

    def accounted(self, write: AccountingWrite, result: AccountingResult) -> None:
        """``AccountingObserver``: after a recorded Start/Interim/Stop: the NAS is alive."""
        self._heard[write.client_id] = int(self.clock())

    async def flush_seen(self) -> None:
        """Write the clients heard since the last flush (one ZADD); kept on failure."""
        if not self._heard:
            return
        batch, self._heard = self._heard, {}
        try:
            await self.store.client_seen_put(batch)
        except StoreUnavailable:
            for client, at in batch.items():
                self._heard[client] = max(at, self._heard.get(client, at))
            raise

    async def _write_seen(self) -> None:
        while True:
            await asyncio.sleep(SEEN_FLUSH)
            try:
                await self.flush_seen()
            except StoreUnavailable:
                pass  # kept; the next flush tries again (the request path logs outages)
            except Exception:
                log.exception("metrics.client_seen_failed")

    async def refresh_seen(self) -> dict[str, float]:
        """Set the last-seen gauge of every configured client Redis has a time for."""
        clients = sorted(set(self.clients()))
        seen = {
            client: at
            for client, at in zip(clients, await self.store.client_seen_get(clients), strict=True)
            if at is not None
        }
        for client, at in seen.items():
            CLIENT_LAST_SEEN.labels(client).set(at)
        return seen

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except StoreUnavailable as exc:
                log.warning("metrics.online_unavailable", error=str(exc))
            except Exception:
                log.exception("metrics.online_failed")
            await asyncio.sleep(self.interval)

    async def refresh(self, *, lead: bool = False) -> dict[str, Any] | None:
        """Count now if this process leads (or ``lead``), then set the gauges from the
        latest summary in Redis. Returns that summary (None: nobody has counted yet)."""
        ttl_ms = int(self.interval * 3 * 1000)
        if lead or await self.store.online_lead(self.token, ttl_ms):
            summary = await self.count()
            await self.store.online_put(json.dumps(summary), max(60, int(self.interval * 10)))
        await self.refresh_seen()
        raw = await self.store.online_get()
        if raw is None:
            return None
        summary = json.loads(raw)
        sessions = summary.get("sessions", {})
        for venue_type in (*VENUE_TYPES, UNKNOWN):
            SESSIONS_OPEN.labels(venue_type).set(int(sessions.get(venue_type, 0)))
        PERSONS_ONLINE.set(int(summary.get("persons", 0)))
        ONLINE_COUNTED.set(float(summary.get("at", 0)))
        return dict(summary)

    async def count(self) -> dict[str, Any]:
        """Walk the open-session index; look up venue types of new sessions only."""
        refs: set[str] = set()
        cursor = 0
        for _ in range(MAX_PAGES):
            page = await self.store.open_page(cursor)
            refs.update(page.refs)
            cursor = page.cursor
            if cursor == 0:
                break
        known = {ref: self._venue[ref] for ref in refs if ref in self._venue}
        new = [ref for ref in refs if ref not in known]
        unknown = 0  # no record (yet, or expired): looked up again next time
        for i in range(0, len(new), PAGE):
            chunk = new[i : i + PAGE]
            for ref, venue_type in zip(chunk, await self.store.venue_types(chunk), strict=True):
                if venue_type is None:
                    unknown += 1
                else:
                    known[ref] = venue_type
        self._venue = known  # forgets closed sessions
        by_type = Tally(known.values())
        if unknown:
            by_type[UNKNOWN] = unknown
        persons = len({keys.parse_session_ref(ref)[0] for ref in refs})
        return {"at": int(self.clock()), "persons": persons, "sessions": dict(by_type)}


# -- Redis memory: the budget and how full it is (the portal sheds load near it) --------

REDIS_MEMORY_USED = Gauge(
    "citywifi_redis_memory_used_bytes",
    "Redis used_memory from INFO memory (on a cluster: of the fullest primary)",
    multiprocess_mode="livemostrecent",
)
REDIS_MEMORY_MAX = Gauge(
    "citywifi_redis_memory_max_bytes",
    "Redis maxmemory (redis.maxmemory for the embedded server; 0: no limit set)",
    multiprocess_mode="livemostrecent",
)
MEMORY_INTERVAL: Final = 5.0  # seconds between INFO memory polls (one command each)


@dataclass(frozen=True, slots=True)
class RedisMemory:
    """One ``INFO memory`` reading: what counts toward ``maxmemory`` and the limit."""

    used: int  # used_memory
    counted: int  # used_memory - mem_not_counted_for_evict: what Redis compares
    limit: int  # maxmemory; 0: none

    @property
    def share(self) -> float:
        return self.counted / self.limit if self.limit > 0 else 0.0


def memory_of(info: Mapping[str, Any]) -> RedisMemory:
    """The reading of one server's ``INFO memory``, or of the fullest node of a cluster's
    (redis-py answers a cluster with ``{node: info}``)."""
    nodes = [v for v in info.values() if isinstance(v, Mapping)]
    if nodes and "used_memory" not in info:
        readings = [memory_of(node) for node in nodes]
        return max(readings, key=lambda r: (r.share, r.used))
    used = int(info.get("used_memory", 0))
    counted = max(0, used - int(info.get("mem_not_counted_for_evict", 0)))
    return RedisMemory(used=used, counted=counted, limit=int(info.get("maxmemory", 0)))


class MemoryWatch:
    """Polls ``INFO memory`` every ``interval`` and keeps the latest reading (for
    ``controller.web.app``'s load shedding, which must not cost a Redis call per request);
    sets the two gauges. A failed poll keeps the last reading."""

    def __init__(self, store: Store, *, interval: float = MEMORY_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self.latest: RedisMemory | None = None
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> RedisMemory:
        reading = memory_of(await self.store.memory_info())
        self.latest = reading
        REDIS_MEMORY_USED.set(reading.used)
        REDIS_MEMORY_MAX.set(reading.limit)
        return reading

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except StoreUnavailable as exc:
                log.warning("metrics.memory_unavailable", error=str(exc))
            except Exception:
                log.exception("metrics.memory_failed")
            await asyncio.sleep(self.interval)
