"""The HTTP listeners' edge: what keeps slow, idle and piled-up connections from taking
the portal (and the process's file descriptors) down.

Anyone on the portal network can open connections, send nothing or dribble a byte now
and then, and so hold a socket and a file descriptor each. Without limits a few hundred
of them stop new connections and make the archive's writes fail with EMFILE. aiohttp
closes an idle connection after ``keepalive_timeout`` (also one that never completes a
request head, since 3.9), but has no deadline of its own for a request's head or body
and no connection caps. The edge adds, in front of aiohttp's protocol and as little as
possible:

- **Connection caps** (``ConnectionCounts``, pure): at most ``max_connections`` open at
  once in this process, and at most ``max_connections_per_ip`` from one source (an IPv4
  address, an IPv6 /64: one subscriber's prefix). ``portal.trusted_proxies`` count only
  toward the total, as every citizen behind them shares their address. A connection
  beyond a cap is answered at once (``429`` from one source, ``503`` in all) and closed
  without reaching aiohttp. The total is further kept below the process's fd limit minus
  ``reserved_fds`` (``connection_cap``), so Redis connections, the archive's DuckDB files
  and the logs always find descriptors; ``raise_fd_limit`` first lifts the soft limit to
  the hard one (systemd's soft default of 1024 is meant to be raised by programs that,
  like this one, never use ``select()``).
- **Head deadline** (``GuardedProtocol``): a new connection must complete its first
  request head within ``header_timeout``; later heads and idle time between requests
  are bounded by aiohttp's ``keepalive_timeout``. The guard only looks for the blank
  line that ends a head; it parses nothing else.
- **Body deadline** (``body_deadline``, a middleware): a request's body must have
  arrived within ``body_timeout`` of its head, else the request is answered 408 and the
  connection closed.

Every refusal is a JSON ``{"error", "message"}`` answer with ``Connection: close``, and
counted (``citywifi_http_connections_refused_total``, ``citywifi_http_timeouts_total``).
With ``serve --workers N`` the caps are per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import json
import os
import re
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, cast

import structlog
from aiohttp import web
from prometheus_client import Counter, Gauge

from controller.config import HttpSettings, IPNetwork
from controller.services.errors import RequestError
from controller.services.portal.ratelimit import ip_bucket
from controller.web.errors import BodyTimeout, render_json

log = structlog.get_logger("citywifi.http")

FD_TARGET: Final = 1 << 16  # raise the soft fd limit up to this (and the hard limit)
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line ending a request head (CRLF or LF)

OPEN = Gauge(
    "citywifi_http_connections",
    "HTTP connections open (citizen and metrics listeners)",
    multiprocess_mode="livesum",
)
CAP = Gauge(
    "citywifi_http_connections_max",
    "HTTP connections allowed at once: http.max_connections, kept below the fd limit "
    "minus http.reserved_fds",
    multiprocess_mode="livesum",
)
REFUSED = Counter(
    "citywifi_http_connections_refused_total",
    "HTTP connections refused at accept, by cap: total, per_ip",
    ["cap"],
)
TIMEOUTS = Counter(
    "citywifi_http_timeouts_total",
    "HTTP requests cut off for arriving too slowly, by part: head, body",
    ["part"],
)


class EdgeError(RuntimeError):
    """The HTTP edge cannot start as configured (e.g. no descriptors left for it)."""


class Admission(enum.Enum):
    OK = "ok"
    TOTAL = "total"
    PER_IP = "per_ip"


def source_key(host: str) -> str:
    """What the per-source cap counts: the same source as the portal's per-IP limits (an
    IPv4 address, an IPv6 /64; ``controller.services.portal.ratelimit.ip_bucket``)."""
    return ip_bucket(host.split("%", 1)[0])


class ConnectionCounts:
    """Open connections in total and per source; pure (no sockets, no clock)."""

    def __init__(self, cap: int, per_source: int, exempt: Iterable[IPNetwork] = ()) -> None:
        self.cap = cap
        self.per_source = per_source
        self.exempt = tuple(exempt)
        self.total = 0
        self.by_source: dict[str, int] = {}

    def _exempt(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in net for net in self.exempt)

    def admit(self, host: str) -> tuple[Admission, str | None]:
        """Count a new connection from ``host`` if the caps allow it; the key to
        ``release`` it with (None: counted in the total only)."""
        if self.total >= self.cap:
            return Admission.TOTAL, None
        key = None if self._exempt(host) else source_key(host)
        if key is not None:
            if self.by_source.get(key, 0) >= self.per_source:
                return Admission.PER_IP, None
            self.by_source[key] = self.by_source.get(key, 0) + 1
        self.total += 1
        return Admission.OK, key

    def release(self, key: str | None) -> None:
        self.total -= 1
        if key is not None:
            left = self.by_source[key] - 1
            if left:
                self.by_source[key] = left
            else:
                del self.by_source[key]


def connection_cap(configured: int, fd_limit: int, fds_open: int, reserved: int) -> int:
    """Connections HTTP may hold: the configured cap, kept below what the fd limit leaves
    after the descriptors open now and the reserve."""
    return max(0, min(configured, fd_limit - fds_open - reserved))


def raise_fd_limit(target: int = FD_TARGET) -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit (at most ``target``); the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
    return target if soft == resource.RLIM_INFINITY else soft


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: assume little is open
        return 16


def answer(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection (written before aiohttp)."""
    body = json.dumps({"error": code, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 5\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSALS: Final = {
    Admission.TOTAL: answer(
        503, "Service Unavailable", "too_many_connections", "the server is full; retry shortly"
    ),
    Admission.PER_IP: answer(
        429,
        "Too Many Requests",
        "too_many_connections",
        "too many connections from your address; close some and retry",
    ),
}
HEAD_TIMEOUT: Final = answer(
    408, "Request Timeout", "request_timeout", "the request head did not arrive in time"
)


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    header_timeout: float
    body_timeout: float


class ConnectionGuard:
    """Wraps the protocol factory of every HTTP listener of this process: one count for
    all of them (they share the process's descriptors)."""

    def __init__(self, counts: ConnectionCounts, limits: EdgeLimits) -> None:
        self.counts = counts
        self.limits = limits
        CAP.set(counts.cap)

    @classmethod
    def from_settings(
        cls, http: HttpSettings, exempt: Iterable[IPNetwork], *, fds_open: int | None = None
    ) -> ConnectionGuard:
        """Caps from ``[http]`` and the fd limit (raised first); call it once the other
        resources (Redis, RADIUS sockets) are open, so that they are counted."""
        limit = raise_fd_limit()
        opened = open_fds() if fds_open is None else fds_open
        cap = connection_cap(http.max_connections, limit, opened, http.reserved_fds)
        if cap < 1:
            raise EdgeError(
                f"no file descriptors left for HTTP connections: the limit is {limit}, "
                f"{opened} are open and http.reserved_fds keeps {http.reserved_fds}; "
                "raise LimitNOFILE / ulimit -n or lower http.reserved_fds"
            )
        if cap < http.max_connections:
            log.info("http.connection_cap", cap=cap, fd_limit=limit, fds_open=opened)
        counts = ConnectionCounts(cap, http.max_connections_per_ip, exempt)
        return cls(counts, EdgeLimits(http.header_timeout, http.body_timeout))

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: GuardedProtocol(self, inner())


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol behind the caps and the head deadline; forwards everything."""

    __slots__ = ("_guard", "_inner", "_key", "_tail", "_timer", "_transport")

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = inner
        self._key: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, for a blank line split across reads
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer: Any = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        admission, self._key = self._guard.counts.admit(str(host))
        if admission is not Admission.OK:
            REFUSED.labels(admission.value).inc()
            self._inner = None
            transport.write(REFUSALS[admission])
            transport.close()
            return
        OPEN.inc()
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.header_timeout, self._head_late)
        assert self._inner is not None
        self._inner.connection_made(transport)

    def _head_late(self) -> None:
        self._timer = None
        TIMEOUTS.labels("head").inc()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(HEAD_TIMEOUT)
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            if _HEAD_END.search(self._tail + data):
                self._timer.cancel()
                self._timer = None
            else:
                self._tail = data[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        inner, self._inner = self._inner, None
        if inner is None:
            return  # refused: never counted
        self._guard.counts.release(self._key)
        OPEN.dec()
        self._transport = None
        inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with the guard between the listening socket and aiohttp."""

    __slots__ = ("_guard", "_host", "_port", "_reuse_port", "port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._guard = guard
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self.port = port  # the bound one once started (port 0: chosen by the OS)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
        sockets = self._server.sockets
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._port


def body_deadline(timeout: float) -> Any:
    """Middleware: a body still incomplete ``timeout`` seconds after its head makes the
    request a 408 (the handler's next read raises ``BodyTimeout``) and the connection is
    closed after the answer."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        content = request.content
        if content.is_eof():
            response: web.StreamResponse = await handler(request)
            return response
        expired = False

        def expire() -> None:
            nonlocal expired
            if not content.is_eof():
                expired = True
                TIMEOUTS.labels("body").inc()
                content.set_exception(BodyTimeout())

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            response = await handler(request)
        except BodyTimeout:
            timeout_error = RequestError(
                "request_timeout", 408, "the request body did not arrive in time"
            )
            response = render_json(request, timeout_error)
        finally:
            timer.cancel()
        if expired:
            response.force_close()
        return response

    return middleware
