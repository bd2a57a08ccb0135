"""Redis CPU per MAC re-authentication, without a RADIUS server or load generator.

Drives the store as the RADIUS path does for one MAC re-authentication (64 requests
outstanding, each request's Redis units one after the other, every unit in its tick's
batch), against a redis-server with AOF (fsync every second), in each call shape the
tree knows, alternating in one sitting, and measures Redis's own CPU (utime + stime from
/proc) per login plus ``INFO commandstats`` (µs per login of every top-level command):

- ``one-call``: mac_login.lua reads the owner and queues the audit record (one Redis);
- ``record-apart``: mac_login.lua reads the owner, the record's XADD after its reply;
- ``cluster``: the owner's GET, mac_login.lua with the pid, then the XADD (a Cluster's
  shape, run here on one Redis);
- ``two-scripts``: GET, auth_state.lua, commit_login.lua, XADD (before mac_login.lua).

    .venv/bin/python -m bench.auth_redis --logins 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.stack import RedisServer, cpu_seconds
from controller.domain.state import MacLoginAsk, Origin
from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store

NOW = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
DAY = "20261125"
WINDOW = 64
PERSONS = 5000
SHAPES = ("one-call", "record-apart", "cluster", "two-scripts")


def _mac(i: int) -> str:
    return f"AA-BB-CC-{i % 256:02X}-{i // 256 % 256:02X}-01"


def _pid(i: int) -> str:
    return f"{i:020x}"


def _record(mac: str) -> dict[str, str]:
    return {
        "k": "login",
        "t": str(NOW),
        "mac": mac,
        "client": "nas",
        "nas_id": "ap-1",
        "nas_ip": "10.0.0.1",
        "ap": "00-11-22-33-44-55:city",
        "venue": "v1",
    }


def _ask(i: int, pid: str | None, record: dict[str, str] | None) -> MacLoginAsk:
    mac = _mac(i)
    return MacLoginAsk(
        pid=pid,
        user_mac=mac,
        mac=mac,
        now=NOW,
        today=DAY,
        stale_before=NOW - 750,
        daily=7200,
        to_midnight=43200,
        min_grant=300,
        max_devices=3,
        nonce="0123456789abcdef",
        record=record,
    )


def _login(store: Store, shape: str, i: int) -> Callable[[], Awaitable[None]]:
    mac = _mac(i)
    record = _record(mac)

    async def one_call() -> None:
        await store.mac_login(_ask(i, None, record))

    async def record_apart() -> None:
        done = await store.mac_login(_ask(i, None, None))
        await store.outbox_add({**record, "pid": done.pid or "", "result": done.outcome})

    async def cluster() -> None:
        owner = await store.mac_owner(mac)
        done = await store.mac_login(_ask(i, owner, None))
        await store.outbox_add({**record, "pid": done.pid or "", "result": done.outcome})

    async def two_scripts() -> None:
        owner = await store.mac_owner(mac)
        assert owner is not None
        await store.auth_state(owner, "", mac, DAY, NOW - 750, NOW)
        origin = Origin("nas", "s", "00" * 16, "10.0.0.1:1000")
        await store.commit_login(
            owner,
            "",
            mac,
            now=NOW,
            origin=origin,
            nonce="0123456789abcdef",
            max_devices=3,
            stale_before=NOW - 750,
            remember_seconds=0,
        )
        await store.outbox_add({**record, "pid": owner, "result": "accept"})

    return {
        "one-call": one_call,
        "record-apart": record_apart,
        "cluster": cluster,
        "two-scripts": two_scripts,
    }[shape]


async def _seed(store: Store) -> None:
    pipe = store.redis.pipeline(transaction=False)
    for i in range(PERSONS):
        pid = _pid(i)
        pipe.set(keys.mac_owner(_mac(i)), pid)
        pipe.set(keys.day_usage(pid, DAY), 1800)
        # one open session of another device, reporting
        pipe.hset(keys.open_sessions(pid), f"nas/o{i}", f"AA-BB-CC-00-00-02|{NOW - 60}|0")
    await pipe.execute()


async def _blast(store: Store, shape: str, logins: int) -> None:
    for lo in range(0, logins, WINDOW):
        batch = range(lo, min(lo + WINDOW, logins))
        await asyncio.gather(*(_login(store, shape, i % PERSONS)() for i in batch))


async def run(o: argparse.Namespace) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="cw-auth-redis-"))
    try:
        return await _run(o, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(o: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    results = []
    with RedisServer(work / "redis", o.redis_server) as server:
        store = Store(client_from_url(server.url))
        await store.load_scripts()
        await _seed(store)
        await _blast(store, "two-scripts", 2000)  # warm-up
        for rnd in range(1, o.rounds + 1):
            for shape in o.shapes:
                await store.redis.delete(keys.OUTBOX)
                server.reset_stats()
                cpu0, t0 = cpu_seconds([server.pid]), time.perf_counter()
                await _blast(store, shape, o.logins)
                cpu, wall = cpu_seconds([server.pid]) - cpu0, time.perf_counter() - t0
                stats = server.command_stats()
                n = o.logins
                top = {
                    name: round(c["usec"] / n, 2)
                    for name, c in stats.items()
                    if name in {"evalsha", "get", "xadd"}
                }
                r = {
                    "round": rnd,
                    "shape": shape,
                    "logins": n,
                    "redis_cpu_us_per_login": round(cpu / n * 1e6, 2),
                    "commandstats_us_per_login": top,
                    "wall_s": round(wall, 2),
                }
                results.append(r)
                print(
                    f"auth_redis {rnd} {shape:>12}: Redis CPU {r['redis_cpu_us_per_login']:6.2f} "
                    f"µs per login (/proc); commandstats µs per login {top} "
                    f"(EVALSHA includes its scripts' commands; GET/XADD inside scripts too)"
                )
        await store.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logins", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    ap.add_argument("--redis-server", default="", help="redis-server binary")
    ap.add_argument("--json", default="")
    o = ap.parse_args()
    results = asyncio.run(run(o))
    if o.json:
        Path(o.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
