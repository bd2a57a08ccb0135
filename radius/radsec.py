"""RadSec (RFC 6614): RADIUS over TLS over TCP, the asyncio shell.

A TCP listener (port 2083 by default) that does the TLS handshake itself (so that each
failed handshake is counted by its reason), with mutual authentication: the server
certificate and key, and the CA bundle a client certificate must chain to. A client is
identified by its certificate (``PeerCertificate``: SHA-256 fingerprint, subject and
subject alternative names), never by its source address; the shared secret on the
connection is the fixed ``radsec`` (RFC 6614 §2.3). TLS 1.2 or later, no compression.

Packets are read from the stream by their RADIUS Length (RFC 6614 §2.3; RFC 6613 §2.1):
a Length below 20 or above 4096 closes the connection (RFC 6613 §2.6.2: on a stream a
packet that cannot be framed leaves nothing to resynchronise on), and so does a packet
the core refuses as malformed or forged. Each packet goes through the same sans-I/O
core (``radius.core.ServerCore``) and the same service as UDP: one ``RadiusEndpoint``
per connection and kind, the Access-Requests (and Status-Server, RFC 5997, answered with
Access-Accept) to the auth one, the Accounting-Requests to the acct one, so that the
request counters, latency, request log and trace are those of UDP. Their duplicate
caches are per connection (RFC 6614 §2.6: a retransmission on the same connection is
answered from the cache); ``max_in_flight`` bounds the requests in progress on one
connection; a connection silent for ``idle_timeout`` seconds is closed.

Dynamic authorization (RFC 5176) over the same connection (RFC 6614 §2.5): a peer that
supports it gets Disconnect/CoA-Requests down its open connection (``channel_for``,
which ``radius.dae.DaeClient`` uses); their ACK/NAK come back on it and are matched by
Identifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, cast

import structlog
from prometheus_client import Counter, Gauge

from radius.attrs import Code
from radius.core import Drop, OnPacket, Peer
from radius.events import (
    AccessReply,
    AccessRequest,
    AccountingRequest,
    AccountingResponse,
    NoReply,
)
from radius.packet import encode_request
from radius.server import RadiusEndpoint

__all__ = [
    "CLOSING_DROPS",
    "MAX_LENGTH",
    "MIN_LENGTH",
    "RADSEC_SECRET",
    "FramingError",
    "PeerCertificate",
    "RadsecListener",
    "RadsecPeer",
    "RadsecService",
    "certificate_of",
    "frame_length",
    "handshake_reason",
    "open_radsec",
    "server_context",
]

log = structlog.get_logger("citywifi.radsec")

RADSEC_SECRET: Final = b"radsec"  # RFC 6614 §2.3
MIN_LENGTH: Final = 20  # RFC 2865 §3
MAX_LENGTH: Final = 4096
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds a client has to finish the TLS handshake

CONNECTIONS = Gauge(
    "citywifi_radsec_connections",
    "RadSec (TLS) connections open (handshaking ones included)",
    multiprocess_mode="livesum",  # serve --workers N: the workers' connections added up
)
ACCEPTED = Counter(
    "citywifi_radsec_accepted_total",
    "RadSec connections whose client certificate named a client, by client id",
    ["client"],
)
HANDSHAKE_FAILURES = Counter(
    "citywifi_radsec_handshake_failures_total",
    "RadSec TLS handshakes that failed, by reason (certificate_verify_failed: a client "
    "certificate not signed by [radsec] ca_certificates; no_certificate; protocol: not "
    "TLS 1.2+ or no shared cipher; timeout; closed; other)",
    ["reason"],
)
REFUSED = Counter(
    "citywifi_radsec_refused_certificates_total",
    "RadSec connections closed after the handshake: a valid certificate that names no "
    "client (its fingerprint and subject match no radsec_fingerprint / radsec_subject)",
    ["reason"],
)
CLOSED = Counter(
    "citywifi_radsec_closed_total",
    "RadSec connections closed, by why: idle, peer (the client closed), bad_length, "
    "bad_packet (malformed or forged: RFC 6613 §2.6.2), shutdown",
    ["reason"],
)

# A packet the core refuses for these reasons cannot be trusted to have been framed by a
# RADIUS peer with the right secret: the connection is closed (RFC 6613 §2.6.2).
CLOSING_DROPS: Final = frozenset(
    {
        "malformed",
        "invalid_attribute",
        "bad_message_authenticator",
        "bad_request_authenticator",
        "missing_message_authenticator",
        "proxy_state_without_message_authenticator",
    }
)

_HANDSHAKE_REASONS: Final = {
    "CERTIFICATE_VERIFY_FAILED": "certificate_verify_failed",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_certificate",
    "UNSUPPORTED_PROTOCOL": "protocol",
    "WRONG_VERSION_NUMBER": "protocol",
    "NO_SHARED_CIPHER": "protocol",
    "NO_PROTOCOLS_AVAILABLE": "protocol",
    "VERSION_TOO_LOW": "protocol",
    "TLSV1_ALERT_PROTOCOL_VERSION": "protocol",
    "HTTP_REQUEST": "protocol",
    "TLSV1_ALERT_UNKNOWN_CA": "client_refused_server",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client_refused_server",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client_refused_server",
}

_ACCESS: Final = int(Code.ACCESS_REQUEST)
_ACCOUNTING: Final = int(Code.ACCOUNTING_REQUEST)
_STATUS: Final = int(Code.STATUS_SERVER)
_DAE_REPLIES: Final = frozenset(
    int(c) for c in (Code.DISCONNECT_ACK, Code.DISCONNECT_NAK, Code.COA_ACK, Code.COA_NAK)
)


class FramingError(ValueError):
    """A RADIUS Length outside 20..4096: the stream cannot be framed any more."""


def frame_length(header: bytes) -> int:
    """The length of the packet whose first 4 octets are ``header`` (RFC 2865 §3: the
    Length field counts the whole packet, 20..4096)."""
    length = int.from_bytes(header[2:4], "big")
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise FramingError(f"RADIUS Length {length} outside {MIN_LENGTH}..{MAX_LENGTH}")
    return length


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What identifies a RadSec client: its certificate's SHA-256 fingerprint (64
    lower-case hex digits, of the DER), its subject's common name, and the names it
    holds (the common name and the DNS, URI and IP subject alternative names, lower-case)."""

    fingerprint: str
    subject: str = ""
    names: tuple[str, ...] = ()


def certificate_of(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> PeerCertificate | None:
    """The verified client certificate of a finished handshake (None: there is none)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    info: Mapping[str, Any] = ssl_object.getpeercert() or {}
    common = ""
    for rdn in info.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                common = str(value)
    names = [common.lower()] if common else []
    for kind, value in info.get("subjectAltName", ()):
        if kind in ("DNS", "URI", "IP Address"):
            names.append(str(value).lower())
    return PeerCertificate(hashlib.sha256(der).hexdigest(), common, tuple(dict.fromkeys(names)))


def handshake_reason(exc: BaseException) -> str:
    """The bounded ``reason`` label of a failed handshake."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError):
        reason = _HANDSHAKE_REASONS.get(str(exc.reason or ""))
        if reason is not None:
            return reason
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return "closed"
        return "other"
    if isinstance(exc, ConnectionError | EOFError | asyncio.IncompleteReadError):
        return "closed"
    return "other"


def server_context(certificate: Path, private_key: Path, ca_certificates: Path) -> ssl.SSLContext:
    """The server side of mutual TLS: TLS 1.2 or later, a client certificate required
    and verified against ``ca_certificates``, no compression, no renegotiation."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 6614 §2.3 asks for TLS 1.1+
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(certificate), str(private_key))
    context.load_verify_locations(cafile=str(ca_certificates))
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


@dataclass(frozen=True, slots=True)
class RadsecPeer:
    """A RadSec client as the core sees it: its id, the fixed secret, the MA rule."""

    id: str
    require_message_authenticator: bool = True
    secret: bytes = field(default=RADSEC_SECRET, repr=False)


class RadsecService(Protocol):
    """The RADIUS service (``radius.server.Service``) plus the certificate lookup."""

    log_requests: bool

    def radsec_peer(self, certificate: PeerCertificate) -> Peer | None: ...
    async def access(self, event: AccessRequest) -> AccessReply | NoReply | None: ...
    async def accounting(self, event: AccountingRequest) -> AccountingResponse | None: ...


class _Bound:
    """The service as one connection's endpoints see it: every packet is of its peer."""

    def __init__(self, service: RadsecService, peer: RadsecPeer) -> None:
        self._service = service
        self._peer = peer
        self.access = service.access
        self.accounting = service.accounting

    @property
    def log_requests(self) -> bool:
        return self._service.log_requests

    @log_requests.setter
    def log_requests(self, value: bool) -> None:
        self._service.log_requests = value

    def peer_for(self, host: str) -> Peer | None:
        return self._peer


class _Stream:
    """What a ``RadiusEndpoint`` sends through: the connection's writer (the address
    it passes is the connection's own peer, ignored)."""

    def __init__(self, writer: TlsStream) -> None:
        self.writer = writer

    def sendto(self, data: bytes, addr: object = None) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.writer.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class _Endpoint(RadiusEndpoint):
    """A ``RadiusEndpoint`` on one connection: a drop that means the stream cannot be
    trusted (``CLOSING_DROPS``) ends the connection."""

    def __init__(self, *args: Any, on_fatal: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_fatal = on_fatal

    def _dropped(self, drop: Drop) -> None:
        super()._dropped(drop)
        if drop.reason in CLOSING_DROPS:
            self.on_fatal(drop.reason)


class Connection:
    """One authenticated RadSec connection: its peer, its two endpoints, and the
    requests this server sent down it (Disconnect/CoA) waiting for their answers."""

    def __init__(
        self,
        peer: RadsecPeer,
        certificate: PeerCertificate,
        writer: TlsStream,
        auth: _Endpoint,
        acct: _Endpoint,
        max_in_flight: int,
    ) -> None:
        self.peer = peer
        self.certificate = certificate
        self.writer = writer
        self.auth = auth
        self.acct = acct
        self.max_in_flight = max_in_flight
        self.source: tuple[str, int] = tuple(writer.get_extra_info("peername")[:2])
        self.fatal = ""  # the reason the connection must close, once it must
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._next_id = 0

    def feed(self, data: bytes) -> None:
        """One framed packet from the peer."""
        code = data[0]
        if code in _DAE_REPLIES:  # the answer to a Disconnect/CoA we sent (RFC 6614 §2.5)
            future = self._pending.get(data[1])
            if future is not None and not future.done():
                future.set_result(data)
            return
        endpoint = self.acct if code == _ACCOUNTING else self.auth
        if code not in (_ACCESS, _ACCOUNTING, _STATUS):
            endpoint._dropped(Drop("unexpected_code", self.peer.id))
            return
        if code != _STATUS and self.auth.core.in_flight + self.acct.core.in_flight >= (
            self.max_in_flight
        ):
            endpoint._dropped(Drop("overload", self.peer.id))
            return
        endpoint.datagram_received(data, self.source)

    @property
    def secret(self) -> bytes:
        return RADSEC_SECRET

    async def exchange(self, code: int, attrs: bytes, timeout: float) -> tuple[bytes, bytes] | None:
        """Send a request (Disconnect/CoA) to the peer on this connection and wait up to
        ``timeout`` seconds for the reply with its Identifier: (reply, the request's
        authenticator), or None (no answer, no free Identifier, or the connection closed).
        Sent once: a reliable transport is not retransmitted on (RFC 6613 §2.6.1)."""
        if self.writer.is_closing():
            return None
        for step in range(256):
            ident = (self._next_id + step) & 0xFF
            if ident not in self._pending:
                break
        else:
            return None
        self._next_id = (ident + 1) & 0xFF
        data = encode_request(code, ident, RADSEC_SECRET, attrs)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):
                reply = await future
        except (TimeoutError, ConnectionError):
            return None
        finally:
            if not future.done():
                future.cancel()
            del self._pending[ident]
        return reply, data[4:20]

    def closed(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError("the RadSec connection closed"))


class TlsStream(asyncio.Protocol):
    """One TCP connection with TLS done here over memory BIOs (``ssl.SSLObject``).

    Not ``loop.start_tls``: a ClientHello that arrives before it takes over is read as
    plain data and lost (uvloop starts reading after ``connection_made``), and the
    handshake hangs. Here every octet goes through the one ``SSLObject``: ``handshake()``
    raises the handshake's own error (counted by reason), the plaintext is fed to
    ``reader``, and ``write`` encrypts.
    """

    def __init__(self, listener: RadsecListener) -> None:
        self.listener = listener
        self.reader = asyncio.StreamReader(limit=2 * MAX_LENGTH)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.tls = listener.context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.transport: asyncio.Transport | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._closing = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # the reader pauses the socket while 2 x its limit of plaintext waits unread
        self.reader.set_transport(self.transport)
        self.listener._accepted(self)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._incoming.write(data)
        if self._done.done() and not self._handshaken():
            return  # the handshake failed or timed out: the connection is being closed
        if not self._done.done():
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return
            except ssl.SSLError as exc:
                self._flush()  # the alert
                self._done.set_exception(exc)
                self._abort()
                return
            self._done.set_result(None)
        self._read()
        self._flush()

    def eof_received(self) -> bool:
        self._ended(ConnectionResetError("the peer closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc or ConnectionResetError("the connection closed"))
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- what the listener uses
    async def handshake(self) -> None:
        await self._done

    def write(self, data: bytes) -> None:
        if self._closing or self.transport is None or self.transport.is_closing():
            return
        try:
            self.tls.write(data)
        except ssl.SSLError:
            self._abort()
            return
        self._flush()

    async def drain(self) -> None:
        await self._writable.wait()

    def is_closing(self) -> bool:
        return self._closing or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._handshaken():
            with contextlib.suppress(ssl.SSLError, ValueError):
                self.tls.unwrap()  # close_notify
            self._flush()
        if self.transport is not None:
            self.transport.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.tls
        return self.transport.get_extra_info(name, default) if self.transport else default

    # -- inside
    def _read(self) -> None:
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                self.reader.feed_eof()
                return
            except ssl.SSLError as exc:
                self.reader.set_exception(exc)
                self._abort()
                return
            if not chunk:
                self.reader.feed_eof()
                return
            self.reader.feed_data(chunk)

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending and self.transport is not None and not self.transport.is_closing():
            self.transport.write(pending)

    def _handshaken(self) -> bool:
        done = self._done
        return done.done() and not done.cancelled() and done.exception() is None

    def _ended(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
        if not self.reader.at_eof():
            self.reader.feed_eof()

    def _abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()


class RadsecListener:
    """The RadSec port: accepts TCP, does the TLS handshake, identifies the client by
    its certificate (``service.radsec_peer``) and serves its packets."""

    def __init__(
        self,
        service: RadsecService,
        context: ssl.SSLContext,
        *,
        idle_timeout: float = 120.0,
        max_in_flight: int = 256,
        dedup_window: float = 30.0,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        can_record: Callable[[], bool] | None = None,
        on_packet: OnPacket | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.context = context
        self.idle_timeout = idle_timeout
        self.max_in_flight = max_in_flight
        self.dedup_window = dedup_window
        self.handshake_timeout = handshake_timeout
        self.can_record = can_record
        self.on_packet = on_packet
        self.clock = clock
        self.server: asyncio.Server | None = None
        self.connections: dict[str, list[Connection]] = {}  # client id -> open ones
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: TlsStream(self), host, port, reuse_port=reuse_port or None
        )

    def _accepted(self, stream: TlsStream) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(stream))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def channel_for(self, client: str) -> Connection | None:
        """The open connection of ``client`` to send Disconnect/CoA down (the newest)."""
        open_ = [c for c in self.connections.get(client, ()) if not c.writer.is_closing()]
        return open_[-1] if open_ else None

    async def _handle(self, stream: TlsStream) -> None:
        CONNECTIONS.inc()
        try:
            await self._serve(stream)
        finally:
            CONNECTIONS.dec()
            stream.close()

    async def _serve(self, writer: TlsStream) -> None:
        peername = writer.get_extra_info("peername")
        source = f"{peername[0]}:{peername[1]}" if peername else "?"
        try:
            async with asyncio.timeout(self.handshake_timeout):
                await writer.handshake()
        except Exception as exc:  # ssl.SSLError, OSError, TimeoutError, EOF
            reason = handshake_reason(exc)
            HANDSHAKE_FAILURES.labels(reason).inc()
            log.warning("radsec.handshake_failed", source=source, reason=reason, error=str(exc))
            return
        reader = writer.reader
        certificate = certificate_of(writer.get_extra_info("ssl_object"))
        found = self.service.radsec_peer(certificate) if certificate is not None else None
        if certificate is None or found is None:
            REFUSED.labels("unknown_certificate").inc()
            log.warning(
                "radsec.refused",
                source=source,
                fingerprint=certificate.fingerprint if certificate else None,
                subject=certificate.subject if certificate else None,
            )
            return
        peer = RadsecPeer(found.id, found.require_message_authenticator)
        connection = self._connection(peer, certificate, writer)
        self.connections.setdefault(peer.id, []).append(connection)
        ACCEPTED.labels(peer.id).inc()
        log.info(
            "radsec.connected", client=peer.id, source=source, fingerprint=certificate.fingerprint
        )
        why = "shutdown"
        try:
            why = await self._read(reader, connection)
        finally:
            CLOSED.labels(why).inc()
            connection.closed()
            for endpoint in (connection.auth, connection.acct):
                endpoint.max_in_flight = 0
                await endpoint.drain(timeout=2.0)
            kept = [c for c in self.connections.get(peer.id, ()) if c is not connection]
            if kept:
                self.connections[peer.id] = kept
            else:
                self.connections.pop(peer.id, None)
            log.info("radsec.closed", client=peer.id, source=source, reason=why)

    def _connection(
        self, peer: RadsecPeer, certificate: PeerCertificate, writer: TlsStream
    ) -> Connection:
        bound = _Bound(self.service, peer)
        stream = _Stream(writer)
        holder: list[Connection] = []

        def fatal(reason: str) -> None:
            if holder and not holder[0].fatal:
                holder[0].fatal = reason

        def endpoint(role: Any) -> _Endpoint:
            made = _Endpoint(
                role,
                bound,
                dedup_window=self.dedup_window,
                max_in_flight=self.max_in_flight,
                clock=self.clock,
                can_record=self.can_record,
                on_packet=self.on_packet,
                on_fatal=fatal,
            )
            made.connection_made(stream)  # type: ignore[arg-type]
            return made

        connection = Connection(
            peer, certificate, writer, endpoint("auth"), endpoint("acct"), self.max_in_flight
        )
        holder.append(connection)
        return connection

    async def _read(self, reader: asyncio.StreamReader, connection: Connection) -> str:
        """Read and feed packets until the connection must end; why it ended."""
        while not self._stopping:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    header = await reader.readexactly(4)
                    length = frame_length(header)
                    data = header + await reader.readexactly(length - 4)
            except TimeoutError:
                return "idle"
            except FramingError as exc:
                log.warning("radsec.bad_length", client=connection.peer.id, error=str(exc))
                return "bad_length"
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return "shutdown" if self._stopping else "peer"
            connection.feed(data)
            if connection.fatal:
                log.warning("radsec.bad_packet", client=connection.peer.id, reason=connection.fatal)
                return "bad_packet"
            await connection.writer.drain()
        return "shutdown"

    async def stop(self, timeout: float = 5.0) -> None:
        """Take no new connections, finish the requests in progress, close the rest."""
        self._stopping = True
        if self.server is not None:
            self.server.close()
        for connections in list(self.connections.values()):
            for connection in connections:
                for endpoint in (connection.auth, connection.acct):
                    endpoint.max_in_flight = 0
                    await endpoint.drain(timeout=timeout)
                connection.writer.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=timeout)
        if self.server is not None:
            await self.server.wait_closed()


async def open_radsec(
    service: RadsecService,
    context: ssl.SSLContext,
    host: str,
    port: int,
    *,
    idle_timeout: float,
    max_in_flight: int,
    dedup_window: float,
    reuse_port: bool = False,
    can_record: Callable[[], bool] | None = None,
    on_packet: OnPacket | None = None,
) -> RadsecListener:
    listener = RadsecListener(
        service,
        context,
        idle_timeout=idle_timeout,
        max_in_flight=max_in_flight,
        dedup_window=dedup_window,
        can_record=can_record,
        on_packet=on_packet,
    )
    await listener.start(host, port, reuse_port=reuse_port)
    return listener
