"""CPU per record of the archiver: the outbox drained into Parquet (issue 16 item 3).

Seeds a real redis-server (AOF, fsync every second, as production) with login results
(``k=login``, as ``RadiusService`` queues one per Access-Request) and closed sessions
(``k=close`` with their session record, as a Stop queues), then runs ``Archiver.drain``
in this process and reports the process CPU time (all threads: the writer thread and
DuckDB's included, ``time.process_time``) per outbox entry, the wall time, and the
rows archived. Redis's own CPU is given apart (from /proc).

    .venv/bin/python -m bench.archive_bench --logins 50000 --closes 10000
    .venv/bin/python -m bench.archive_bench --logins 50000 --profile archive.prof

``--steady RATE`` measures the loop as ``serve`` runs it instead: a feeder process adds
RATE entries a second (4 logins : 1 close) for ``--seconds``, while ``Archiver.start()``'s
loop archives them (each ``--gather`` value in turn, on its own redis-server); CPU per
record is this process's CPU from the loop's start to its stop (the last drain), over
the records fed. The fixed cost of a round (a COPY and its fsyncs per kind and day) is
what ``gather`` spreads:

    .venv/bin/python -m bench.archive_bench --steady 2000 --seconds 20 --gather 1,5

``--profile`` runs the drain under cProfile (main thread only) and writes the stats.
``--stalls`` also runs a 1 ms ticker on the loop during the drain and reports the
longest and the 99th-percentile gap between its ticks beyond the 1 ms (what a RADIUS
request arriving then would have waited); it costs the loop's thread a little CPU,
so CPU figures are compared without it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench.stack import ROOT, RedisServer, cpu_seconds
from controller.config import load_config
from controller.services.archiver import Archiver
from controller.storage import keys
from controller.storage.archive import Archive
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store

NOW = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai


async def seed(
    store: Store, logins: int, closes: int, persons: int, first: int = 0, profiles: bool = True
) -> None:
    """``logins`` login entries and ``closes`` closed sessions (numbered from ``first``)
    into the outbox; the ``persons`` profiles too unless ``profiles`` is false."""
    r = store.redis
    pipe = r.pipeline(transaction=False)
    for i in range(persons if profiles else 0):
        pipe.hset(keys.profile(f"{i:020x}"), "phone", f"+86138{i:08d}")
    await pipe.execute()
    step = 2000
    for lo in range(first, first + logins, step):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(first + logins, lo + step)):
            pipe.xadd(
                keys.OUTBOX,
                {
                    "k": "login",
                    "t": str(NOW + i // 100),
                    "pid": f"{i % persons:020x}",
                    "mac": "AA-BB-CC-DD-EE-01",
                    "client": "nas",
                    "nas_id": "ap-1",
                    "nas_ip": "10.0.0.1",
                    "ap": "AA-BB-CC-00-00-01:CityWiFi",
                    "venue": "v1",
                    "result": "accept",
                },
            )
        await pipe.execute()
    for lo in range(first, first + closes, step):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(first + closes, lo + step)):
            pid, sid = f"{i % persons:020x}", f"nas/s{i}"
            start = NOW - 3600
            pipe.hset(
                keys.session(pid, sid),
                mapping={
                    "pid": pid,
                    "known": "1",
                    "client": "nas",
                    "acct_session_id": f"s{i}",
                    "mac": "AA-BB-CC-DD-EE-02",
                    "ip": "10.1.0.2",
                    "nas_ip": "10.0.0.1",
                    "nas_id": "ap-1",
                    "venue": "v1",
                    "start": start,
                    "seen": 3600,
                    "last": NOW,
                    "closed": NOW,
                    "cause": "1",
                    "shut": "stop",
                    "in": 1000,
                    "out": 2000,
                    "d:20261125": 3600,
                },
            )
            pipe.xadd(keys.OUTBOX, {"k": "close", "ref": keys.session_ref(pid, sid)})
        await pipe.execute()


async def run(o: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="cw-archive-bench-"))
    try:
        return await _run(o, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(o: argparse.Namespace, work: Path) -> dict[str, float]:
    with RedisServer(work / "redis") as redis_server:
        base = load_config(ROOT / "deploy" / "citywifi.example.toml")
        config = replace(base, quota=replace(base.quota))
        store = Store(client_from_url(redis_server.url))
        await store.load_scripts()
        await seed(store, o.logins, o.closes, o.persons)
        archive = Archive(work / "archive")
        archiver = Archiver(store, archive, lambda: config, clock=lambda: NOW + 60.0)
        total = o.logins + o.closes
        redis_before = cpu_seconds([redis_server.pid])
        cpu0, wall0, main0 = time.process_time(), time.perf_counter(), time.thread_time()
        if o.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        gaps: list[float] = []
        ticker = asyncio.ensure_future(_tick(gaps)) if o.stalls else None
        handled = await archiver.drain()
        if ticker is not None:
            ticker.cancel()
        if o.profile:
            profiler.disable()
            profiler.dump_stats(o.profile)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        main = time.thread_time() - main0  # the event loop's thread alone
        redis_cpu = cpu_seconds([redis_server.pid]) - redis_before
        left = await store.outbox_backlog()
        rows = archive.query(
            "SELECT count(*) FROM read_parquet(?)", [str(work / "archive" / "audit" / "*" / "*")]
        )[0][0]
        await store.close()
    gaps.sort()
    stall_max = round(gaps[-1] * 1000, 1) if gaps else 0.0
    stall_p99 = round(gaps[int(len(gaps) * 0.99)] * 1000, 1) if gaps else 0.0
    result = {
        "entries": handled,
        "audit_rows": rows,
        "left_in_outbox": left,
        "cpu_us_per_record": round(cpu / max(1, total) * 1e6, 2),
        "main_thread_us_per_record": round(main / max(1, total) * 1e6, 2),
        "redis_cpu_us_per_record": round(redis_cpu / max(1, total) * 1e6, 2),
        "wall_s": round(wall, 3),
        "records_per_s": round(total / wall, 1),
        "loop_stall_max_ms": stall_max,
        "loop_stall_p99_ms": stall_p99,
    }
    print(
        f"archive: {handled} entries ({o.logins} logins, {o.closes} closes) -> {rows} audit "
        f"rows in {wall:.2f} s: {result['cpu_us_per_record']} µs CPU per record in this "
        f"process (all threads; {result['main_thread_us_per_record']} µs the loop's thread), "
        f"Redis {result['redis_cpu_us_per_record']} µs; {left} left"
        + (f"; loop stalls max {stall_max} ms, p99 {stall_p99} ms" if o.stalls else "")
    )
    return result


async def feed(url: str, rate: int, seconds: float, persons: int) -> None:
    """The feeder (its own process, so that its CPU is not the archiver's): ``rate``
    entries a second, added every 10 ms, for ``seconds``."""
    store = Store(client_from_url(url))
    loop = asyncio.get_running_loop()
    start, done = loop.time(), 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(rate * elapsed) - done
        if due > 0:
            closes = due // 5
            await seed(store, due - closes, closes, persons, first=done, profiles=False)
            done += due
        await asyncio.sleep(0.01)
    await store.close()
    print(done)


async def steady(o: argparse.Namespace, gather: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="cw-archive-steady-"))
    try:
        with RedisServer(work / "redis") as redis_server:
            base = load_config(ROOT / "deploy" / "citywifi.example.toml")
            config = replace(base, reports=replace(base.reports, archive_gather=gather))
            store = Store(client_from_url(redis_server.url))
            await store.load_scripts()
            await seed(store, 0, 0, o.persons)  # the profiles only
            archive = Archive(work / "archive")
            archiver = Archiver(store, archive, lambda: config, clock=lambda: NOW + 60.0)
            await archiver.drain()  # the consumer group, the writer's DuckDB session
            for upkeep in (archiver.maintain_if_due, archiver.trim_if_due, archiver.purge_if_due):
                await upkeep()  # the upkeep's first pass (then every minute or more), unclocked
            redis_before = cpu_seconds([redis_server.pid])
            cpu0, wall0 = time.process_time(), time.perf_counter()
            archiver.start()
            feeder = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.archive_bench", "--feed", redis_server.url),
                *("--rate", str(o.steady), "--seconds", str(o.seconds)),
                *("--persons", str(o.persons)),
                cwd=str(ROOT),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await feeder.communicate()
            await archiver.stop()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            redis_cpu = cpu_seconds([redis_server.pid]) - redis_before
            fed = int(out.split()[-1])
            left = await store.outbox_backlog()
            files = list((work / "archive" / "audit").glob("*/*.parquet"))
            pattern = str(work / "archive" / "audit" / "*" / "*")
            rows = archive.query("SELECT count(*) FROM read_parquet(?)", [pattern])[0][0]
            await store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "gather_s": gather,
        "fed": fed,
        "audit_rows": rows,
        "audit_files": len(files),
        "left_in_outbox": left,
        "cpu_us_per_record": round(cpu / max(1, fed) * 1e6, 2),
        "redis_cpu_us_per_record": round(redis_cpu / max(1, fed) * 1e6, 2),
        "wall_s": round(wall, 1),
    }
    print(
        f"steady {o.steady}/s for {o.seconds:g} s, gather {gather:g} s: {fed} records fed, "
        f"{rows} audit rows in {len(files)} files, {left} left; "
        f"{result['cpu_us_per_record']} µs CPU per record in this process (all threads), "
        f"Redis {result['redis_cpu_us_per_record']} µs"
    )
    return result


async def _tick(gaps: list[float]) -> None:
    """Every 1 ms: how late the loop woke us (a stall of everything else on it)."""
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(max(0.0, now - last - 0.001))
        last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logins", type=int, default=50_000)
    ap.add_argument("--closes", type=int, default=10_000)
    ap.add_argument("--persons", type=int, default=5_000)
    ap.add_argument("--profile", default="", help="write cProfile stats here")
    ap.add_argument("--json", default="", help="write the result here")
    ap.add_argument("--stalls", action="store_true", help="measure the loop's stalls")
    ap.add_argument("--steady", type=int, default=0, help="entries a second: the loop's cost")
    ap.add_argument("--seconds", type=float, default=20.0, help="of --steady feeding")
    ap.add_argument(
        "--gather", default="1,5", help="--steady: [reports] archive_gather values, in turn"
    )
    ap.add_argument("--repeat", type=int, default=1, help="--steady: rounds of the values")
    ap.add_argument("--feed", default="", help=argparse.SUPPRESS)  # the feeder process
    ap.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    o = ap.parse_args()
    gc.set_threshold(50_000, 20, 100)  # as a worker runs (controller.cli.runtime.run)
    if o.feed:
        asyncio.run(feed(o.feed, o.rate, o.seconds, o.persons))
        return
    if o.steady:
        gathers = [float(g) for g in o.gather.split(",")]
        runs = [asyncio.run(steady(o, g)) for _ in range(o.repeat) for g in gathers]
        if o.json:
            Path(o.json).write_text(json.dumps(runs, indent=2))
        return
    result = asyncio.run(run(o))
    if o.json:
        Path(o.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
