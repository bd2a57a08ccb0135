"""What the NAS health counters cost (issue 17): the tally's increment on the request
path, one flush of N active NAS to a real redis-server (the worker's CPU and the wall
time), the read behind the NAS page, and the Redis memory of one NAS's rings after a
simulated day. Prints figures; asserts nothing.

    .venv/bin/python -m bench.nas_stats_bench [--clients 10 100 500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
from pathlib import Path

import redis.asyncio as aioredis

from bench.stack import RedisServer
from controller.domain.nas_health import delta_of
from controller.storage.nas_stats import NasStatsStore
from controller.storage.store import Store
from radius.tally import Tally

FIELDS = ("auth:accept", "auth:reject", "reject:bad_password", "acct:ok", "drop:overload")


def tally_cost() -> None:
    t = Tally()
    for what, stmt in (
        ("sent (acct ok)", lambda: t.sent("nas-1", "acct", 5, "ok")),
        ("sent (auth reject)", lambda: t.sent("nas-1", "auth", 3, "bad_password")),
        ("dropped", lambda: t.dropped("nas-1", "overload")),
    ):
        n = 200_000
        best = min(timeit.repeat(stmt, number=n, repeat=5)) / n
        print(f"tally.{what}: {best * 1e9:.0f} ns")


async def flush_cost(url: str, sizes: list[int]) -> None:
    store = Store(aioredis.Redis.from_url(url))
    await store.load_scripts()
    db = NasStatsStore(store)
    for n in sizes:
        ops = {f"nas-{i}": f"op-{i % 5}" for i in range(n)}
        counts = {(c, f): 3 for c in ops for f in FIELDS}
        now = int(time.time())
        delta = delta_of(counts, set(ops), ops, now)
        runs = 10
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(runs):
            await db.write(delta)
        wall_ms = (time.perf_counter() - wall) / runs * 1000
        cpu_ms = (time.process_time() - cpu) / runs * 1000
        t0 = time.perf_counter()
        await db.clients(sorted(ops), now // 60 - 1)
        read_ms = (time.perf_counter() - t0) * 1000
        print(
            f"{n} NAS active in one second x {len(FIELDS)} fields: flush {wall_ms:.1f} ms wall, "
            f"{cpu_ms:.1f} ms worker CPU; the NAS page's read {read_ms:.1f} ms"
        )
    # one NAS for a day, a flush a minute: what its rings hold at the end
    start = int(time.time()) // 86400 * 86400
    for m in range(1440):
        counts = {("day", f): 5 for f in FIELDS}
        await db.write(delta_of(counts, {"day"}, {"day": ""}, start + m * 60))
    size: dict[str, list[int]] = {"t": [], "m": [], "b": []}
    async for key in store.redis.scan_iter(match="cw:stats:{nas:day}*"):
        part = key.decode().split(":")[-2] if key.count(b":") > 3 else "t"
        size[part].append(int(await store.redis.memory_usage(key) or 0))
    hour = max(size["m"], default=0)
    steady = sum(size["t"]) + 3 * hour + 2 * sum(size["b"])  # 3 hours of minutes, 2 days
    print(
        f"one NAS, a day of flushes: totals {sum(size['t'])} B, an hour of minutes {hour} B, "
        f"a day of 30-minute bins {sum(size['b'])} B; kept at once about {steady / 1024:.0f} kB"
    )
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 500])
    args = parser.parse_args()
    tally_cost()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as redis_server:
        asyncio.run(flush_cost(redis_server.url, args.clients))


if __name__ == "__main__":
    main()
