"""CPU per record of the archiver: the outbox drained into Parquet (issue 16 item 3).

Seeds a real redis-server (AOF, fsync every second, as production) with login results
(``k=login``, as ``RadiusService`` queues one per Access-Request) and closed sessions
(``k=close`` with their session record, as a Stop queues), then runs ``Archiver.drain``
in this process and reports the process CPU time (all threads: the writer thread and
DuckDB's included, ``time.process_time``) per outbox entry, the wall time, and the
rows archived. Redis's own CPU is given apart (from /proc).

    .venv/bin/python -m bench.archive_bench --logins 50000 --closes 10000
    .venv/bin/python -m bench.archive_bench --logins 50000 --profile archive.prof

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


async def seed(store: Store, logins: int, closes: int, persons: int) -> None:
    r = store.redis
    pipe = r.pipeline(transaction=False)
    for i in range(persons):
        pipe.hset(keys.profile(f"{i:020x}"), "phone", f"+86138{i:08d}")
    await pipe.execute()
    step = 2000
    for lo in range(0, logins, step):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(logins, lo + step)):
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
    for lo in range(0, closes, step):
        pipe = r.pipeline(transaction=False)
        for i in range(lo, min(closes, lo + step)):
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
    o = ap.parse_args()
    gc.set_threshold(50_000, 20, 100)  # as a worker runs (controller.cli.runtime.run)
    result = asyncio.run(run(o))
    if o.json:
        Path(o.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
