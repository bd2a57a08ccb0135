"""`audit who` over open sessions: how long reading every open session's matching fields
from Redis takes (``storage.live_sessions.all_open`` with ``services.natlog.may_answer``).
Starts its own redis-server, fills it with N open sessions, prints figures; asserts
nothing. Run: PYTHONPATH=. .venv/bin/python scripts/bench_who_open.py [N]"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from controller.services.natlog import MATCH_FIELDS, WhoQuery, may_answer
from controller.storage import keys
from controller.storage.live_sessions import all_open
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess


async def run(url: str, n: int) -> None:
    r = Redis.from_url(url)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pid, sid = f"p{i:06d}", f"nas/s{i}#1"
        record = {
            "pid": pid,
            "client": "nas",
            "acct_session_id": f"s{i}",
            "start": "1000",
            "mac": "AA-BB-CC-00-00-01",
            "ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "venue": "v",
        }
        pipe.hset(keys.session(pid, sid), mapping=record)  # type: ignore[arg-type]
        pipe.zadd(keys.OPEN_INDEX, {keys.session_ref(pid, sid): 1000})
        if i % 5000 == 4999:
            await pipe.execute()
    await pipe.execute()
    store = Store(r)
    keep = may_answer(WhoQuery("203.0.113.5", 40000, 1500), [("10.0.1.2", "nas")])
    for _ in range(3):
        t = time.perf_counter()
        rows = await all_open(store, MATCH_FIELDS, 2000, keep=keep)
        print(f"{n} open sessions scanned, {len(rows)} kept, in {time.perf_counter() - t:.2f} s")
    await r.aclose()


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisProcess(Path(tmp))
        redis.start()
        try:
            asyncio.run(run(redis.url, n))
        finally:
            redis.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
