"""Coalesce the RADIUS hot path's Redis calls: one write and one read per loop tick.

Every Access- and Accounting-Request costs one or two short Redis exchanges. Sent one
by one through redis-py, each pays a connection checkout, a timeout context, a socket
write and a reply wait: at a few thousand requests a second that overhead, not Redis,
is what the process spends its CPU on (docs/performance.md has the profiles). Here,
requests that arrive in the same event-loop tick queue their commands as *units*; at
the end of the tick all units go to Redis as one pipeline, and each unit gets its own
replies back, in order, errors as exception instances (like ``raise_on_error=False``).

Two ways to send a batch:

- ``DirectLink``: one connection of our own (TCP or unix socket), RESP encoded here,
  replies parsed by hiredis as they arrive, matched to units first-in first-out. Used
  for a single Redis server (``redis://``, ``unix://``, the embedded default).
- ``PipelineLink``: a redis-py pipeline per batch. Used for everything redis-py must
  route or police: Cluster (slot routing), Sentinel (primary tracking), TLS and
  ``wait_replicas`` (the ``WAIT`` suffix), so those keep their guarantees.

A link that loses its connection or waits longer than its timeout fails every unit in
flight with a ``ConnectionError``; the caller maps that to "not recorded" and the NAS
retransmits. Nothing is ever acknowledged that Redis did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio.client import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from radius import fastpath

Command = Sequence[Any]
MAX_BATCH = 1024  # commands per write; a burst beyond this is split over ticks


class Link(Protocol):
    async def send(self, commands: list[Command]) -> list[Any]: ...
    async def close(self) -> None: ...


def pack(commands: Sequence[Command]) -> bytes:
    """RESP arrays of bulk strings, all commands in one buffer (hiredis encodes each in
    C). The reference for ``radius._speedups.pack_commands``, which makes the same
    octets in one call (tests/test_redis_batch.py holds the two together)."""
    return b"".join([hiredis.pack_command(tuple(command)) for command in commands])


def packer() -> fastpath.PackCommands:
    """The compiled packer when the compiled data path is in use, else ``pack``."""
    return fastpath.load().pack_commands or pack


def classify(error: redis_errors.ResponseError) -> redis_errors.RedisError:
    """The exception redis-py would raise for this error reply (NOSCRIPT, READONLY…)."""
    message = str(error)
    if message.startswith("NOSCRIPT"):
        return redis_errors.NoScriptError(message)
    if message.startswith("READONLY"):
        return redis_errors.ReadOnlyError(message)
    if message.startswith("LOADING"):
        return redis_errors.BusyLoadingError(message)
    return error


class _Protocol(asyncio.Protocol):
    """Replies are handed to waiters in the order their commands were written."""

    def __init__(self) -> None:
        # error replies arrive as ResponseError instances; ``classify`` refines them
        self.reader = hiredis.Reader(replyError=redis_errors.ResponseError)
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while waiting:
            reply = self.reader.gets()
            if reply is False:
                return
            count, got, future = waiting[0]
            got.append(reply)
            if len(got) == count:
                waiting.popleft()
                if not future.done():
                    future.set_result(got)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis_errors.ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def fail(self, exc: Exception) -> None:
        self.lost = exc
        while self.waiting:
            _, _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class DirectLink:
    """One pipelined connection to a single Redis server, opened on first use."""

    def __init__(self, connection: Connection, timeout: float | None) -> None:
        self._settings = connection  # host/port or path, credentials, db, timeouts
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._pack = packer()

    @classmethod
    def for_client(cls, client: Redis) -> DirectLink:
        pool = client.connection_pool
        conn = pool.make_connection()  # type: ignore[no-untyped-call]
        return cls(conn, conn.socket_timeout)

    async def _open(self) -> _Protocol:
        s = self._settings
        loop = asyncio.get_running_loop()
        connect_timeout = s.socket_connect_timeout or self.timeout
        if isinstance(s, UnixDomainSocketConnection):
            coro = loop.create_unix_connection(_Protocol, s.path)
        else:
            coro = loop.create_connection(_Protocol, s.host, s.port)
        try:
            _, protocol = await asyncio.wait_for(coro, connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise redis_errors.ConnectionError(f"cannot reach Redis: {exc}") from exc
        hello: list[Command] = []
        if s.password:
            hello.append(("AUTH", s.username, s.password) if s.username else ("AUTH", s.password))
        if s.db:
            hello.append(("SELECT", s.db))
        if hello:
            for reply in await self._exchange(protocol, hello):
                if isinstance(reply, redis_errors.ResponseError):
                    protocol.fail(redis_errors.ConnectionError("Redis refused the session"))
                    raise redis_errors.AuthenticationError(str(reply))
        return protocol

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is None or self._protocol.lost is not None:
                self._protocol = await self._open()
            return self._protocol

    async def _exchange(self, protocol: _Protocol, commands: list[Command]) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        assert protocol.transport is not None
        protocol.waiting.append((len(commands), [], future))
        protocol.transport.write(self._pack(commands))
        if self.timeout is None:
            return await future
        timer = loop.call_later(self.timeout, self._overdue, protocol, future)
        try:
            return await future
        finally:
            timer.cancel()

    @staticmethod
    def _overdue(protocol: _Protocol, future: asyncio.Future[list[Any]]) -> None:
        if not future.done():  # later replies would land on the wrong waiters: drop it all
            protocol.fail(redis_errors.TimeoutError("Redis did not answer in time"))

    async def send(self, commands: list[Command]) -> list[Any]:
        protocol = await self._connected()
        if protocol.lost is not None:
            raise protocol.lost
        return await self._exchange(protocol, commands)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


class PipelineLink:
    """Batches through a redis-py pipeline: routing, failover and WAIT stay redis-py's."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.client = client

    async def send(self, commands: list[Command]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        return None


def link_for(client: Redis | RedisCluster) -> Link:
    """The fastest link that keeps every guarantee of this client's topology."""
    if isinstance(client, RedisCluster):
        return PipelineLink(client)
    pool = client.connection_pool
    plain = pool.connection_class in (Connection, UnixDomainSocketConnection)
    durable = getattr(client, "wait_replicas", 0)
    if plain and not durable and type(pool).__name__ == "ConnectionPool":
        return DirectLink.for_client(client)
    return PipelineLink(client)


class Batcher:
    """Units queued during one loop tick leave together; each awaits only its replies."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._queue: list[tuple[list[Command], asyncio.Future[list[Any]]]] = []
        self._queued = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, commands: list[Command]) -> list[Any]:
        return await self.submit(commands)

    def submit(self, commands: list[Command]) -> asyncio.Future[list[Any]]:
        """Queue one unit in this tick's batch; the future gets its replies (or the
        link's exception). For callers that continue from a callback, not a Task."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((commands, future))
        self._queued += len(commands)
        if self._queued >= MAX_BATCH:
            self._flush()
        return future

    def _flush(self) -> None:
        if not self._queue:
            return
        batch, self._queue, self._queued = self._queue, [], 0
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[list[Command], asyncio.Future[list[Any]]]]) -> None:
        flat = [command for commands, _ in batch for command in commands]
        try:
            replies = await self.link.send(flat)
        except BaseException as exc:  # every unit learns it was not recorded
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        at = 0
        for commands, future in batch:
            if not future.done():
                future.set_result(replies[at : at + len(commands)])
            at += len(commands)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        with contextlib.suppress(Exception):
            await self.link.close()
