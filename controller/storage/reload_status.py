"""Redis storage of the last config reload's outcome (``cw:stats:reload``): one JSON
string, written by the process that reloaded (every worker of ``serve --workers N``
reloads on the supervisor's SIGHUP and writes the same outcome; the last write stands)
and read by the console of any process, so every worker and the console agree.

One command per read or write; Redis errors become ``StoreUnavailable`` (the store's guard).
"""

from __future__ import annotations

from typing import Any

from controller.storage import keys
from controller.storage.store import Store

KEY = keys.RELOAD_STATUS


async def put(store: Store, text: str) -> None:
    async def op() -> None:
        await store.redis.set(KEY, text)

    await store._guard(op)


async def get(store: Store) -> str | None:
    async def op() -> str | None:
        raw: Any = await store.redis.get(KEY)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    return await store._guard(op)
