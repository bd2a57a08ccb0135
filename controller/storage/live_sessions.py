"""Reading the open sessions for the console's live-sessions page: the most recently
reported ones from the open-session index (``cw:idx:open``, scored by last accounting)
and their records, in one pipeline. Read-only; the index and records are written by the
accounting path (``Store.account``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.storage import keys
from controller.storage.replies import as_text
from controller.storage.store import Store


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
        refs = [(keys.parse_session_ref(as_text(m)), int(score)) for m, score in members]
        pipe = store.redis.pipeline(transaction=False)
        for (pid, sid), _ in refs:
            pipe.hgetall(keys.session(pid, sid))
        records = await pipe.execute() if refs else []
        return [
            OpenSession(pid, sid, at, {as_text(k): as_text(v) for k, v in raw.items()})
            for ((pid, sid), at), raw in zip(refs, records, strict=True)
        ]

    return await store._guard(op)


async def all_open(
    store: Store,
    fields: tuple[str, ...],
    started_by: int,
    *,
    keep: Callable[[Mapping[str, str]], bool] | None = None,
    batch: int = 2000,
) -> list[OpenSession]:
    """Every open session that started at or before ``started_by`` (epoch) and that
    ``keep`` accepts, with only ``fields`` of its record (``start`` is always read):
    ``audit who`` on sessions not archived yet. The index is walked ``batch`` entries
    per round trip (a session moving meanwhile may be seen twice or missed)."""
    names = ("start", *(f for f in fields if f != "start"))

    async def op() -> list[OpenSession]:
        out: list[OpenSession] = []
        offset = 0
        while True:
            members: Any = await store.redis.zrange(
                keys.OPEN_INDEX, offset, offset + batch - 1, withscores=True
            )
            if not members:
                return out
            offset += len(members)
            refs = [(keys.parse_session_ref(as_text(m)), int(score)) for m, score in members]
            # the store's own batch link: RESP packed and parsed in C (redis-py's pipeline
            # spends ~10x the CPU per command); a unit of ``batch`` commands per round trip
            replies = await store._hot(
                [("HMGET", keys.session(pid, sid), *names) for (pid, sid), _ in refs]
            )
            for ((pid, sid), at), values in zip(refs, replies, strict=True):
                start = values[0]
                if start is None or not as_text(start).lstrip("-").isdigit():
                    continue
                if int(as_text(start)) > started_by:
                    continue
                record = {
                    n: as_text(v) for n, v in zip(names, values, strict=True) if v is not None
                }
                if keep is None or keep(record):
                    out.append(OpenSession(pid, sid, at, record))
            if len(members) < batch:
                return out

    return await store._guard(op)


async def records(
    store: Store, refs: Sequence[tuple[str, str]], fields: tuple[str, ...]
) -> list[dict[str, str]]:
    """``fields`` of the session records ``refs`` ((pid, sid) pairs), in order; a record
    gone meanwhile is ``{}``."""

    async def op() -> list[dict[str, str]]:
        pipe = store.redis.pipeline(transaction=False)
        for pid, sid in refs:
            pipe.hmget(keys.session(pid, sid), fields)
        return [
            {n: as_text(v) for n, v in zip(fields, values, strict=True) if v is not None}
            for values in await pipe.execute()
        ]

    return await store._guard(op) if refs else []


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
            persons.update(keys.parse_session_ref(as_text(m))[0] for m in members)
        return len(persons)

    return await store._guard(op)
