"""RFC 5176 Dynamic Authorization client: Disconnect-Request and CoA-Request to a NAS.

The pure part builds the request attributes for one session the way its NAS vendor wants
them (``VENDORS``: every per-vendor quirk of dynamic authorization lives in that table)
and reads an ACK or NAK (``interpret``). ``DaeClient`` is the asyncio shell: one UDP
socket per address family, requests encoded with ``radius.packet.encode_request``
(Message-Authenticator first, RFC 5176 §3.4), the identical datagram retransmitted with
backoff (RFC 5080 §2.2.1), replies verified with ``decode_reply`` (Response Authenticator,
RFC 5176 §2.3) and, when they carry an Event-Timestamp, checked to be recent (RFC 5176
§3.5). A reply that fails verification is ignored and counted: a forged, replayed or
corrupt answer must neither end the wait nor be believed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

import structlog
from prometheus_client import Counter

from radius.attrs import Attr, Code, ErrorCause
from radius.packet import PacketError, attr, attr_int, attr_text, decode_reply, encode_request

__all__ = [
    "VENDORS",
    "DaeChannel",
    "DaeClient",
    "DaeOutcome",
    "DaeResult",
    "DaeTarget",
    "SessionIdentity",
    "VendorRules",
    "coa_attributes",
    "disconnect_attributes",
    "event_timestamp_fresh",
    "interpret",
    "retry_schedule",
]

log = structlog.get_logger("citywifi.dae")

SENT = Counter(
    "citywifi_dae_requests_total",
    "Disconnect / CoA requests sent (first transmissions), by kind",
    ["kind"],
)
RETRANSMITTED = Counter(
    "citywifi_dae_retransmissions_total",
    "Disconnect / CoA requests sent again after no answer, by kind",
    ["kind"],
)
RESULTS = Counter(
    "citywifi_dae_results_total",
    "Outcome of Disconnect / CoA requests: acked, naked, failed (no valid answer)",
    ["kind", "result"],
)
NAKS = Counter(
    "citywifi_dae_naks_total",
    "Disconnect-NAK / CoA-NAK by Error-Cause (RFC 5176 §3.5; 'none' when absent)",
    ["kind", "error_cause"],
)
BAD_REPLIES = Counter(
    "citywifi_dae_bad_replies_total",
    "Datagrams on the DAE socket ignored: unmatched, malformed or failing verification",
    ["reason"],
)

_KNOWN_CAUSES: Final = frozenset(int(c) for c in ErrorCause)
_ACK: Final = {int(Code.DISCONNECT_REQUEST): int(Code.DISCONNECT_ACK), 43: int(Code.COA_ACK)}
_NAK: Final = {int(Code.DISCONNECT_REQUEST): int(Code.DISCONNECT_NAK), 43: int(Code.COA_NAK)}
_KIND: Final = {int(Code.DISCONNECT_REQUEST): "disconnect", int(Code.COA_REQUEST): "coa"}
BACKOFF_CAP: Final = 4.0
"""A retransmission waits at most this many times ``timeout``."""
TIMESTAMP_WINDOW: Final = 300.0
"""Default seconds an ACK/NAK's Event-Timestamp may be from now (RFC 5176 §3.5)."""


class DaeOutcome(StrEnum):
    ACK = "ack"
    NAK = "nak"
    TIMEOUT = "timeout"  # no valid answer after every retransmission


@dataclass(frozen=True, slots=True)
class DaeResult:
    outcome: DaeOutcome
    error_cause: int | None = None
    session_gone: bool = False
    """The NAS has no such session (NAK 503, or a vendor's equivalent): close it here."""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class DaeTarget:
    """Where a NAS listens for dynamic authorization (its client ``coa_port``)."""

    host: str
    port: int
    secret: bytes
    vendor: str = "generic"
    client: str = ""  # its client id: a RadSec connection of it is used when open


class DaeChannel(Protocol):
    """A connection to the NAS that carries dynamic authorization (RadSec, RFC 6614
    §2.5): ``exchange`` sends the request once (a reliable transport is not retransmitted
    on) and returns the reply with the request's authenticator, or None."""

    @property
    def secret(self) -> bytes: ...
    async def exchange(
        self, code: int, attrs: bytes, timeout: float
    ) -> tuple[bytes, bytes] | None: ...


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """A session as its NAS described it in accounting (values as the NAS sent them)."""

    acct_session_id: str
    user_name: str = ""
    calling_station_id: str = ""
    nas_ip_address: str = ""
    nas_identifier: str = ""
    framed_ip_address: str = ""
    nas_ipv6_address: str = ""


@dataclass(frozen=True, slots=True)
class VendorRules:
    """How one NAS family wants dynamic authorization (RFC 5176 leaves room; vendors use it).

    ``user_name_required``: the NAS silently drops a request without User-Name.
    ``calling_station_id`` / ``framed_ip_address``: include them to identify the session.
    ``nas_identification``: include NAS-IP-Address / NAS-IPv6-Address / NAS-Identifier
    (RFC 5176 §3: a NAS may NAK 403 a request identifying another NAS, so they are sent
    exactly as received).
    ``nak_without_cause_is_gone``: a NAK without Error-Cause means "no such session".
    """

    name: str
    user_name_required: bool = False
    calling_station_id: bool = True
    framed_ip_address: bool = False
    nas_identification: bool = True
    nak_without_cause_is_gone: bool = False


VENDORS: Final[Mapping[str, VendorRules]] = {
    # RFC 5176 as written: session by Acct-Session-Id (+ User-Name, Calling-Station-Id),
    # NAS by NAS-IP-Address / NAS-Identifier; only Error-Cause 503 means "no such session".
    "generic": VendorRules("generic"),
    # CoovaChilli (chilli.c cb_radius_coa_ind): drops a request without User-Name, matches
    # User-Name and, when present, Acct-Session-Id (case-insensitively); answers a NAK
    # without Error-Cause when nothing matched; sends Stop with Admin-Reset.
    "chilli": VendorRules("chilli", user_name_required=True, nak_without_cause_is_gone=True),
    # MikroTik RouterOS (/radius incoming): identifies hotspot sessions by User-Name,
    # Acct-Session-Id and Framed-IP-Address (unverified against current RouterOS).
    "mikrotik": VendorRules("mikrotik", framed_ip_address=True),
}


def rules_for(vendor: str) -> VendorRules:
    return VENDORS.get(vendor, VENDORS["generic"])


def _packed(text: str, version: int) -> bytes | None:
    """The address in network order if ``text`` is an IP address of that version."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address.packed if address.version == version else None


def _identification(identity: SessionIdentity, rules: VendorRules, event_timestamp: int) -> bytes:
    parts: list[bytes] = []
    if identity.user_name:
        parts.append(attr_text(Attr.USER_NAME, identity.user_name))
    parts.append(attr_text(Attr.ACCT_SESSION_ID, identity.acct_session_id))
    if rules.calling_station_id and identity.calling_station_id:
        parts.append(attr_text(Attr.CALLING_STATION_ID, identity.calling_station_id))
    if rules.framed_ip_address:
        framed = _packed(identity.framed_ip_address, 4)
        if framed is not None:
            parts.append(attr(Attr.FRAMED_IP_ADDRESS, framed))
    if rules.nas_identification:
        nas_ip = _packed(identity.nas_ip_address, 4)
        if nas_ip is not None:
            parts.append(attr(Attr.NAS_IP_ADDRESS, nas_ip))
        nas_ipv6 = _packed(identity.nas_ipv6_address, 6)  # RFC 3162 §2.1, RFC 5176 §3
        if nas_ipv6 is not None:
            parts.append(attr(Attr.NAS_IPV6_ADDRESS, nas_ipv6))
        if identity.nas_identifier:
            parts.append(attr_text(Attr.NAS_IDENTIFIER, identity.nas_identifier))
    # RFC 5176 §3.5: Event-Timestamp lets the NAS refuse replays outside its window.
    parts.append(attr_int(Attr.EVENT_TIMESTAMP, event_timestamp & 0xFFFFFFFF))
    return b"".join(parts)


def disconnect_attributes(identity: SessionIdentity, vendor: str, event_timestamp: int) -> bytes:
    """Attributes of a Disconnect-Request for one session (RFC 5176 §3). Raises ValueError
    when the vendor needs a User-Name the session does not have."""
    rules = rules_for(vendor)
    if rules.user_name_required and not identity.user_name:
        raise ValueError(f"{rules.name}: a Disconnect-Request needs a User-Name")
    return _identification(identity, rules, event_timestamp)


def coa_attributes(
    identity: SessionIdentity, vendor: str, event_timestamp: int, session_timeout: int
) -> bytes:
    """Attributes of a CoA-Request giving one session a new Session-Timeout (RFC 5176 §3.2:
    the identification attributes plus the authorization change)."""
    rules = rules_for(vendor)
    if rules.user_name_required and not identity.user_name:
        raise ValueError(f"{rules.name}: a CoA-Request needs a User-Name")
    return _identification(identity, rules, event_timestamp) + attr_int(
        Attr.SESSION_TIMEOUT, max(1, session_timeout)
    )


def interpret(
    request_code: int, reply_code: int, error_cause: int | None, vendor: str
) -> DaeResult:
    """The meaning of a verified ACK or NAK (RFC 5176 §3.5: Error-Cause 503 is
    Session-Context-Not-Found)."""
    if reply_code == _ACK[request_code]:
        return DaeResult(DaeOutcome.ACK, error_cause)
    gone = error_cause == ErrorCause.SESSION_CONTEXT_NOT_FOUND or (
        error_cause is None and rules_for(vendor).nak_without_cause_is_gone
    )
    return DaeResult(DaeOutcome.NAK, error_cause, session_gone=gone)


def event_timestamp_fresh(value: bytes | None, now: float, window: float) -> bool:
    """Whether a reply's Event-Timestamp allows believing it (RFC 5176 §3.5: outside the
    window a packet is a replay, to be silently discarded). No Event-Timestamp, or a
    ``window`` of 0 (not checked), passes; one that is not 4 octets does not."""
    if value is None or window <= 0:
        return True
    if len(value) != 4:
        return False
    return abs(now - int.from_bytes(value, "big")) <= window


def retry_schedule(timeout: float, retries: int) -> tuple[float, ...]:
    """Seconds to wait after each transmission: ``timeout``, doubling, capped at
    ``BACKOFF_CAP`` × ``timeout`` (the first transmission plus ``retries`` more)."""
    return tuple(timeout * min(2.0**i, BACKOFF_CAP) for i in range(retries + 1))


@dataclass(slots=True)
class _Pending:
    authenticator: bytes
    secret: bytes
    request_code: int
    future: asyncio.Future[tuple[int, int | None]]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, owner: DaeClient) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        BAD_REPLIES.labels("socket_error").inc()


class DaeClient:
    """Sends Disconnect/CoA requests and waits for their verified answers.

    Replies are matched by source address, source port and Identifier (the NAS answers from
    the port it was sent to, RFC 5176 §2.3). Identifiers are allocated per NAS address and
    port; at most 256 requests to one NAS are outstanding, more wait. A reply with an
    Event-Timestamp further than ``timestamp_window`` seconds from ``clock()`` is ignored.
    """

    def __init__(
        self,
        *,
        bind: str = "0.0.0.0",
        timeout: float = 2.0,
        retries: int = 3,
        timestamp_window: float = TIMESTAMP_WINDOW,
        clock: Callable[[], float] = time.time,
        channels: Callable[[str], DaeChannel | None] | None = None,
    ) -> None:
        self.bind = bind
        # client id -> its open RadSec connection, if any (radius.radsec.RadsecListener)
        self.channels = channels
        self.timeout = timeout
        self.retries = retries
        self.timestamp_window = timestamp_window
        self.clock = clock
        self._sockets: dict[int, _Socket] = {}
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._next_id: dict[tuple[str, int], int] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._open_lock = asyncio.Lock()

    async def close(self) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        for sock in self._sockets.values():
            if sock.transport is not None:
                sock.transport.close()
        self._sockets.clear()

    async def _socket(self, family: int) -> _Socket:
        async with self._open_lock:
            sock = self._sockets.get(family)
            if sock is not None and sock.transport is not None and not sock.transport.is_closing():
                return sock
            bind = self.bind
            if family == socket.AF_INET6 and ":" not in bind:
                bind = "::"
            elif family == socket.AF_INET and ":" in bind:
                bind = "0.0.0.0"
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_datagram_endpoint(
                lambda: _Socket(self), local_addr=(bind, 0), family=family
            )
            self._sockets[family] = proto
            return proto

    def local_port(self, family: int = socket.AF_INET) -> int | None:
        sock = self._sockets.get(family)
        if sock is None or sock.transport is None:
            return None
        return int(sock.transport.get_extra_info("sockname")[1])

    async def disconnect(
        self, target: DaeTarget, identity: SessionIdentity, *, event_timestamp: int
    ) -> DaeResult:
        """Ask the NAS to end one session (RFC 5176 §3.1). Raises ValueError when the
        session lacks what the vendor requires."""
        attrs = disconnect_attributes(identity, target.vendor, event_timestamp)
        return await self.request(target, int(Code.DISCONNECT_REQUEST), attrs)

    async def coa(
        self,
        target: DaeTarget,
        identity: SessionIdentity,
        *,
        event_timestamp: int,
        session_timeout: int,
    ) -> DaeResult:
        """Give one session a new Session-Timeout (RFC 5176 §3.2)."""
        attrs = coa_attributes(identity, target.vendor, event_timestamp, session_timeout)
        return await self.request(target, int(Code.COA_REQUEST), attrs)

    async def request(self, target: DaeTarget, code: int, attrs: bytes) -> DaeResult:
        """Send one request, retransmitting the same datagram on the backoff schedule."""
        kind = _KIND[code]
        if target.client and self.channels is not None:
            channel = self.channels(target.client)
            if channel is not None:
                return await self._over(channel, target, code, attrs)
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        sock = await self._socket(family)
        dest = (target.host, target.port)
        slots = self._slots.setdefault(dest, asyncio.Semaphore(256))
        async with slots:
            ident = self._allocate(dest)
            data = encode_request(code, ident, target.secret, attrs)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[tuple[int, int | None]] = loop.create_future()
            key = (target.host, target.port, ident)
            self._pending[key] = _Pending(data[4:20], target.secret, code, future)
            attempts = 0
            try:
                for wait in retry_schedule(self.timeout, self.retries):
                    if sock.transport is None or sock.transport.is_closing():
                        break
                    sock.transport.sendto(data, dest)
                    (SENT if attempts == 0 else RETRANSMITTED).labels(kind).inc()
                    attempts += 1
                    done, _ = await asyncio.wait((future,), timeout=wait)
                    if done:
                        break
            finally:
                del self._pending[key]
        if not future.done() or future.cancelled():
            future.cancel()
            RESULTS.labels(kind, "failed").inc()
            return DaeResult(DaeOutcome.TIMEOUT, attempts=attempts)
        reply_code, cause = future.result()
        return self._counted(code, reply_code, cause, target.vendor, attempts)

    async def _over(
        self, channel: DaeChannel, target: DaeTarget, code: int, attrs: bytes
    ) -> DaeResult:
        """One request down the NAS's RadSec connection, waiting as long as the UDP
        retransmissions would have."""
        kind = _KIND[code]
        SENT.labels(kind).inc()
        answer = await channel.exchange(
            code, attrs, sum(retry_schedule(self.timeout, self.retries))
        )
        verified = self._verify(answer, channel.secret, code, target.client) if answer else None
        if verified is None:
            RESULTS.labels(kind, "failed").inc()
            return DaeResult(DaeOutcome.TIMEOUT, attempts=1)
        return self._counted(code, verified[0], verified[1], target.vendor, 1)

    def _verify(
        self, answer: tuple[bytes, bytes], secret: bytes, request_code: int, nas: str
    ) -> tuple[int, int | None] | None:
        data, authenticator = answer
        try:
            reply = decode_reply(data, secret, authenticator)
        except PacketError as exc:
            BAD_REPLIES.labels(exc.reason).inc()
            log.warning("dae.bad_reply", nas=nas, reason=exc.reason)
            return None
        if reply.code not in (_ACK[request_code], _NAK[request_code]):
            BAD_REPLIES.labels("unexpected_code").inc()
            return None
        stamp = reply.get(Attr.EVENT_TIMESTAMP)
        if not event_timestamp_fresh(stamp, self.clock(), self.timestamp_window):
            BAD_REPLIES.labels("stale_event_timestamp").inc()
            return None
        return reply.code, reply.integer(Attr.ERROR_CAUSE)

    def _counted(
        self, code: int, reply_code: int, cause: int | None, vendor: str, attempts: int
    ) -> DaeResult:
        kind = _KIND[code]
        result = interpret(code, reply_code, cause, vendor)
        if result.outcome is DaeOutcome.ACK:
            RESULTS.labels(kind, "acked").inc()
        else:
            RESULTS.labels(kind, "naked").inc()
            label = str(cause) if cause in _KNOWN_CAUSES else ("none" if cause is None else "other")
            NAKS.labels(kind, label).inc()
        return DaeResult(result.outcome, result.error_cause, result.session_gone, attempts)

    def _allocate(self, dest: tuple[str, int]) -> int:
        """A free Identifier for ``dest`` (the caller holds one of its 256 slots)."""
        start = self._next_id.get(dest, 0)
        for step in range(256):
            ident = (start + step) & 0xFF
            if (dest[0], dest[1], ident) not in self._pending:
                self._next_id[dest] = (ident + 1) & 0xFF
                return ident
        raise RuntimeError("no free identifier")  # unreachable: 256 slots per NAS

    def _received(self, data: bytes, source: tuple[str, int]) -> None:
        if len(data) < 20:
            BAD_REPLIES.labels("malformed").inc()
            return
        pending = self._pending.get((source[0], source[1], data[1]))
        if pending is None or pending.future.done():
            BAD_REPLIES.labels("unmatched").inc()
            return
        try:
            reply = decode_reply(data, pending.secret, pending.authenticator)
        except PacketError as exc:
            BAD_REPLIES.labels(exc.reason).inc()
            log.warning("dae.bad_reply", nas=source[0], reason=exc.reason)
            return
        if reply.code not in (_ACK[pending.request_code], _NAK[pending.request_code]):
            BAD_REPLIES.labels("unexpected_code").inc()
            return
        stamp = reply.get(Attr.EVENT_TIMESTAMP)
        if not event_timestamp_fresh(stamp, self.clock(), self.timestamp_window):
            BAD_REPLIES.labels("stale_event_timestamp").inc()
            log.warning(
                "dae.stale_reply",
                nas=source[0],
                event_timestamp=int.from_bytes(stamp, "big") if stamp else None,
            )
            return
        pending.future.set_result((reply.code, reply.integer(Attr.ERROR_CAUSE)))
