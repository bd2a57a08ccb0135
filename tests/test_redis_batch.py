"""The hot path's Redis batching (controller.storage.redis_batch) against a real redis-server.

What must hold: every unit gets exactly its own replies, in order, whatever else shares
its batch; error replies come back as exceptions for that unit only; a lost or frozen
server fails the units in flight (never a wrong reply) and the link reconnects after.
The direct link runs with the compiled reply router and with the pure-Python one
(``data_path``); tests/test_redis_replies.py holds the two routers together.
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
from redis.asyncio.connection import Connection

from controller.storage.redis_batch import (
    Batcher,
    DirectLink,
    PipelineLink,
    ReplyRouter,
    classify,
    link_for,
    pack,
    packer,
)
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store, StoreUnavailable
from radius import fastpath
from tests.support.redis_proc import RedisProcess, free_port, until


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


@pytest.fixture(params=["compiled", "pure"])
def data_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The direct link's reply router: the compiled one, or hiredis and the Python loop."""
    if request.param == "compiled":
        if COMPILED_PACK is None:
            pytest.skip(f"compiled path not in use here ({fastpath.reason()})")
    else:
        monkeypatch.setenv(fastpath.ENV_PURE_PYTHON, "1")
    return str(request.param)


def direct(client: Any, data_path: str, timeout: float | None = None) -> DirectLink:
    settings = client if isinstance(client, Connection) else DirectLink.for_client(client)._settings
    link = DirectLink(settings, timeout=timeout)
    compiled = fastpath.load().reply_router
    assert link._router is (compiled if data_path == "compiled" else ReplyRouter)
    assert data_path == "pure" or compiled is not None
    return link


@pytest.mark.parametrize("kind", ["direct", "pipeline"])
async def test_each_unit_gets_its_own_replies_in_order(
    redis_proc: RedisProcess, kind: str, data_path: str
) -> None:
    client = client_from_url(redis_proc.url)
    if kind == "pipeline" and data_path == "pure":
        pytest.skip("the pipeline link has no reply router of its own")
    link = direct(client, data_path) if kind == "direct" else PipelineLink(client)
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
    redis_proc: RedisProcess, data_path: str
) -> None:
    client = client_from_url(redis_proc.url)
    link = direct(client, data_path, timeout=0.3)
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


async def test_a_paused_server_times_out_every_unit_in_flight(
    redis_proc: RedisProcess, data_path: str
) -> None:
    """CLIENT PAUSE: the units of several batches wait; the oldest one's deadline fails
    them all with TimeoutError (one watchdog, not a timer per batch), and nothing that was
    written before the pause lands on a later unit."""
    client = client_from_url(redis_proc.url)
    admin = client_from_url(redis_proc.url)
    batch = Batcher(direct(client, data_path, timeout=0.3))
    try:
        assert await batch.run([("SET", "n", 0)]) == [b"OK"]
        await admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        first = [batch.submit([("INCR", "n")]) for _ in range(3)]
        await asyncio.sleep(0)  # the next tick: a second batch on the same connection
        second = [batch.submit([("INCR", "n"), ("GET", "n")]) for _ in range(3)]
        outcomes = await asyncio.gather(*first, *second, return_exceptions=True)
        assert all(isinstance(o, redis_errors.TimeoutError) for o in outcomes), outcomes
        # the pause ends by itself (CLIENT UNPAUSE would be paused too): retry until then
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                replies = await batch.run([("SET", "m", "x"), ("GET", "n")])
                break
            except redis_errors.TimeoutError:
                assert asyncio.get_running_loop().time() < deadline
        assert replies[0] == b"OK"
        assert replies[1] in (b"0", b"3", b"6", b"9", b"12")  # whatever ran, never a wrong reply
    finally:
        await batch.close()
        await client.aclose()
        await admin.aclose()


async def test_a_killed_connection_fails_its_units_then_the_link_reconnects(
    redis_proc: RedisProcess, data_path: str
) -> None:
    client = client_from_url(redis_proc.url)
    admin = client_from_url(redis_proc.url)
    batch = Batcher(direct(client, data_path, timeout=10))
    try:
        assert await batch.run([("CLIENT", "SETNAME", "hot-path")]) == [b"OK"]
        blocked = batch.submit([("BLPOP", "nothing", 20)])
        behind = batch.submit([("PING",)])

        async def blocking() -> bool:
            return b"cmd=blpop" in await admin.execute_command("CLIENT", "LIST", "TYPE", "normal")

        await until(blocking, what="the BLPOP to reach Redis")
        assert await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        for future in (blocked, behind):
            with pytest.raises(redis_errors.ConnectionError):
                await future
        assert await batch.run([("ECHO", "again")]) == [b"again"]  # a new connection
    finally:
        await batch.close()
        await client.aclose()
        await admin.aclose()


async def test_error_replies_belong_to_their_unit(redis_proc: RedisProcess, data_path: str) -> None:
    client = client_from_url(redis_proc.url)
    batch = Batcher(direct(client, data_path))
    try:
        units = [
            batch.submit([("EVALSHA", "f" * 40, 0)]),
            batch.submit([("SET", "s", "x"), ("INCR", "s"), ("GET", "s")]),
            batch.submit([("EVAL", "return redis.error_reply('MINE no')", 0)]),
            batch.submit([("EVAL", "return {1, {'a', false}, redis.status_reply('ok')}", 0)]),
            batch.submit([]),
        ]
        noscript, wrongtype, lua, nested, empty = await asyncio.gather(*units)
        assert isinstance(classify(noscript[0]), redis_errors.NoScriptError)
        assert wrongtype[0] == b"OK" and wrongtype[2] == b"x"
        assert isinstance(wrongtype[1], redis_errors.ResponseError)
        assert str(wrongtype[1]).startswith("ERR value is not an integer")
        assert isinstance(lua[0], redis_errors.ResponseError) and str(lua[0]) == "MINE no"
        assert nested == [[1, [b"a", None], b"ok"]]
        assert empty == []
    finally:
        await batch.close()
        await client.aclose()


async def test_units_wait_for_the_connection_or_fail_with_it(
    redis_proc: RedisProcess, data_path: str
) -> None:
    admin = client_from_url(redis_proc.url)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    good = client_from_url(f"redis://:s3cret@127.0.0.1:{redis_proc.port}/3")
    bad = client_from_url(f"redis://:wrong@127.0.0.1:{redis_proc.port}/3")
    nobody = client_from_url(f"redis://127.0.0.1:{free_port()}/0")
    batches = [Batcher(direct(c, data_path, timeout=2)) for c in (good, bad, nobody)]
    try:
        # queued in one tick before any connection exists: AUTH and SELECT go first
        units = [batches[0].submit([("SET", f"k{i}", i), ("GET", f"k{i}")]) for i in range(50)]
        assert await asyncio.gather(*units) == [[b"OK", str(i).encode()] for i in range(50)]
        assert await batches[0].run([("CLIENT", "INFO")]) != []
        info = (await batches[0].run([("CLIENT", "INFO")]))[0]
        assert b" db=3 " in info
        refused = [batches[1].submit([("GET", "k1")]) for _ in range(5)]
        for outcome in await asyncio.gather(*refused, return_exceptions=True):
            assert isinstance(outcome, redis_errors.AuthenticationError), outcome
        unreachable = [batches[2].submit([("GET", "k1")]) for _ in range(5)]
        for outcome in await asyncio.gather(*unreachable, return_exceptions=True):
            assert isinstance(outcome, redis_errors.ConnectionError), outcome
    finally:
        for b in batches:
            await b.close()
        for c in (good, bad, nobody):
            await c.aclose()


async def test_a_failed_connect_fails_only_the_units_that_waited_for_it(
    data_path: str,
) -> None:
    """A unit posted while a connect attempt is under way gets an attempt of its own: the
    first attempt's refusal (here an AUTH refused, as a connect timed out on a loaded
    box in CI) fails only the units that were waiting when it began."""
    connections = 0
    auth_seen = asyncio.Event()
    release = asyncio.Event()

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nonlocal connections
            connections += 1
            self.first = connections == 1
            self.transport: Any = transport

        def data_received(self, data: bytes) -> None:
            if self.first:  # hold the AUTH's answer until the test says, then refuse it
                auth_seen.set()
                asyncio.get_running_loop().create_task(self.refuse())
            else:
                self.transport.write(b"+OK\r\n" * data.count(b"*"))

        async def refuse(self) -> None:
            await release.wait()
            self.transport.write(b"-WRONGPASS invalid password\r\n")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Connection(host="127.0.0.1", port=port, password="pw")
    batch = Batcher(direct(settings, data_path, timeout=5))
    try:
        first = batch.submit([("PING",)])
        await asyncio.wait_for(auth_seen.wait(), 5)
        later = batch.submit([("PING",)])  # while the first attempt waits for its AUTH
        release.set()
        with pytest.raises(redis_errors.AuthenticationError):
            await first
        assert await asyncio.wait_for(later, 5) == [b"OK"]
        assert connections == 2
    finally:
        await batch.close()
        server.close()
        await server.wait_closed()


async def test_garbage_from_the_server_fails_the_link(data_path: str) -> None:
    """A reply that is not RESP2: the units after it cannot be matched, so they fail
    (ConnectionError), the connection is dropped and the next one is clean."""
    connections = 0

    class Server(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            nonlocal connections
            connections += 1
            self.first = connections == 1
            self.transport: Any = transport

        def data_received(self, data: bytes) -> None:
            if self.first:  # a good reply, then an octet no RESP reply starts with
                self.transport.write(b"+OK\r\n?\r\n")
            else:
                self.transport.write(b"+OK\r\n" * data.count(b"*"))

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    batch = Batcher(direct(Connection(host="127.0.0.1", port=port), data_path, timeout=5))
    try:
        ok, lost = batch.submit([("PING",)]), batch.submit([("PING",)])
        assert await ok == [b"OK"]
        with pytest.raises(redis_errors.ConnectionError, match="protocol error"):
            await lost
        assert await batch.run([("PING",), ("PING",)]) == [b"OK", b"OK"]
        assert connections == 2
    finally:
        await batch.close()
        server.close()
        await server.wait_closed()


async def test_close_lets_the_units_in_flight_finish(
    redis_proc: RedisProcess, data_path: str
) -> None:
    client = client_from_url(redis_proc.url)
    batch = Batcher(direct(client, data_path, timeout=5))
    units = [batch.submit([("INCR", "c")]) for _ in range(200)]
    await asyncio.sleep(0)  # flushed: written, not answered yet
    await batch.close()
    assert sorted(u.result()[0] for u in units) == list(range(1, 201))
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
