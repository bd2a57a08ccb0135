"""The minimal RADIUS accounting servers of ``bench.floors``: one process, one step each.

    .venv/bin/python -m bench.floor_server --io transport|mmsg --codec none|pure|compiled \\
        [--dedup] [--redis none|callback|task] [--redis-port N] --auth-port A --acct-port B

Each flag adds one layer of what ``citywifi serve`` does per Accounting-Request, so the
difference between two steps of the ladder is the cost of that layer alone:

- ``--io transport``: uvloop's ``DatagramProtocol`` (``datagram_received``, one
  ``sendto`` per reply); ``--io mmsg``: the socket's descriptor read with ``recvmmsg``
  and written with ``sendmmsg`` through ``radius.fastpath`` (the compiled extension);
- ``--codec none``: no decoding, one MD5 per reply (the Response Authenticator over the
  request's header and authenticator, RFC 2866 §4); ``pure``: ``radius.packet`` decode
  with the Request Authenticator verified, then ``encode_reply``; ``compiled``: the same
  from ``radius._speedups``;
- ``--dedup``: a duplicate cache's lookup/begin/finish per request (RFC 5080):
  ``radius.dedup.DedupCache`` with ``--codec pure``, its compiled twin from
  ``radius._speedups`` with ``--codec compiled`` (``radius.fastpath``);
- ``--redis callback``: one ``EVALSHA`` per request on one pipelined connection (writes
  gathered per loop tick, replies parsed by hiredis and mapped back in order), the answer
  sent from the reply callback; ``--redis task``: the same, but each request is an
  asyncio Task awaiting a Future the reply resolves (the shape of today's server).

Accounting is answered only after its own Redis reply, as citywifi does. The script is a
per-session high-water mark (GET, compare, SET with expiry), about the reference
counter's work. Stops on SIGTERM. Not a server for anything but the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import hiredis

from radius import fastpath, packet
from radius.dedup import IN_PROGRESS, DedupCache, DedupKey, DuplicateCache

SCRIPT = (
    "local p=tonumber(redis.call('GET',KEYS[1]) or 0) local t=tonumber(ARGV[1]) "
    "if t>p then redis.call('SET',KEYS[1],t,'EX',3600) return t-p end return 0"
)
ACCT_SESSION_ID = 44
ACCT_SESSION_TIME = 46
ACCOUNTING_RESPONSE = 5

Address = Any  # (host, port) as the transport or recv_batch gives it
Send = Callable[[bytes, Address], None]


class RedisLink(asyncio.Protocol):
    """One pipelined Redis connection: commands gathered per loop tick into one write,
    replies (hiredis) handed to the callbacks in the order the commands were sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = hiredis.Reader()
        self.pending: collections.deque[Callable[[Any], None]] = collections.deque()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while (reply := self.reader.gets()) is not False:
            pending.popleft()(reply)

    def call(self, args: tuple[Any, ...], callback: Callable[[Any], None]) -> None:
        if not self.out:
            self.loop.call_soon(self.flush)
        self.out.append(hiredis.pack_command(args))
        self.pending.append(callback)

    def flush(self) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(self.out))
        self.out.clear()

    def call_future(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.call(args, fut.set_result)
        return fut


class Floor:
    """The per-datagram work of one step; ``send(reply, addr)`` is the socket's."""

    def __init__(self, args: argparse.Namespace, secret: bytes) -> None:
        self.secret = secret
        self.codec = args.codec
        path = fastpath.load()
        if args.codec == "compiled" and not path.compiled:
            raise SystemExit(f"--codec compiled: {path.reason}")
        self.decode = path.decode_request if args.codec == "compiled" else packet.decode_request
        self.encode = path.encode_reply if args.codec == "compiled" else packet.encode_reply
        cache = path.dedup_cache if args.codec == "compiled" else DedupCache
        self.dedup: DuplicateCache | None = cache(5.0) if args.dedup else None
        self.redis_mode = args.redis
        self.link: RedisLink | None = None
        self.sha = ""
        self.dropped = 0

    def datagram(self, data: bytes, addr: Address, send: Send) -> None:
        if self.codec == "none":
            head = bytes((ACCOUNTING_RESPONSE, data[1], 0, 20))
            digest = hashlib.md5(b"".join((head, data[4:20], self.secret))).digest()
            send(head + digest, addr)
            return
        try:
            req = self.decode(data, self.secret, require_message_authenticator=False)
        except packet.PacketError:
            self.dropped += 1
            return
        key: DedupKey | None = None
        dedup = self.dedup
        if dedup is not None:
            now = time.monotonic()
            key = (addr[0], addr[1], req.code, req.identifier, req.authenticator)
            cached = dedup.lookup(key, now)
            if cached is IN_PROGRESS:
                return
            if cached is not None:
                send(cached, addr)
                return
            dedup.begin(key, now)
        if self.link is None:
            self.answer(req, key, addr, send)
            return
        session = req.get(ACCT_SESSION_ID) or b"-"
        seconds = req.integer(ACCT_SESSION_TIME) or 0
        command = ("EVALSHA", self.sha, 1, b"floor:" + session, seconds)
        if self.redis_mode == "callback":
            self.link.call(command, lambda _reply: self.answer(req, key, addr, send))
        else:
            asyncio.get_running_loop().create_task(self.handle(command, req, key, addr, send))

    async def handle(
        self,
        command: tuple[Any, ...],
        req: packet.Request,
        key: DedupKey | None,
        addr: Address,
        send: Send,
    ) -> None:
        assert self.link is not None
        await self.link.call_future(command)
        self.answer(req, key, addr, send)

    def answer(self, req: packet.Request, key: DedupKey | None, addr: Address, send: Send) -> None:
        reply = self.encode(ACCOUNTING_RESPONSE, req, self.secret)
        if key is not None and self.dedup is not None:
            self.dedup.finish(key, reply, time.monotonic())
        send(reply, addr)


class TransportIO(asyncio.DatagramProtocol):
    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.send: Send = lambda data, addr: None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not a subclass of asyncio.DatagramTransport
        self.send = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.floor.datagram(data, addr, self.send)


class MmsgIO:
    """recvmmsg on readability, replies gathered and sent with sendmmsg once per batch
    (or per loop tick for replies from Redis callbacks); a partial send keeps the rest
    until the socket is writable."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        path = fastpath.load()
        if path.batch_io is None:
            raise SystemExit(f"--io mmsg: {path.reason}")
        self.io = path.batch_io
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.out: list[tuple[bytes, Address]] = []
        self.scheduled = False
        self.waiting = False
        self.floor: Floor | None = None

    def attach(self, floor: Floor) -> None:
        self.floor = floor
        self.loop.add_reader(self.fd, self.readable)

    def send(self, data: bytes, addr: Address) -> None:
        self.out.append((data, addr))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def readable(self) -> None:
        assert self.floor is not None
        datagram = self.floor.datagram
        recv = self.io.recv
        send = self.send
        while batch := recv(self.fd, 64):
            for data, addr in batch:
                datagram(data, addr, send)
            if len(batch) < 64:
                break
        self.flush()

    def flush(self) -> None:
        self.scheduled = False
        if not self.out or self.waiting:
            return
        sent = self.io.send(self.fd, self.out)
        if sent < len(self.out):
            del self.out[:sent]
            self.waiting = True
            self.loop.add_writer(self.fd, self.writable)
        else:
            self.out.clear()

    def writable(self) -> None:
        self.waiting = False
        self.loop.remove_writer(self.fd)
        self.flush()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    floor = Floor(args, args.secret.encode())
    if args.redis != "none":
        _, link = await loop.create_connection(
            lambda: RedisLink(loop), "127.0.0.1", args.redis_port
        )
        done: asyncio.Future[Any] = loop.create_future()
        link.call(("SCRIPT", "LOAD", SCRIPT), done.set_result)
        floor.sha = (await done).decode()
        floor.link = link
    for port in (args.auth_port, args.acct_port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", port))
        sock.setblocking(False)
        if args.io == "mmsg":
            MmsgIO(loop, sock).attach(floor)
        else:
            await loop.create_datagram_endpoint(lambda: TransportIO(floor), sock=sock)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    await stop


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench.floor_server", description=__doc__.splitlines()[0])
    ap.add_argument("--io", choices=["transport", "mmsg"], default="transport")
    ap.add_argument("--codec", choices=["none", "pure", "compiled"], default="none")
    ap.add_argument("--dedup", action="store_true")
    ap.add_argument("--redis", choices=["none", "callback", "task"], default="none")
    ap.add_argument("--redis-port", type=int, default=6379)
    ap.add_argument("--auth-port", type=int, required=True)
    ap.add_argument("--acct-port", type=int, required=True)
    ap.add_argument("--secret", default="testing123")
    args = ap.parse_args(argv)
    if args.redis != "none" and args.codec == "none":
        ap.error("--redis needs a --codec (the Acct-Session-Id is read from the request)")
    import uvloop

    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
