"""The hot path's Redis batching (controller.storage.redis_batch) against a real redis-server.

What must hold: every unit gets exactly its own replies, in order, whatever else shares
its batch; error replies come back as exceptions for that unit only; a lost or frozen
server fails the units in flight (never a wrong reply) and the link reconnects after.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from redis import exceptions as redis_errors

from controller.storage.redis_batch import (
    Batcher,
    DirectLink,
    PipelineLink,
    classify,
    link_for,
    pack,
)
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store, StoreUnavailable
from tests.support.redis_proc import RedisProcess


def test_pack_is_resp_arrays_of_bulk_strings() -> None:
    assert pack([("SET", "k", 1.5), (b"GET", "k")]) == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )


def test_error_replies_become_redis_py_exceptions() -> None:
    error = redis_errors.ResponseError
    assert isinstance(classify(error("NOSCRIPT x")), redis_errors.NoScriptError)
    assert isinstance(classify(error("READONLY x")), redis_errors.ReadOnlyError)
    plain = redis_errors.ResponseError("ERR wrong")
    assert classify(plain) is plain


def test_the_link_fits_the_topology(redis_proc: RedisProcess) -> None:
    assert isinstance(link_for(client_from_url(redis_proc.url)), DirectLink)
    durable = client_from_url(redis_proc.url + "?wait_replicas=1")
    assert isinstance(link_for(durable), PipelineLink)  # WAIT stays redis-py's


@pytest.mark.parametrize("kind", ["direct", "pipeline"])
async def test_each_unit_gets_its_own_replies_in_order(
    redis_proc: RedisProcess, kind: str
) -> None:
    client = client_from_url(redis_proc.url)
    link = DirectLink.for_client(client) if kind == "direct" else PipelineLink(client)
    batch = Batcher(link)
    try:

        async def unit(i: int) -> list[object]:
            key = f"k{i}"
            return await batch.run(
                [("SET", key, i), ("INCRBY", key, i), ("GET", key), ("HGET", key, "x")]
            )

        results = await asyncio.gather(*(unit(i) for i in range(3000)))
        for i, replies in enumerate(results):
            assert replies[1] == 2 * i and replies[2] == str(2 * i).encode()
            assert isinstance(replies[3], redis_errors.ResponseError)  # WRONGTYPE: this unit's
    finally:
        await batch.close()
        await client.aclose()


async def test_a_frozen_server_fails_the_units_in_flight_then_it_reconnects(
    redis_proc: RedisProcess,
) -> None:
    client = client_from_url(redis_proc.url)
    link = DirectLink(DirectLink.for_client(client)._settings, timeout=0.3)
    batch = Batcher(link)
    assert redis_proc.proc is not None
    try:
        assert await batch.run([("SET", "a", 1)]) == [b"OK"]
        os.kill(redis_proc.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(redis_errors.TimeoutError):
                await batch.run([("INCR", "a")])
        finally:
            os.kill(redis_proc.proc.pid, signal.SIGCONT)
        # the timed-out INCR may have run after all: the reply must not land on this unit
        replies = await batch.run([("SET", "b", "x"), ("GET", "b")])
        assert replies == [b"OK", b"x"]
        redis_proc.stop()
        with pytest.raises(redis_errors.ConnectionError):
            await batch.run([("GET", "a")])
        redis_proc.start()
        assert await batch.run([("GET", "b")]) == [b"x"]  # AOF kept it; a new connection
    finally:
        await batch.close()
        await client.aclose()


async def test_the_store_reloads_scripts_a_restarted_redis_forgot(
    redis_proc: RedisProcess,
) -> None:
    store = Store(client_from_url(redis_proc.url))
    try:
        await store.load_scripts()
        state = await store.auth_state("p" * 20, "", "AA-BB-CC-DD-EE-FF", "20261125", 0)
        assert state.used_today == 0
        await store.redis.script_flush()
        state = await store.auth_state("p" * 20, "", "AA-BB-CC-DD-EE-FF", "20261125", 0)
        assert state.used_today == 0
        redis_proc.stop()
        with pytest.raises(StoreUnavailable):
            await store.mac_owner("AA-BB-CC-DD-EE-FF")
    finally:
        redis_proc.start()
        await store.close()
