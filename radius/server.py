"""The asyncio shell of the RADIUS server: one DatagramProtocol per port.

It only feeds ``radius.core.ServerCore`` (which decides: drop, answer now, or hand the
request to the service) and does the I/O the core returns: ``sendto`` an ``Answer``,
run the service coroutine for a ``Dispatch`` and send what ``ServerCore.answered``
makes of its reply. No reply (``None``) means the request was not recorded: nothing is
sent and the NAS retransmits (RFC 2866 §2). Metrics and log lines are written here,
from the core's results: drops are counted exactly, their log lines limited per source
(``DropLog``), so a flood of bad packets cannot flood the log.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from radius import fastpath, metrics
from radius.batch_socket import BatchSocket, open_batch_socket
from radius.core import (
    DROP_REASONS,
    Answer,
    Dispatch,
    Drop,
    DropLine,
    DropLog,
    OnPacket,
    Peer,
    Role,
    ServerCore,
    Ticket,
)
from radius.dedup import DuplicateCache
from radius.events import (
    AccessAccept,
    AccessChallenge,
    AccessReject,
    AccessReply,
    AccessRequest,
    AccountingRequest,
    AccountingResponse,
    NoReply,
    Reply,
)
from radius.running_loop import running_loop

__all__ = ["DropLine", "DropLog", "RadiusEndpoint", "Service", "open_endpoint"]

log = structlog.get_logger("citywifi.radius")

_REPLIES = (AccessAccept, AccessReject, AccessChallenge, AccountingResponse)  # Reply's types


class Service(Protocol):
    log_requests: bool  # one "radius.request" event per outcome (costs ~10 µs each)

    def peer_for(self, host: str) -> Peer | None: ...
    async def access(self, event: AccessRequest) -> AccessReply | NoReply | None: ...
    async def accounting(self, event: AccountingRequest) -> AccountingResponse | None: ...


class SoonService(Protocol):
    """A service whose requests can continue from a Redis reply's callback (issue 16):
    the reply now, or a future of it (None: not recorded). The shell then needs no Task
    per request; a service without ``access_soon`` / ``accounting_soon`` is run as a
    coroutine."""

    def access_soon(
        self, event: AccessRequest
    ) -> AccessReply | NoReply | asyncio.Future[AccessReply | NoReply | None] | None: ...

    def accounting_soon(
        self, event: AccountingRequest
    ) -> AccountingResponse | asyncio.Future[AccountingResponse | None] | None: ...


class RadiusEndpoint(asyncio.DatagramProtocol):
    """One UDP port: ``role`` is "auth" (Access-Request) or "acct" (Accounting-Request)."""

    def __init__(
        self,
        role: Role,
        service: Service,
        *,
        dedup_window: float = 30.0,
        max_in_flight: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        can_record: Callable[[], bool] | None = None,
        on_packet: OnPacket | None = None,  # the per-client trace (radius.core.OnPacket)
    ) -> None:
        self.role: Role = role
        self.service = service
        self.core = ServerCore(
            role,
            service.peer_for,
            dedup_window=dedup_window,
            max_in_flight=max_in_flight,
            can_record=can_record,
            on_packet=on_packet,
        )
        self.clock = clock
        # the loop's datagram transport, or a BatchSocket (recvmmsg/sendmmsg, issue 16)
        self.transport: asyncio.DatagramTransport | BatchSocket | None = None
        # requests in progress: their tasks, or the futures of accounting_soon
        self.tasks: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: Callable[[Any], Awaitable[Reply | NoReply | None]] = (
            service.access if role == "auth" else service.accounting
        )
        soon = getattr(service, "access_soon" if role == "auth" else "accounting_soon", None)
        self._soon: Callable[[Any], object] | None = soon
        # the requests, drops, latency and per-NAS counters, and the tally: in C when
        # the data path is compiled, read at scrape and flush time (radius.metrics)
        self._counters = metrics.RADIUS.counters(role, DROP_REASONS)
        self._role_index = metrics.ROLE_INDEX[role]

    @property
    def dedup(self) -> DuplicateCache:
        """The core's RFC 5080 duplicate cache."""
        return self.core.dedup

    @property
    def max_in_flight(self) -> int:
        """Requests in progress beyond which new ones are dropped as overload (0 on stop:
        take none while draining)."""
        return self.core.max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        self.core.max_in_flight = value

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def _dropped(self, drop: Drop) -> None:
        """Count the drop; write its log line when the core's ``DropLog`` gave one."""
        self._counters.dropped(self._role_index, drop.client, drop.reason)  # and per NAS
        line = drop.line
        if line is None:
            return
        if drop.client is None:
            log.warning(
                "radius.unknown_client",
                port=self.role,
                source=line.source,
                suppressed=line.suppressed,
            )
        else:
            log.info(
                "radius.dropped",
                port=self.role,
                client=drop.client,
                source=line.source,
                reason=drop.reason,
                suppressed=line.suppressed,
            )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        outcome = self.core.receive(data, addr, self.clock())
        if type(outcome) is Dispatch:
            if self._soon is not None:
                self._begin(outcome)
                return
            loop = self._loop or running_loop()
            task = loop.create_task(self._answer(outcome))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif type(outcome) is Answer:
            self._send(outcome.data, addr)
            status = outcome.kind == "status"  # its client is heard; a duplicate's was
            client = getattr(self.core.peer_for(addr[0]), "id", None) if status else None
            self._counters.at_once(self._role_index, status, client)
        else:
            assert type(outcome) is Drop
            self._dropped(outcome)

    def _begin(self, dispatch: Dispatch) -> None:
        """Hand ``dispatch`` to ``access_soon`` / ``accounting_soon``; answer now, or
        when its future is done (no Task: the future is resolved from the Redis reply's
        callback)."""
        ticket = dispatch.ticket
        assert self._soon is not None
        try:
            reply = self._soon(dispatch.event)
        except Exception:
            log.exception("radius.handler_failed", port=self.role, client=ticket.client)
            reply = None
        if isinstance(reply, asyncio.Future):
            self.tasks.add(reply)
            reply.add_done_callback(functools.partial(self._settled, ticket))
            return
        answer = reply if isinstance(reply, (*_REPLIES, NoReply)) else None
        self._finish(ticket, answer)

    def _settled(self, ticket: Ticket, future: asyncio.Future[Any]) -> None:
        self.tasks.discard(future)
        reply: Reply | None = None
        try:
            reply = future.result()
        except (Exception, asyncio.CancelledError):
            log.exception("radius.handler_failed", port=self.role, client=ticket.client)
        self._finish(ticket, reply)

    async def _answer(self, dispatch: Dispatch) -> None:
        ticket = dispatch.ticket
        reply: Reply | NoReply | None = None
        try:
            reply = await self._handle(dispatch.event)
        except Exception:
            log.exception("radius.handler_failed", port=self.role, client=ticket.client)
        self._finish(ticket, reply)

    def _finish(self, ticket: Ticket, reply: Reply | NoReply | None) -> None:
        """Encode and send ``reply`` to ``ticket`` (None: counted as not recorded; a
        ``NoReply``: dropped with its reason)."""
        done = self.clock()
        try:
            outcome = self.core.answered(ticket, reply, done)
        except Exception:
            log.exception("radius.handler_failed", port=self.role, client=ticket.client)
            outcome = Drop("not_recorded", ticket.client)
        if type(outcome) is Drop or reply is None or isinstance(reply, NoReply):
            drop = outcome if type(outcome) is Drop else Drop("not_recorded", ticket.client)
            self._dropped(drop)
            if self.service.log_requests:
                log.info(
                    "radius.request",
                    port=self.role,
                    client=ticket.client,
                    result=drop.reason,
                    ms=round((done - ticket.started) * 1000, 2),
                )
            return
        assert type(outcome) is Answer
        if outcome.kind == "shrunk":
            log.warning(
                "radius.reply_too_long", port=self.role, client=ticket.client, code=reply.code
            )
        self._sent(ticket, outcome.data, reply, done)

    def _sent(self, ticket: Ticket, data: bytes, reply: Reply, done: float) -> None:
        # Count before sending: whoever sees the answer must also see it counted.
        # The per-NAS counts feed the "NAS silent for 1 h" alert and the reject rates.
        code, latency = data[0], done - ticket.started
        if not self._counters.sent(self._role_index, ticket.client, code, reply.result, latency):
            metrics.RADIUS.sent_in_python(
                self._role_index, ticket.client, code, reply.result, latency
            )
        self._send(data, ticket.source)
        if self.service.log_requests:
            log.info(
                "radius.request",
                port=self.role,
                client=ticket.client,
                venue=reply.venue,
                session=reply.session,
                person=reply.person,
                result=reply.result,
                ms=round((done - ticket.started) * 1000, 2),
            )

    def _send(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let in-flight requests finish (SIGTERM: accounting already sent to Redis)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


async def open_endpoint(
    role: Role,
    service: Service,
    host: str,
    port: int,
    *,
    dedup_window: float,
    max_in_flight: int,
    reuse_port: bool = False,
    can_record: Callable[[], bool] | None = None,
    on_packet: OnPacket | None = None,
) -> RadiusEndpoint:
    """Serve ``role`` on ``host:port``: with ``recvmmsg``/``sendmmsg`` batches when the
    compiled data path has them (``radius.fastpath.BatchIO``), else on the event loop's
    datagram transport; the endpoint does the same either way."""
    loop = asyncio.get_running_loop()

    def endpoint() -> RadiusEndpoint:
        return RadiusEndpoint(
            role,
            service,
            dedup_window=dedup_window,
            max_in_flight=max_in_flight,
            can_record=can_record,
            on_packet=on_packet,
        )

    batch_io = fastpath.load().batch_io
    if batch_io is not None:
        protocol = endpoint()
        open_batch_socket(loop, protocol, batch_io, host, port, reuse_port=reuse_port)
        return protocol
    _, protocol = await loop.create_datagram_endpoint(
        endpoint, local_addr=(host, port), reuse_port=reuse_port or None
    )
    return protocol
