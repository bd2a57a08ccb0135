"""Redis CPU per accounting request, without a RADIUS server or load generator.

Drives ``Store.account`` as the RADIUS path does (a Start per session, then Interim
updates, then Stops; 64 outstanding, one tick's batch each), against a redis-server
with AOF (fsync every second), and measures Redis's own CPU (utime + stime from /proc,
so a busy machine's preemption does not count) per request, plus ``INFO commandstats``
(EVALSHA µs per call; calls per request of every command, the script's inner calls
included). The enforcer's due index is written as the server writes it: by account.lua
when the write carries the enforcer's rule (``AccountingWrite.due``), else by one
``index_due`` ZADD per batch (the enforcer's writer), as before that rule existed.

    .venv/bin/python -m bench.acct_redis --sessions 2000 --interims 10
    .venv/bin/python -m bench.acct_redis --no-rule      # the enforcer's ZADD instead
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stack import RedisServer, cpu_seconds
from controller.domain.state import AccountingWrite, SessionFields
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store

NOW = 1_795_579_200  # 2026-11-25 12:00 Asia/Shanghai
DAY = "20261125"
DAY_START = NOW - 43200
WINDOW = 64


def _rule(event_time: int) -> Any:
    try:
        from controller.domain.state import DueRule  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # a tree from before account.lua computed the due time
        return None
    return DueRule(
        daily=7200,
        next_midnight=NOW + 43200,
        stale_before=event_time - 900,
        retry_after=300,
        max_devices=3,
    )


def _write(i: int, status: int, reported: int, rule: bool, describe: bool) -> AccountingWrite:
    pid = f"{i % 5000:020x}"
    event = NOW + reported
    w = AccountingWrite(
        pid=pid,
        sid=f"nas/s{i}",
        client_id="nas",
        status=status,  # type: ignore[arg-type]
        reported=reported,
        event_time=event,
        input_octets=reported * 1000,
        output_octets=reported * 3000,
        cause="1" if status == 2 else "",
        boundaries=[(DAY_START, DAY)],
        session=SessionFields(
            pid=pid,
            known=True,
            client="nas",
            acct_session_id=f"s{i}",
            mac=f"AA-BB-CC-{i % 256:02X}-{i // 256 % 256:02X}-01",
            ip="10.1.0.2",
            nas_ip="10.0.0.1",
            nas_id="ap-1",
            venue="v1",
        ),
        describe=describe,
    )
    if rule and (r := _rule(event)) is not None:
        w = dataclasses.replace(w, due=r)  # type: ignore[call-arg,unused-ignore]
    return w


async def _phase(store: Store, writes: list[AccountingWrite], index: bool) -> None:
    for lo in range(0, len(writes), WINDOW):
        batch = writes[lo : lo + WINDOW]
        results = await asyncio.gather(*(store.account(w) for w in batch))
        if index:  # the enforcer's writer: one ZADD LT for the batch's persons
            await store.index_due({w.pid: w.event_time + 600 for w in batch})
        del results


async def run(o: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cw-acct-redis-"))
    try:
        return await _run(o, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(o: argparse.Namespace, work: Path) -> dict[str, Any]:
    with RedisServer(work / "redis", o.redis_server) as server:
        store = Store(client_from_url(server.url))
        await store.load_scripts()
        rule = not o.no_rule and _rule(NOW) is not None
        n = o.sessions
        await _phase(store, [_write(i, 1, 0, rule, True) for i in range(n)], not rule)
        server.reset_stats()
        cpu0, t0 = cpu_seconds([server.pid]), time.perf_counter()
        for k in range(1, o.interims + 1):
            interims = [_write(i, 3, 60 * k, rule, False) for i in range(n)]
            await _phase(store, interims, not rule)
        cpu, wall = cpu_seconds([server.pid]) - cpu0, time.perf_counter() - t0
        stats = server.command_stats()
        await _phase(
            store, [_write(i, 2, 60 * o.interims + 30, rule, False) for i in range(n)], not rule
        )
        await store.close()
    requests = n * o.interims
    per = {
        name: round(c["calls"] / requests, 2)
        for name, c in stats.items()
        if c["calls"] >= requests / 10
    }
    result = {
        "due_in_script": rule,
        "interims": requests,
        "redis_cpu_us_per_interim": round(cpu / requests * 1e6, 2),
        "evalsha_us_per_call": stats.get("evalsha", {}).get("usec_per_call"),
        "calls_per_interim": per,
        "wall_s": round(wall, 2),
    }
    print(
        f"acct_redis ({'due in account.lua' if rule else 'due by the enforcer ZADD'}): "
        f"{requests} Interims, Redis CPU {result['redis_cpu_us_per_interim']} µs per Interim "
        f"(/proc), EVALSHA {result['evalsha_us_per_call']} µs/call; calls per Interim {per}"
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--interims", type=int, default=10)
    ap.add_argument("--no-rule", action="store_true", help="no DueRule: the enforcer's ZADD")
    ap.add_argument("--redis-server", default="", help="redis-server binary")
    ap.add_argument("--json", default="")
    o = ap.parse_args()
    result = asyncio.run(run(o))
    if o.json:
        Path(o.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
