"""The store, metered: each Redis round trip timed and each outage counted (``/metrics``),
plus the few reads and writes of the city-wide online count.

Redis latency and errors are measured at the store's two boundaries, by a subclass:
``Store._hot`` (the RADIUS path's units, batched per loop tick: the time includes the wait
for the tick's batch, which is what a request waits) named by their first command's Lua
script or command, and ``Store._guard`` (everything else) named by the ``Store`` method.
The online count itself is ``controller.services.metrics.OnlineStats``.

The round trips are counted in plain lists (``RedisSeconds``), not with
``Histogram.observe`` per call: in a worker of ``serve --workers N`` (multi-process
prometheus) an observe costs ~2.8 µs (its bucket values are memory-mapped files), a
list bucket ~0.2 µs, and every accounting answer times at least one round trip. What
was counted is added to the histogram when the registry is scraped and at each
``radius.tally.TALLY.take`` (once a second, ``controller.services.nas_stats``), the
same points at which the RADIUS shell's compiled counters fold (``radius.metrics``):
a multi-process scrape lags another worker by at most ~1 s.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.metrics_core import Metric

from controller.domain.state import OpenPage
from controller.storage import keys
from controller.storage.redis_batch import Command
from controller.storage.replies import as_text
from controller.storage.store import Store, StoreUnavailable
from radius.metrics import add_observed, foldable
from radius.tally import TALLY, Tally

T = TypeVar("T")


REDIS_SECONDS = Histogram(
    "citywifi_redis_seconds",
    "Redis round trips of the store (the command or pipeline, NOSCRIPT reload included), "
    "by store operation",
    ["op"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=None,  # registered through RedisSeconds, which folds before it is collected
)


class RedisSeconds:
    """``REDIS_SECONDS`` counted per op in a list of the histogram's buckets (not
    cumulative) plus the sum, and added to the histogram at ``fold``: a collector of the
    registry (a scrape folds first) and a fold of the tally (every ``take``). One per
    process, shared by every store in it (one event loop's thread moves them)."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.bounds: tuple[float, ...] = tuple(histogram._upper_bounds)  # +Inf last
        self.cells: dict[str, list[float]] = {}  # op -> per-bucket counts, then the sum
        self.direct: bool | None = None  # this prometheus_client cannot take a fold

    def timer(self, name: str) -> list[float] | Histogram:
        """What ``observe`` is handed for ``name``: its list of cells, or (where the
        histogram cannot be folded into) its child. The child is made now in either
        case, so that a scrape lists the op from its first use, as before."""
        child = self.histogram.labels(name)
        if self.direct is None:
            self.direct = not foldable(child)
        if self.direct:
            return child
        cell = self.cells.get(name)
        if cell is None:
            cell = self.cells[name] = [0.0] * (len(self.bounds) + 1)
        return cell

    def observe(self, timer: list[float] | Histogram, seconds: float) -> None:
        """``Histogram.observe``: the first bucket whose bound is >= ``seconds``."""
        if type(timer) is list:
            timer[bisect_left(self.bounds, seconds)] += 1
            timer[-1] += seconds
        else:
            timer.observe(seconds)  # type: ignore[union-attr]

    def fold(self, tally: Tally | None = None) -> None:
        """Add what was counted since the last fold to the histogram's children."""
        for name, cell in self.cells.items():
            if not any(cell):
                continue
            counts, total = cell[:-1], cell[-1]
            cell[:] = [0.0] * len(cell)
            add_observed(self.histogram.labels(name), counts, total)

    def describe(self) -> Iterator[Metric]:
        yield from self.histogram.describe()

    def collect(self) -> Iterator[Metric]:
        self.fold()
        yield from self.histogram.collect()


REDIS_TIMES: Final = RedisSeconds(REDIS_SECONDS)
REGISTRY.register(REDIS_TIMES)
TALLY.folds.append(REDIS_TIMES.fold)


REDIS_ERRORS = Counter(
    "citywifi_redis_errors_total",
    "Store operations Redis did not acknowledge (connection, timeout, loading, read-only, "
    "cluster down), by store operation and error class",
    ["op", "error"],
)


ONLINE_KEY: Final = f"{keys.PREFIX}:stats:online"  # JSON summary of the last count


ONLINE_LEAD: Final = f"{keys.PREFIX}:stats:online:lead"  # token of the counting process


CLIENT_SEEN_KEY: Final = f"{keys.PREFIX}:stats:client_seen"  # zset: client id -> epoch s


PAGE: Final = 1000  # ZSCAN COUNT and HGETs per pipeline


def _error_class(exc: StoreUnavailable) -> str:
    """The Redis error behind an outage, by class (bounded): ``ConnectionError``, …"""
    if exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    head = str(exc).split(":", 1)[0]  # "ConnectionError: …" when mapped from a reply
    return head if head.isidentifier() else "unknown"


def _op_name(op: Callable[[], Awaitable[Any]]) -> str:
    """``Store.account.<locals>.op`` -> ``account``: a bounded label (one per method)."""
    parts = getattr(op, "__qualname__", "").split(".")
    return parts[-3] if len(parts) >= 3 and parts[-2] == "<locals>" else "other"


class MeteredStore(Store):
    """The store with each Redis round trip timed and each outage counted, plus the few
    reads and writes of the online count."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        # op code / command -> (name, what REDIS_TIMES.observe takes)
        self._timers: dict[object, tuple[str, Any]] = {}
        self._script_names = {s.sha: s.name for s in self.scripts.values()}

    def _hot_timer(self, command: Command) -> tuple[str, Any]:
        verb = command[0] if command else ""  # the store writes commands in capitals
        key = command[1] if verb == "EVALSHA" else verb  # script sha or command name
        timer = self._timers.get(key)
        if timer is None:
            name = self._script_names.get(key, "script") if verb == "EVALSHA" else str(verb).lower()
            timer = self._timers[key] = (name, REDIS_TIMES.timer(name))
        return timer

    async def _hot(self, commands: list[Command]) -> list[Any]:
        timer = self._hot_timer(commands[0] if commands else ())
        t0 = time.perf_counter()
        try:
            return await super()._hot(commands)
        except StoreUnavailable as exc:
            REDIS_ERRORS.labels(timer[0], _error_class(exc)).inc()
            raise
        finally:
            REDIS_TIMES.observe(timer[1], time.perf_counter() - t0)

    def _submit(
        self, unit: list[Command], replied: Callable[[asyncio.Future[list[Any]]], None]
    ) -> None:
        # the callback path (account_soon) timed and its outages counted as _hot's are:
        # the one citywifi_redis_seconds{op} family whichever path a request took; in
        # the reply's one callback (a second one would be a second loop handle per unit)
        timer = self._hot_timer(unit[0] if unit else ())
        t0 = time.perf_counter()

        def done(sent: asyncio.Future[list[Any]]) -> None:
            REDIS_TIMES.observe(timer[1], time.perf_counter() - t0)
            if not sent.cancelled() and (exc := sent.exception()) is not None:
                REDIS_ERRORS.labels(timer[0], type(exc).__name__).inc()
            replied(sent)

        super()._submit(unit, done)

    async def _guard(self, op: Callable[[], Awaitable[T]]) -> T:
        code = getattr(op, "__code__", op)
        timer = self._timers.get(code)
        if timer is None:
            name = _op_name(op)
            timer = self._timers[code] = (name, REDIS_TIMES.timer(name))
        t0 = time.perf_counter()
        try:
            return await super()._guard(op)
        except StoreUnavailable as exc:
            REDIS_ERRORS.labels(timer[0], _error_class(exc)).inc()
            raise
        finally:
            REDIS_TIMES.observe(timer[1], time.perf_counter() - t0)

    # -- the online count (controller.services.metrics.OnlineStats) --------------------------

    async def online_lead(self, token: str, ttl_ms: int) -> bool:
        """Take or keep the counting lead (two processes counting at once is harmless)."""

        async def op() -> bool:
            if await self.redis.set(ONLINE_LEAD, token, nx=True, px=ttl_ms):
                return True
            held = await self.redis.get(ONLINE_LEAD)
            if held is not None and as_text(held) == token:
                await self.redis.pexpire(ONLINE_LEAD, ttl_ms)
                return True
            return False

        return await self._guard(op)

    async def online_resign(self, token: str) -> None:
        async def op() -> None:
            held = await self.redis.get(ONLINE_LEAD)
            if held is not None and as_text(held) == token:
                await self.redis.delete(ONLINE_LEAD)

        await self._guard(op)

    async def open_page(self, cursor: int) -> OpenPage:
        """One ZSCAN page of the open-session index."""

        async def op() -> OpenPage:
            page: Any = await self.redis.zscan(keys.OPEN_INDEX, cursor, count=PAGE)
            return OpenPage(int(page[0]), [as_text(member) for member, _ in page[1]])

        return await self._guard(op)

    async def venue_types(self, refs: Sequence[str]) -> list[str | None]:
        """The venue type of each session (None: no record), in one unit on the batched
        link: through a redis-py pipeline the online count's lookups of new sessions
        cost a busy accounting worker 2.6 % of its loop (bench.run acct, py-spy)."""
        if not refs:
            return []
        unit: list[Command] = []
        for ref in refs:
            pid, sid = keys.parse_session_ref(ref)
            unit.append(("HGET", keys.session(pid, sid), "venue_type"))
        return [as_text(v) if v else None for v in await self._hot(unit)]

    async def online_put(self, summary: str, ttl: int) -> None:
        async def op() -> None:
            await self.redis.set(ONLINE_KEY, summary, ex=ttl)

        await self._guard(op)

    async def online_get(self) -> str | None:
        async def op() -> str | None:
            value = await self.redis.get(ONLINE_KEY)
            return as_text(value) if value else None

        return await self._guard(op)

    async def client_seen_put(self, seen: dict[str, int]) -> None:
        """Raise each client's last-seen time (GT: a slower process never lowers it)."""

        async def op() -> None:
            await self.redis.zadd(CLIENT_SEEN_KEY, dict(seen), gt=True)

        await self._guard(op)

    async def client_seen_get(self, clients: Sequence[str]) -> list[float | None]:
        async def op() -> list[float | None]:
            if not clients:
                return []
            scores: list[Any] = await self.redis.zmscore(CLIENT_SEEN_KEY, list(clients))
            return [None if v is None else float(v) for v in scores]

        return await self._guard(op)
