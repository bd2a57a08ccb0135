"""Reading the open sessions for the console's live-sessions page: the most recently
reported ones from the open-session index (``cw:idx:open``, scored by last accounting)
and their records, in one pipeline. Read-only; the index and records are written by the
accounting path (``Store.account``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.storage import keys
from controller.storage.store import Store


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class OpenSession:
    pid: str
    sid: str
    last_report: int
    record: dict[str, str]  # the session hash as stored (client, venue, mac, ip, start, …)


async def latest_open(store: Store, limit: int) -> list[OpenSession]:
    """The ``limit`` open sessions reported most recently, newest first."""

    async def op() -> list[OpenSession]:
        members: Any = await store.redis.zrevrange(keys.OPEN_INDEX, 0, limit - 1, withscores=True)
        refs = [(keys.parse_session_ref(_text(m)), int(score)) for m, score in members]
        pipe = store.redis.pipeline(transaction=False)
        for (pid, sid), _ in refs:
            pipe.hgetall(keys.session(pid, sid))
        records = await pipe.execute() if refs else []
        return [
            OpenSession(pid, sid, at, {_text(k): _text(v) for k, v in raw.items()})
            for ((pid, sid), at), raw in zip(refs, records, strict=True)
        ]

    return await store._guard(op)


async def persons_at_clients(store: Store, clients: list[str]) -> int:
    """How many distinct persons have an open session at any of ``clients`` (the per-NAS
    open-session sets ``cw:nas:<client>``, read in one pipeline)."""
    if not clients:
        return 0

    async def op() -> int:
        pipe = store.redis.pipeline(transaction=False)
        for client in clients:
            pipe.smembers(keys.nas_sessions(client))
        persons: set[str] = set()
        for members in await pipe.execute():
            persons.update(keys.parse_session_ref(_text(m))[0] for m in members)
        return len(persons)

    return await store._guard(op)
