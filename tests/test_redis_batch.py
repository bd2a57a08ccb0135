"""The hot path's Redis batching (controller.storage.redis_batch) against a real redis-server.

What must hold: every unit gets exactly its own replies, in order, whatever else shares
its batch; error replies come back as exceptions for that unit only; a lost or frozen
server fails the units in flight (never a wrong reply) and the link reconnects after.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import exceptions as redis_errors

from controller.storage.redis_batch import (
    Batcher,
    DirectLink,
    PipelineLink,
    classify,
    link_for,
    pack,
    packer,
)
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store, StoreUnavailable
from radius import fastpath
from tests.support.redis_proc import RedisProcess


def test_pack_is_resp_arrays_of_bulk_strings() -> None:
    assert pack([("SET", "k", 1.5), (b"GET", "k")]) == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    )


COMPILED_PACK = fastpath.load().pack_commands
needs_c = pytest.mark.skipif(
    COMPILED_PACK is None,
    reason=f"compiled path not in use here ({fastpath.reason()}); the fallback is tested",
)

ARGUMENT = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "é€𝄞", ""]),  # lone surrogates: not UTF-8
    st.integers(),
    st.integers(-(2**200), 2**200),
    st.floats(),  # nan, inf, -0.0 included
    st.binary(max_size=10).map(memoryview),
    st.sampled_from([True, None, bytearray(b"x"), 3j, ("nested",)]),  # refused
)
COMMANDS = st.lists(
    st.one_of(st.lists(ARGUMENT, max_size=8), st.lists(ARGUMENT, max_size=8).map(tuple)),
    max_size=6,
)


def _packed(pack_fn: Any, commands: Any) -> tuple[str, Any]:
    try:
        return ("ok", pack_fn(commands))
    except Exception as exc:  # the same exception type from both
        return ("raised", type(exc))


@needs_c
@settings(max_examples=600, derandomize=True, database=None, deadline=None)
@given(COMMANDS)
def test_the_compiled_packer_makes_the_same_octets(commands: list[Any]) -> None:
    assert _packed(COMPILED_PACK, commands) == _packed(pack, commands)


@needs_c
def test_the_compiled_packer_on_big_and_odd_batches() -> None:
    assert COMPILED_PACK is not None
    big = [("EVALSHA", "f" * 40, 3, b"k" * 5000, -(2**63), 2**63, 0.1) for _ in range(1024)]
    assert COMPILED_PACK(big) == pack(big)
    assert COMPILED_PACK([]) == pack([]) == b""
    assert COMPILED_PACK([()]) == pack([()]) == b"*0\r\n"
    # an int beyond repr()'s 4300 digits: repr's ValueError (hiredis 3.5's pack_command
    # dereferences the failed repr and crashes the process, so it is not asked here)
    with pytest.raises(ValueError, match="4300 digits"):
        COMPILED_PACK([("SET", "k", 10**5000)])
    for bad in ([5], [("SET", True)], [("SET", None)], None):
        with pytest.raises(TypeError):
            COMPILED_PACK(bad)
        with pytest.raises(TypeError):
            pack(bad)  # type: ignore[arg-type]


def test_the_direct_link_packs_with_the_data_path_packer() -> None:
    assert packer() is (COMPILED_PACK or pack)


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
async def test_each_unit_gets_its_own_replies_in_order(redis_proc: RedisProcess, kind: str) -> None:
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
