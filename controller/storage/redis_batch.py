"""Coalesce the RADIUS hot path's Redis calls: one write and one read per loop tick.

Every Access- and Accounting-Request costs one or two short Redis exchanges. Sent one
by one through redis-py, each pays a connection checkout, a timeout context, a socket
write and a reply wait: at a few thousand requests a second that overhead, not Redis,
is what the process spends its CPU on (docs/performance.md has the profiles). Here,
requests that arrive in the same event-loop tick queue their commands as *units*; at
the end of the tick all units go to Redis as one pipeline, and each unit gets its own
replies back, in order, errors as exception instances (like ``raise_on_error=False``).

Two ways to send a batch:

- ``DirectLink``: one connection of our own (TCP or unix socket), RESP encoded here;
  the replies are parsed as they arrive and each unit's future is set from the reply
  callback once its last reply is in (``ReplyRouter``, in C on the compiled data path):
  no Task, future or timer per batch. Used for a single Redis server (``redis://``,
  ``unix://``, the embedded default).
- ``PipelineLink``: a redis-py pipeline per batch. Used for everything redis-py must
  route or police: Cluster (slot routing), Sentinel (primary tracking), TLS and
  ``wait_replicas`` (the ``WAIT`` suffix), so those keep their guarantees.

A link that loses its connection (or reads garbage) fails every unit in flight with a
``ConnectionError``, one that waits longer than its timeout with a ``TimeoutError``; the
caller maps that to "not recorded" and the NAS retransmits. Nothing is ever acknowledged
that Redis did not answer.
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
from radius.running_loop import running_loop

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


class ReplyRouter:
    """Replies handed to the units waiting for them, in the order they were written:
    hiredis parses, this loop routes. The reference model and the pure-Python fallback of
    ``radius._speedups.ReplyRouter`` (``fastpath.ReplyRouting`` has the contract;
    tests/test_redis_replies.py holds the two together)."""

    def __init__(self, reply_error: Any, protocol_error: type[Exception]) -> None:
        self.reader = hiredis.Reader(replyError=reply_error, protocolError=protocol_error)
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self.answered = 0

    def push(self, count: int, future: asyncio.Future[list[Any]], /) -> None:
        if count < 1:
            raise ValueError("a unit waits for one reply or more")
        self.waiting.append((count, [], future))

    def feed(self, data: bytes, /) -> None:
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
                self.answered += 1
                if not future.done():
                    future.set_result(got)

    def gets(self) -> Any:
        return self.reader.gets()

    def take(self) -> list[asyncio.Future[list[Any]]]:
        futures = [future for _, _, future in self.waiting]
        self.waiting.clear()
        return futures

    def __len__(self) -> int:
        return len(self.waiting)


def router_factory() -> fastpath.RouterFactory:
    """The compiled router when the compiled data path is in use, else ``ReplyRouter``."""
    return fastpath.load().reply_router or ReplyRouter


Unit = tuple[list[Command], asyncio.Future[list[Any]]]
"""One caller's commands and the future of their replies."""


class _Protocol(asyncio.Protocol):
    """One connection: its units wait in the router, which answers them from
    ``data_received``; one watchdog timer polices the oldest unit's deadline."""

    def __init__(self, router: fastpath.ReplyRouting, timeout: float | None) -> None:
        self.router = router
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.pushed = 0  # units given to the router on this connection
        # (units pushed once the batch was, its deadline): a unit is answered when
        # router.answered reaches its number, so one entry per batch is enough
        self.deadlines: deque[tuple[int, float]] = deque()
        self.watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.router.feed(data)
        except hiredis.ProtocolError as exc:  # no later reply could be matched: drop it all
            self.fail(redis_errors.ConnectionError(f"Redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis_errors.ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def post(self, units: list[tuple[int, asyncio.Future[list[Any]]]], data: bytes) -> None:
        """Queue the units (count ≥ 1 each) and write their packed commands."""
        assert self.transport is not None and self.lost is None
        router = self.router
        for count, future in units:
            router.push(count, future)
        self.pushed += len(units)
        self.transport.write(data)
        if self.timeout is not None:
            loop = running_loop()
            deadline = loop.time() + self.timeout
            self.deadlines.append((self.pushed, deadline))
            if self.watchdog is None:
                self.watchdog = loop.call_at(deadline, self._check)

    def _check(self) -> None:
        self.watchdog = None
        deadlines, answered = self.deadlines, self.router.answered
        while deadlines and deadlines[0][0] <= answered:
            deadlines.popleft()
        if not deadlines:
            return
        loop = running_loop()
        if deadlines[0][1] <= loop.time():  # later replies would land on the wrong units
            self.fail(redis_errors.TimeoutError("Redis did not answer in time"))
        else:
            self.watchdog = loop.call_at(deadlines[0][1], self._check)

    def fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.deadlines.clear()
        for future in self.router.take():
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class DirectLink:
    """One pipelined connection to a single Redis server, opened on first use.

    ``post`` is the hot path (``Batcher`` calls it at the end of a tick): one write, and
    each unit's future waits in the connection's router, which sets it from the reply
    callback. No Task, no future or timer per batch. Units posted while there is no
    connection wait for the one being opened (a Task per connection, not per batch)
    and fail with its ``ConnectionError`` (or ``AuthenticationError``) if it cannot be
    made."""

    def __init__(self, connection: Connection, timeout: float | None) -> None:
        self._settings = connection  # host/port or path, credentials, db, timeouts
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._opening: asyncio.Task[None] | None = None
        self._pending: list[list[Unit]] = []  # batches waiting for the connection
        self._pack = packer()
        self._router = router_factory()

    @classmethod
    def for_client(cls, client: Redis) -> DirectLink:
        pool = client.connection_pool
        conn = pool.make_connection()  # type: ignore[no-untyped-call]
        return cls(conn, conn.socket_timeout)

    def _new_protocol(self) -> _Protocol:
        return _Protocol(
            self._router(redis_errors.ResponseError, hiredis.ProtocolError), self.timeout
        )

    async def _open(self) -> _Protocol:
        s = self._settings
        loop = asyncio.get_running_loop()
        connect_timeout = s.socket_connect_timeout or self.timeout
        if isinstance(s, UnixDomainSocketConnection):
            coro = loop.create_unix_connection(self._new_protocol, s.path)
        else:
            coro = loop.create_connection(self._new_protocol, s.host, s.port)
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
            future: asyncio.Future[list[Any]] = loop.create_future()
            self._write(protocol, [(hello, future)])
            for reply in await future:
                if isinstance(reply, redis_errors.ResponseError):
                    protocol.fail(redis_errors.ConnectionError("Redis refused the session"))
                    raise redis_errors.AuthenticationError(str(reply))
        return protocol

    async def _connect(self) -> None:
        """Open the connection, then write the batches that waited for it.

        A failed attempt fails the batches that were waiting when it began; batches
        posted while it ran get an attempt of their own (as each caller used to try
        once under a lock): one slow or refused connect, e.g. on a loaded machine at
        start-up, does not fail requests that came after it."""
        attempt, self._pending = self._pending, []
        try:
            protocol = await self._open()
        except BaseException as exc:  # every unit of this attempt learns it was not recorded
            self._opening = None
            error = exc if isinstance(exc, Exception) else redis_errors.ConnectionError(repr(exc))
            for batch in attempt:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            if self._pending:  # posted during this attempt: theirs comes next
                self._opening = asyncio.ensure_future(self._connect())
            return
        self._protocol, self._opening = protocol, None
        pending, self._pending = [*attempt, *self._pending], []
        for batch in pending:
            self._write(protocol, batch)

    def _write(self, protocol: _Protocol, batch: list[Unit]) -> None:
        units = []
        flat: list[Command] = []
        for commands, future in batch:
            if commands:
                units.append((len(commands), future))
                flat.extend(commands)
            elif not future.done():
                future.set_result([])  # nothing to ask Redis
        if not units:
            return
        if protocol.lost is not None:
            exc: Exception = protocol.lost
        else:
            try:
                data = self._pack(flat)
            except Exception as error:  # an argument RESP cannot carry: this batch fails
                exc = error
            else:
                protocol.post(units, data)
                return
        for _, future in units:
            if not future.done():
                future.set_exception(exc)

    def post(self, batch: list[Unit]) -> None:
        """Send a batch now (or as soon as the connection is open); each unit's future
        gets its replies, or the exception that means "not recorded"."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            self._write(protocol, batch)
            return
        self._pending.append(batch)
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._connect())

    async def send(self, commands: list[Command]) -> list[Any]:
        future: asyncio.Future[list[Any]] = running_loop().create_future()
        self.post([(commands, future)])
        return await future

    async def close(self) -> None:
        """Let the units in flight get their answers (a PING queued behind them is
        answered last: replies come in order), then close the connection."""
        protocol = self._protocol
        in_flight = protocol is not None and protocol.lost is None and len(protocol.router) > 0
        if in_flight or self._opening is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send([("PING",)]), 5)
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
            name = command[0]
            if type(name) is bytes:
                # redis-py's cluster pipeline resolves routing policies by a str name
                command = (name.decode(), *command[1:])
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
        self._queue: list[Unit] = []
        self._queued = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._post = link.post if isinstance(link, DirectLink) else None

    async def run(self, commands: list[Command]) -> list[Any]:
        return await self.submit(commands)

    def submit(self, commands: list[Command]) -> asyncio.Future[list[Any]]:
        """Queue one unit in this tick's batch; the future gets its replies (or the
        link's exception). For callers that continue from a callback, not a Task."""
        loop = running_loop()
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
        if self._post is not None:  # the replies reach the units from the reply callback
            self._post(batch)
            return
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Unit]) -> None:
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
