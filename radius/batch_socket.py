"""A RADIUS port read with ``recvmmsg`` and written with ``sendmmsg`` (issue 16).

uvloop's datagram transport makes one ``recvfrom`` and one ``datagram_received`` call
per datagram, and one ``sendto`` system call per answer. Here the socket's descriptor
is watched with ``loop.add_reader``: each time it is readable, up to 64
datagrams come in with one ``recvmmsg`` (``radius.fastpath.BatchIO``), each goes to the
protocol's ``datagram_received`` as before, and the answers it sends meanwhile go out
together with one ``sendmmsg`` at the end of the read callback (at most ``ROUNDS``
batches per callback, so that a flood cannot starve the Redis replies). Answers sent from
elsewhere (a Redis reply completing a request) are gathered and sent once per loop
iteration (``loop.call_soon``). A full socket buffer keeps the rest until the socket is
writable; a send error (ICMP-reported, a bad address) loses only that datagram, as
``transport.sendto`` would, and the NAS retransmits.

``BatchSocket`` looks to the protocol like its datagram transport (``sendto``,
``close``, ``get_extra_info``, ``is_closing``), so ``radius.server.RadiusEndpoint``
counts and sends exactly as it does on the event loop's transport, which stays the
path when the extension is missing (``CITYWIFI_PURE_PYTHON=1``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

import structlog

from radius.fastpath import Address, BatchIO

__all__ = ["BatchSocket", "open_batch_socket"]

log = structlog.get_logger("citywifi.radius")

RCVBUF = 4 << 20  # a burst of a few thousand requests waits in the kernel, not dropped
MAX_QUEUED = 65_536  # answers kept while the socket is not writable; beyond, dropped
_ARRAY = 64  # datagrams per recvmmsg call (the workspace is sized for this many)
ROUNDS = 4  # recvmmsg calls per read callback: under a flood the loop still runs the
# Redis replies and timers between callbacks (the reader fires again while readable)


class Receiver(Protocol):
    def connection_made(self, transport: Any) -> None: ...
    def datagram_received(self, data: bytes, addr: Any) -> None: ...


class BatchSocket:
    """The transport of one batched RADIUS port (see the module's docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: Receiver,
        io: BatchIO,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol = protocol
        self.io = io
        self.count = min(_ARRAY, io.max_batch)
        self.out: list[tuple[bytes, Address]] = []
        self.scheduled = False  # a flush is queued with call_soon
        self.waiting = False  # the socket buffer is full: a writer callback is set
        self.reading = False  # inside the read callback: its end flushes
        self.closed = False
        self.send_errors = 0
        protocol.connection_made(self)
        loop.add_reader(self.fd, self._readable)

    # -- the transport side the protocol sees -----------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self.sock.getsockname()
        if name == "socket":
            return self.sock
        return default

    def is_closing(self) -> bool:
        return self.closed

    def sendto(self, data: bytes, addr: Address) -> None:
        if self.closed:
            return
        if len(self.out) >= MAX_QUEUED:
            return  # the peer retransmits, as with a full buffer of the loop's transport
        self.out.append((data, addr))
        if not self.scheduled and not self.reading and not self.waiting:
            self.scheduled = True
            self.loop.call_soon(self._flush)

    def close(self) -> None:
        if self.closed:
            return
        self._flush()  # what was answered goes out before the socket closes
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self.waiting:
            self.loop.remove_writer(self.fd)
        self.sock.close()
        self.out.clear()

    # -- the loop's callbacks -----------------------------------------------------------

    def _readable(self) -> None:
        received = self.protocol.datagram_received
        recv = self.io.recv
        fd, count = self.fd, self.count
        self.reading = True
        try:
            for _ in range(ROUNDS):
                if self.closed:
                    break
                try:
                    batch = recv(fd, count)
                except OSError as exc:  # e.g. an ICMP error queued on the socket
                    log.debug("radius.recv_failed", error=str(exc))
                    break
                for data, addr in batch:
                    try:
                        received(data, addr)
                    except Exception:  # one datagram's bug must not lose the batch's rest
                        log.exception("radius.datagram_failed", source=str(addr[0]))
                if len(batch) < count:
                    break
        finally:
            self.reading = False
            self._flush()

    def _flush(self) -> None:
        self.scheduled = False
        out = self.out
        while out and not self.waiting and not self.closed:
            try:
                sent = self.io.send(self.fd, out)
            except OSError as exc:  # the first datagram could not go: only it is lost
                self.send_errors += 1
                log.debug("radius.send_failed", error=str(exc))
                del out[0]
                continue
            except (TypeError, ValueError) as exc:  # an address the socket cannot take
                self.send_errors += 1
                log.warning("radius.send_failed", error=str(exc))
                del out[0]
                continue
            if sent < len(out):
                del out[:sent]
                self.waiting = True
                self.loop.add_writer(self.fd, self._writable)
            else:
                out.clear()

    def _writable(self) -> None:
        self.waiting = False
        self.loop.remove_writer(self.fd)
        self._flush()


def open_batch_socket(
    loop: asyncio.AbstractEventLoop,
    protocol: Receiver,
    io: BatchIO,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
) -> BatchSocket:
    """Bind ``host:port`` (UDP, non-blocking) as ``create_datagram_endpoint`` would and
    serve it with batches; an address that cannot be bound raises ``OSError``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.setblocking(False)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return BatchSocket(loop, sock, protocol, io)
    raise error or OSError(f"cannot bind {host}:{port}")
