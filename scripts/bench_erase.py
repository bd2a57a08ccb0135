"""`person erase` on a large Redis: N persons, each with a profile, a day counter, MAC
memory and portal memory (4 N keys), then one erasure, timed. Prints figures; asserts
nothing. Run: PYTHONPATH=. .venv/bin/python scripts/bench_erase.py [N]"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess


async def main(n: int) -> None:
    redis_proc = RedisProcess(Path(tempfile.mkdtemp()))
    redis_proc.start()
    try:
        store = Store(client_from_url(redis_proc.url))
        await store.load_scripts()
        pipe = store.redis.pipeline(transaction=False)
        for i in range(n):
            pid = f"{i:020x}"
            pipe.set(keys.mac_owner(f"AA-BB-CC-{i:06X}"), pid, ex=86400)
            pipe.hset(keys.profile(pid), mapping={"phone": f"+86138{i:08d}", "seen": 1})
            pipe.set(keys.day_usage(pid, "20261202"), 100, ex=86400)
            address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            pipe.hset(keys.portal_client(address), mapping={"pid": pid})
            if i % 2000 == 1999:
                await pipe.execute()
                pipe = store.redis.pipeline(transaction=False)
        await pipe.execute()
        total = await store.redis.dbsize()
        started = time.perf_counter()
        removed = await store.erase_person(f"{n // 2:020x}")
        took = time.perf_counter() - started
        print(f"{total} keys: one erasure in {took:.2f} s, removed {removed}")
        await store.close()
    finally:
        redis_proc.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 250_000))
