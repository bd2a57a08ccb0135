"""Archived entries leave the outbox by a trim below the oldest pending entry
(``outbox_done.lua``, issue 16), never taking an entry that is not yet archived: one
still pending for another consumer (its round being written, or a dead consumer's,
waiting for XAUTOCLAIM), or one not yet delivered. Real redis-server, the store's own
calls (XREADGROUP / XAUTOCLAIM through ``outbox_read_raw``).

Before, ``outbox_done`` XDELed every id: Redis finds each by scanning its stream node,
~3.5 µs of Redis CPU per entry (``bench.run auth``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess

IDLE_MS = 60_000


@pytest.fixture
async def store(redis_proc: RedisProcess) -> AsyncIterator[Store]:
    s = Store(client_from_url(redis_proc.url))
    await s.load_scripts()
    yield s
    await s.redis.aclose()


async def queue(store: Store, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        await store.outbox_add({"k": "login", "n": str(i)})


async def left(store: Store) -> list[str]:
    """The numbers of the entries still in the stream, in order."""
    entries: Any = await store.redis.xrange(keys.OUTBOX)
    return [fields[b"n"].decode() for _, fields in entries]


async def pending(store: Store) -> int:
    return int((await store.redis.xpending(keys.OUTBOX, keys.OUTBOX_GROUP))["pending"])


async def read(store: Store, consumer: str, count: int) -> list[bytes]:
    return [eid for eid, _ in await store.outbox_read_raw(consumer, count, IDLE_MS)]


async def test_one_consumer_archived_entries_leave_undelivered_stay(store: Store) -> None:
    await queue(store, 5)
    ids = await read(store, "a", 3)
    await queue(store, 2, first=5)  # arrive while the round is written
    await store.outbox_done(ids, {})
    assert await left(store) == ["3", "4", "5", "6"]
    assert await pending(store) == 0
    assert await store.outbox_backlog() == 4
    rest = await read(store, "a", 10)
    assert len(rest) == 4
    await store.outbox_done(rest, {})
    assert await left(store) == []


async def test_a_younger_round_done_first_keeps_an_older_pending_one(store: Store) -> None:
    await queue(store, 6)
    older = await read(store, "a", 3)  # 0, 1, 2: consumer a still writing
    younger = await read(store, "b", 3)  # 3, 4, 5
    await store.outbox_done(younger, {})
    # nothing trimmed past a's pending entries; b's acknowledged ones deleted one by one
    assert await left(store) == ["0", "1", "2"]
    assert await store.outbox_backlog() == 3
    await store.outbox_done(older, {})
    assert await left(store) == []
    assert await pending(store) == 0


async def test_a_dead_consumers_entries_stay_until_claimed(store: Store) -> None:
    await queue(store, 4)
    dead = await read(store, "dead", 2)  # 0, 1: never acknowledged
    assert len(dead) == 2
    mine = await read(store, "a", 10)  # 2, 3
    await store.outbox_done(mine, {})
    assert await left(store) == ["0", "1"]
    claimed = [eid for eid, _ in await store.outbox_read_raw("a", 10, 0)]  # idle: claim now
    assert claimed == dead
    await store.outbox_done(claimed, {})
    assert await left(store) == []


async def test_a_part_of_a_round_acknowledged_leaves_the_rest_pending(store: Store) -> None:
    await queue(store, 5)
    ids = await read(store, "a", 5)
    await store.outbox_done(ids[1:3], {})  # 1, 2: above the oldest pending (0): deleted
    assert await left(store) == ["0", "3", "4"]
    await store.outbox_done(ids[:1], {})  # 0: now everything below 3 can go
    assert await left(store) == ["3", "4"]
    assert await pending(store) == 2


async def test_a_round_larger_than_lua_can_unpack(store: Store) -> None:
    count = 9_000  # over Lua's ~8,000 values of one unpack: the ids go in chunks
    pipe = store.redis.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(keys.OUTBOX, {"k": "login", "n": str(i)})
    await pipe.execute()
    ids = await read(store, "a", count)
    assert len(ids) == count
    await store.outbox_done(ids[: count - 1], {})
    assert await left(store) == [str(count - 1)]
    assert await pending(store) == 1
    await store.outbox_done(ids[count - 1 :], {})
    assert await left(store) == []
    assert await pending(store) == 0
