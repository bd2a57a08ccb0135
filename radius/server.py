"""The asyncio shell of the RADIUS server: one DatagramProtocol per port.

A datagram is checked against its client and the packet rules (radius.packet), answered
from the RFC 5080 duplicate cache when it is a retransmission, and otherwise handed to
the service, whose reply is encoded and sent. No reply (``None``) means the request was
not recorded: nothing is sent and the NAS retransmits (RFC 2866 §2).

Status-Server is answered only while the store can record (``can_record``, RFC 5997
§4.2): proxies judge a server's liveness by it, and must fail over while it cannot do
its work. Drops are counted exactly; their log lines are limited per source
(``DropLog``), so a flood of bad packets cannot flood the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import structlog

from radius import metrics
from radius.attrs import Code
from radius.dedup import IN_PROGRESS, DedupCache, DedupKey
from radius.packet import PacketError, Request, decode_request, encode_reply

log = structlog.get_logger("citywifi.radius")


class Reply(NamedTuple):
    """What the service answers: a code, the encoded attributes, and for the request log
    who and what it was about (person id, venue, session id, result)."""

    code: int
    attrs: bytes = b""
    about: tuple[str, str, str, str] = ("", "", "", "")


DROP_LOG_INTERVAL = 60.0  # seconds between two log lines about one source's drops
DROP_LOG_SOURCES = 10_000  # sources tracked; beyond, the rest share one line ("*")
RESULTS = {  # reply code -> the result label of the request counters
    int(Code.ACCESS_ACCEPT): "accept",
    int(Code.ACCESS_REJECT): "reject",
    int(Code.ACCOUNTING_RESPONSE): "ok",
}

# Source (host, port) of the request being handled, set in its own task: the service
# records where a NAS of a CIDR client sends from (its RFC 5176 address).
request_source: ContextVar[tuple[str, int]] = ContextVar("request_source")


@dataclass(frozen=True, slots=True)
class DropLine:
    """A log line to write about a drop: the source it is about ("*" for the untracked
    rest) and how many drops of that source went unlogged since its previous line."""

    source: str
    suppressed: int


class DropLog:
    """At most one log line per source per ``interval`` about dropped packets.

    Log flooding: a hostile or broken sender must not turn every bad datagram into a log
    line. The first drop from a source is logged; the next ones within ``interval`` are
    only counted, and the first after it is logged with that count. The drop counters
    stay exact. Pure (``now`` is passed in) and bounded: at most ``max_sources`` sources
    are tracked (expired ones are pruned at most once per interval, so a flood of new
    sources costs no scan per packet); beyond that the others share the source "*".
    """

    def __init__(
        self, interval: float = DROP_LOG_INTERVAL, max_sources: int = DROP_LOG_SOURCES
    ) -> None:
        self.interval = interval
        self.max_sources = max_sources
        self._seen: dict[str, list[float]] = {}  # source -> [last line at, suppressed]
        self._pruned_at = -float("inf")

    def admit(self, source: str, now: float) -> DropLine | None:
        """The line to log for this drop, or None to count it silently."""
        entry = self._seen.get(source)
        if entry is None and len(self._seen) >= self.max_sources:
            if now - self._pruned_at >= self.interval:
                self._pruned_at = now
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
            if len(self._seen) >= self.max_sources:
                source = "*"
                entry = self._seen.get(source)
        if entry is None or now - entry[0] >= self.interval:
            self._seen[source] = [now, 0]
            return DropLine(source, int(entry[1]) if entry is not None else 0)
        entry[1] += 1
        return None


class Peer(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def secret(self) -> bytes: ...
    @property
    def require_message_authenticator(self) -> bool: ...


class Service(Protocol):
    log_requests: bool  # one "radius.request" event per outcome (costs ~10 µs each)

    def peer_for(self, host: str) -> Peer | None: ...
    async def access(self, peer: Any, request: Request) -> Reply | None: ...
    async def accounting(self, peer: Any, request: Request) -> Reply | None: ...


class RadiusEndpoint(asyncio.DatagramProtocol):
    """One UDP port: ``role`` is "auth" (Access-Request) or "acct" (Accounting-Request)."""

    def __init__(
        self,
        role: str,
        service: Service,
        *,
        dedup_window: float = 30.0,
        max_in_flight: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        can_record: Callable[[], bool] | None = None,
    ) -> None:
        self.role = role
        self.service = service
        # whether the store can record now (Status-Server is answered only then)
        self.can_record: Callable[[], bool] = can_record or (lambda: True)
        self.dedup = DedupCache(dedup_window)
        self.max_in_flight = max_in_flight
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[tuple[str, int], Any] = {}  # (client id, code) -> its counter
        self._drop_log = DropLog()
        self._expected = Code.ACCESS_REQUEST if role == "auth" else Code.ACCOUNTING_REQUEST
        self._status_reply = Code.ACCESS_ACCEPT if role == "auth" else Code.ACCOUNTING_RESPONSE
        self._handle: Callable[[Any, Request], Awaitable[Reply | None]] = (
            service.access if role == "auth" else service.accounting
        )
        self._drops = {
            reason: metrics.DROPPED.labels(role, reason)
            for reason in (
                "unknown_client",
                "malformed",
                "invalid_attribute",
                "unexpected_code",
                "duplicate_in_progress",
                "overload",
                "not_recorded",
                "missing_message_authenticator",
                "bad_message_authenticator",
                "bad_request_authenticator",
                "proxy_state_without_message_authenticator",
                "store_unavailable",
            )
        }
        self._latency = metrics.LATENCY.labels(role)
        self._by_code = {c: metrics.REQUESTS.labels(role, role, r) for c, r in RESULTS.items()}

    def _answered(self, code: int) -> Any:
        counter = self._by_code.get(code)
        return (
            counter
            if counter is not None
            else metrics.REQUESTS.labels(self.role, self.role, str(code))
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def _drop(self, reason: str) -> None:
        counter = self._drops.get(reason)
        if counter is None:
            counter = self._drops[reason] = metrics.DROPPED.labels(self.role, reason)
        counter.inc()

    def _log_drop(self, host: str, now: float, reason: str, client: str | None) -> None:
        """Count the drop; log it unless its source was logged within the interval."""
        self._drop(reason)
        line = self._drop_log.admit(host, now)
        if line is None:
            return
        if client is None:
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
                client=client,
                source=line.source,
                reason=reason,
                suppressed=line.suppressed,
            )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = self.clock()
        host = addr[0]
        peer = self.service.peer_for(host)
        if peer is None:
            self._log_drop(host, now, "unknown_client", None)
            return
        try:
            request = decode_request(
                data,
                peer.secret,
                require_message_authenticator=peer.require_message_authenticator,
            )
        except PacketError as exc:
            self._log_drop(host, now, exc.reason, peer.id)
            return
        if request.code == Code.STATUS_SERVER:  # RFC 5997 §3: answered at once, not cached
            if not self.can_record():  # RFC 5997 §4.2: not alive while it cannot record
                self._log_drop(host, now, "store_unavailable", peer.id)
                return
            self._send(encode_reply(self._status_reply, request, peer.secret), addr)
            metrics.REQUESTS.labels(self.role, "status", "ok").inc()
            return
        if request.code != self._expected:
            self._drop("unexpected_code")
            return
        key: DedupKey = (host, addr[1], request.code, request.identifier, request.authenticator)
        cached = self.dedup.lookup(key, now)
        if cached is IN_PROGRESS:
            self._drop("duplicate_in_progress")
            return
        if isinstance(cached, bytes):
            self._send(cached, addr)
            metrics.REQUESTS.labels(self.role, "duplicate", "cached").inc()
            return
        if len(self.tasks) >= self.max_in_flight:
            self._drop("overload")
            return
        self.dedup.begin(key, now)
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._answer(peer, request, key, addr, now))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(
        self, peer: Any, request: Request, key: DedupKey, addr: tuple[str | Any, int], t0: float
    ) -> None:
        reply: bytes | None = None
        result: Reply | None = None
        request_source.set((str(addr[0]), int(addr[1])))  # this task's context only
        try:
            result = await self._handle(peer, request)
            if result is not None:
                reply = self._encode(peer, request, result)
        except Exception:
            log.exception("radius.handler_failed", port=self.role, client=peer.id)
        finally:
            done = self.clock()
            self.dedup.finish(key, reply, done)
        if reply is None or result is None:
            self._drop("not_recorded")
            if self.service.log_requests:
                log.info(
                    "radius.request",
                    port=self.role,
                    client=peer.id,
                    result="not_recorded",
                    ms=round((done - t0) * 1000, 2),
                )
            return
        # Count before sending: whoever sees the answer must also see it counted.
        self._answered(reply[0]).inc()
        code = reply[0]
        counter = self._clients.get((peer.id, code))
        if counter is None:  # per NAS: the "NAS silent for 1 h" alert, reject rates
            label = RESULTS.get(code, str(code))
            counter = metrics.CLIENT_REQUESTS.labels(peer.id, self.role, label)
            self._clients[(peer.id, code)] = counter
        counter.inc()
        self._latency.observe(done - t0)
        self._send(reply, addr)
        if self.service.log_requests:
            person, venue, session, outcome = result.about
            log.info(
                "radius.request",
                port=self.role,
                client=peer.id,
                venue=venue,
                session=session,
                person=person,
                result=outcome,
                ms=round((done - t0) * 1000, 2),
            )

    def _encode(self, peer: Any, request: Request, result: Reply) -> bytes:
        try:
            return encode_reply(result.code, request, peer.secret, result.attrs)
        except ValueError:
            # the echoed Proxy-States leave no room for our attributes (RFC 2865 §4: 4096
            # octets at most): answer without them; an Accept without its Session-Timeout
            # and Class must not go out, so that becomes a bare Reject
            log.warning("radius.reply_too_long", port=self.role, client=peer.id, code=result.code)
            code = Code.ACCESS_REJECT if result.code == Code.ACCESS_ACCEPT else result.code
            return encode_reply(code, request, peer.secret, b"")

    def _send(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    async def drain(self, timeout: float = 5.0) -> None:
        """Let in-flight requests finish (SIGTERM: accounting already sent to Redis)."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


async def open_endpoint(
    role: str,
    service: Service,
    host: str,
    port: int,
    *,
    dedup_window: float,
    max_in_flight: int,
    reuse_port: bool = False,
    can_record: Callable[[], bool] | None = None,
) -> RadiusEndpoint:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: RadiusEndpoint(
            role,
            service,
            dedup_window=dedup_window,
            max_in_flight=max_in_flight,
            can_record=can_record,
        ),
        local_addr=(host, port),
        reuse_port=reuse_port or None,
    )
    return protocol
