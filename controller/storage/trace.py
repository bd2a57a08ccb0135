"""Redis storage of the per-client RADIUS trace (``citywifi trace``, issue 17).

- ``cw:trace:on``: sorted set, one member per traced client, scored with the epoch
  second its trace ends. Every worker reads it once a second with one ZRANGEBYSCORE
  (``controller.services.trace``) — one command however many clients are configured —
  so turning a trace on or off needs no signal and reaches every process of every
  instance. Who turned it on is in the console's audit record and the CLI's log line.
- ``cw:trace:log:<client>``: stream of traced packets (field ``p``: the decoded lines,
  newline-joined; ``d``: ``in``/``out``), capped (``MAXLEN ~``) and expiring with the
  trace, which ``citywifi trace`` follows with ``XREAD BLOCK``.

Each command touches one key. Redis errors become ``StoreUnavailable`` (the store's guard).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from controller.storage import keys
from controller.storage.replies import as_text
from controller.storage.store import Store

LOG_MAXLEN: Final = 10_000  # packets kept per traced client (about a few MB at most)
LOG_KEEP: Final = 600  # seconds a trace's log outlives the switch (to be read)


SWITCHES: Final = keys.TRACE_SWITCHES  # client -> epoch second its trace ends


log_key = keys.trace_log


@dataclass(frozen=True, slots=True)
class TracedEntry:
    id: str
    direction: str  # "in" (from the NAS) or "out" (our reply)
    lines: tuple[str, ...]


class TraceStore:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def on(self, client_id: str, seconds: int, by: str) -> None:
        """Trace ``client_id`` for ``seconds`` from now (``by``: who, for the caller's
        own record; a second ``on`` extends or shortens the running trace)."""

        async def op() -> None:
            await self.store.redis.zadd(SWITCHES, {client_id: int(self.clock()) + seconds})

        await self.store._guard(op)

    async def off(self, client_id: str) -> bool:
        async def op() -> bool:
            return bool(await self.store.redis.zrem(SWITCHES, client_id))

        return await self.store._guard(op)

    async def active(self, clients: Sequence[str]) -> frozenset[str]:
        """Which of ``clients`` are traced now: one ZRANGEBYSCORE of the running traces
        (expired ones are dropped from the set in the same round trip)."""
        if not clients:
            return frozenset()
        now = int(self.clock())

        async def op() -> frozenset[str]:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.zremrangebyscore(SWITCHES, "-inf", now)
            pipe.zrangebyscore(SWITCHES, now + 1, "+inf")
            _, running = await pipe.execute()
            return frozenset(clients) & {as_text(c) for c in running}

        return await self.store._guard(op)

    async def append(self, entries: Sequence[tuple[str, str, str]]) -> None:
        """Write traced packets: (client, direction, text), in order."""
        if not entries:
            return

        async def op() -> None:
            pipe = self.store.redis.pipeline(transaction=False)
            for client, direction, text in entries:
                pipe.xadd(
                    log_key(client),
                    {"d": direction, "p": text},
                    maxlen=LOG_MAXLEN,
                    approximate=True,
                )
            for client in {c for c, _, _ in entries}:
                pipe.expire(log_key(client), LOG_KEEP)
            await pipe.execute()

        await self.store._guard(op)

    async def read(self, client_id: str, after: str, block_ms: int) -> list[TracedEntry]:
        """Packets after stream id ``after`` (``$``: only new ones), waiting up to
        ``block_ms`` for the first."""

        async def op() -> list[TracedEntry]:
            reply: Any = await self.store.redis.xread(
                {log_key(client_id): after}, block=block_ms, count=100
            )
            out = []
            for _, entries in reply or []:
                for eid, fields in entries:
                    f = {as_text(k): as_text(v) for k, v in fields.items()}
                    out.append(
                        TracedEntry(as_text(eid), f.get("d", ""), tuple(f.get("p", "").split("\n")))
                    )
            return out

        return await self.store._guard(op)
