"""The sans-I/O RADIUS server core: bytes and the time in, what to do out.

In the manner of h11's ``Connection`` and aioquic's ``QuicConnection``: no socket, no
clock, no task. ``ServerCore.receive(data, source, now)`` says what to do with one
datagram, and ``ServerCore.answered(ticket, reply, now)`` turns the service's reply into
the datagram to send. The asyncio shell (``radius.server``) only feeds it, sends what
it returns and runs the service for a ``Dispatch``; tests drive it with bytes and a
fake clock.

``receive`` returns

- ``Drop(reason)``: send nothing. An unknown client; a packet ``radius.packet`` refuses
  (malformed, bad Request Authenticator or Message-Authenticator, the BlastRADIUS
  rules of CVE-2024-3596); a code this port does not serve; a retransmission of a
  request still being processed (RFC 5080 §2.2.2); more than ``max_in_flight`` requests
  in progress (overload: the NAS retransmits, or fails over); a Status-Server while
  the store cannot record (RFC 5997 §4.2: a server that cannot do its work must not
  look alive, so that proxies fail over).
- ``Answer(data)``: send ``data`` now: the answer to a Status-Server (RFC 5997 §3, not
  cached), or the cached answer to a retransmission (RFC 5080 §2.2.2).
- ``Dispatch(event, ticket)``: a new request for the service. Its answer, or None when
  it could not be recorded (nothing is sent: the NAS retransmits, RFC 2866 §2), goes
  back through ``answered``, which encodes it, caches it for retransmissions and
  releases the request's in-flight slot. Every ticket must be answered exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from radius.attrs import Code
from radius.dedup import IN_PROGRESS, DedupKey, DuplicateCache
from radius.eap import EapError
from radius.events import (
    AccessRequest,
    AccountingRequest,
    NoReply,
    Reply,
    Source,
    access_request,
    accounting_request,
)
from radius.fastpath import DataPath, load
from radius.packet import PacketError, Request
from radius.record import record

__all__ = [
    "Answer",
    "Dispatch",
    "Drop",
    "DropLine",
    "DropLog",
    "DropReason",
    "OnPacket",
    "Peer",
    "Role",
    "ServerCore",
    "Ticket",
]

Role = Literal["auth", "acct"]

OnPacket = Callable[[str, bytes, Literal["in", "out"]], None]
"""``on_packet(client_id, data, direction)``: every datagram from a known client ("in",
before it is decoded, so a NAS with the wrong secret can be traced too) and every
datagram sent to it ("out": the service's reply, a cached duplicate, a Status-Server
answer). The per-client trace (issue 17); it must cost an untraced client no more than
a set lookup."""

DropReason = Literal[
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
    "bad_response_authenticator",
    "proxy_state_without_message_authenticator",
    "store_unavailable",
    "malformed_eap",
    "eap_too_long",
    "unknown_state",
]
"""The ``reason`` label of ``citywifi_radius_dropped_total`` (dashboards use them)."""

DROP_REASONS: Final[tuple[DropReason, ...]] = (
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
    "malformed_eap",
    "eap_too_long",
    "unknown_state",
)

DROP_LOG_INTERVAL = 60.0  # seconds between two log lines about one source's drops
DROP_LOG_SOURCES = 10_000  # sources tracked; beyond, the rest share one line ("*")

_STATUS_SERVER: Final = int(Code.STATUS_SERVER)
_ACCESS_ACCEPT: Final = int(Code.ACCESS_ACCEPT)
_ACCESS_REJECT: Final = int(Code.ACCESS_REJECT)


class Peer(Protocol):
    """A RADIUS client as the core needs it: its id (the metrics' label), its shared
    secret, and whether its Access-Requests must carry a Message-Authenticator."""

    @property
    def id(self) -> str: ...
    @property
    def secret(self) -> bytes: ...
    @property
    def require_message_authenticator(self) -> bool: ...


@record
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


@record
class Drop:
    """Send nothing. ``client`` is the client's id (None: the source is no client);
    ``line`` is the log line to write about it, None to count it only (``DropLog``:
    one line per source per minute, and none for the reasons a busy server sees in
    bulk: unexpected code, retransmission in progress, overload, not recorded)."""

    reason: DropReason
    client: str | None = None
    line: DropLine | None = None


@record
class Answer:
    """Send ``data`` to the source. ``kind``: "status" (a Status-Server), "duplicate"
    (the cached answer to a retransmission), "reply" (the service's reply), "shrunk"
    (the service's reply did not fit 4096 octets with the echoed Proxy-States and went
    out without its attributes: an Access-Accept as an Access-Reject)."""

    data: bytes
    kind: Literal["status", "duplicate", "reply", "shrunk"] = "reply"


@dataclass(slots=True)
class Ticket:
    """A request handed to the service: what ``answered`` needs to encode and cache its
    reply, and when it arrived (``started``, on the caller's clock)."""

    key: DedupKey
    request: Request = field(repr=False)
    secret: bytes = field(repr=False)
    client: str
    source: Source
    started: float


@record
class Dispatch:
    """A new request: run the service on ``event``, then call ``answered(ticket, …)``."""

    event: AccessRequest | AccountingRequest
    ticket: Ticket


class ServerCore:
    """The server side of one RADIUS port: ``role`` "auth" serves Access-Request (and
    answers Status-Server with Access-Accept), "acct" Accounting-Request (Status-Server:
    Accounting-Response, RFC 5997 §3).

    ``peer_for(host)`` finds the client of a source address (None: unknown);
    ``can_record()`` says whether the store can record now (RFC 5997 §4.2). Times are
    the caller's monotonic seconds: the duplicate cache keeps answers ``dedup_window``
    seconds (RFC 5080 §2.2.2).
    """

    def __init__(
        self,
        role: Role,
        peer_for: Callable[[str], Peer | None],
        *,
        dedup_window: float = 30.0,
        max_in_flight: int = 4096,
        can_record: Callable[[], bool] | None = None,
        data_path: DataPath | None = None,
        on_packet: OnPacket | None = None,
    ) -> None:
        self.role: Role = role
        # the compiled codec when built (radius.fastpath), else radius.packet: the same
        # Request and PacketError reasons either way (tests/test_speedups.py)
        self.data_path = path = data_path if data_path is not None else load()
        self._decode = path.decode_request
        self._encode = path.encode_reply
        self.on_packet = on_packet
        self.peer_for = peer_for
        self.can_record: Callable[[], bool] = can_record or (lambda: True)
        # the compiled twin of radius.dedup.DedupCache when built, else that one
        self.dedup: DuplicateCache = path.dedup_cache(dedup_window)
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # tickets given out and not answered yet
        self.drop_log = DropLog()
        self._expected = int(Code.ACCESS_REQUEST if role == "auth" else Code.ACCOUNTING_REQUEST)
        self._status_reply = Code.ACCESS_ACCEPT if role == "auth" else Code.ACCOUNTING_RESPONSE
        self._auth = role == "auth"

    def _refused(self, reason: DropReason, host: str, client: str | None, now: float) -> Drop:
        return Drop(reason, client, self.drop_log.admit(host, now))

    def receive(self, data: bytes, source: tuple[str, int], now: float) -> Drop | Answer | Dispatch:
        """What to do with one datagram from ``source`` (host, port) at ``now``."""
        host = source[0]
        peer = self.peer_for(host)
        if peer is None:
            return self._refused("unknown_client", host, None, now)
        on_packet = self.on_packet
        if on_packet is not None:
            on_packet(peer.id, data, "in")
        try:
            request = self._decode(
                data,
                peer.secret,
                require_message_authenticator=peer.require_message_authenticator,
            )
        except PacketError as exc:
            return self._refused(exc.reason, host, peer.id, now)
        code = request.code
        if code == _STATUS_SERVER:  # RFC 5997 §3: answered at once, not cached
            if not self.can_record():  # RFC 5997 §4.2: not alive while it cannot record
                return self._refused("store_unavailable", host, peer.id, now)
            status = self._encode(self._status_reply, request, peer.secret)
            if on_packet is not None:
                on_packet(peer.id, status, "out")
            return Answer(status, "status")
        if code != self._expected:
            return Drop("unexpected_code", peer.id)
        port = source[1]
        key: DedupKey = (host, port, code, request.identifier, request.authenticator)
        dedup = self.dedup
        cached = dedup.lookup(key, now)
        if cached is IN_PROGRESS:
            return Drop("duplicate_in_progress", peer.id)
        if cached is not None:
            if on_packet is not None:
                on_packet(peer.id, cached, "out")
            return Answer(cached, "duplicate")
        if self.in_flight >= self.max_in_flight:
            return Drop("overload", peer.id)
        dedup.begin(key, now)
        self.in_flight += 1
        origin = Source(host, port)
        try:
            event = (
                access_request(request, peer.id, peer.secret, origin)
                if self._auth
                else accounting_request(request, peer.id, origin)
            )
        except EapError as exc:  # RFC 3579 §3.3: EAP without Message-Authenticator, or broken
            self.in_flight -= 1
            dedup.finish(key, None, now)
            reason: DropReason = (
                "missing_message_authenticator"
                if exc.reason == "missing_message_authenticator"
                else "eap_too_long"
                if exc.reason == "eap_too_long"
                else "malformed_eap"
            )
            return self._refused(reason, host, peer.id, now)
        return Dispatch(event, Ticket(key, request, peer.secret, peer.id, origin, now))

    def answered(self, ticket: Ticket, reply: Reply | NoReply | None, now: float) -> Answer | Drop:
        """The datagram answering ``ticket`` (cached for its retransmissions), or
        ``Drop("not_recorded")`` when the service gave no reply (``Drop(reason)`` for a
        ``NoReply``; either way the retransmission is then processed afresh). Releases
        the ticket's in-flight slot."""
        self.in_flight -= 1
        if reply is None or isinstance(reply, NoReply):
            self.dedup.finish(ticket.key, None, now)
            return Drop("not_recorded" if reply is None else reply.reason, ticket.client)
        kind: Literal["reply", "shrunk"] = "reply"
        code = int(reply.code)
        try:
            data = self._encode(code, ticket.request, ticket.secret, reply.attributes)
        except ValueError:
            # the echoed Proxy-States leave no room for our attributes (RFC 2865 §4: 4096
            # octets at most): answer without them; an Accept without its Session-Timeout
            # and Class must not go out, so that becomes a bare Reject
            kind = "shrunk"
            code = _ACCESS_REJECT if code == _ACCESS_ACCEPT else code
            try:
                data = self._encode(code, ticket.request, ticket.secret, b"")
            except ValueError:
                self.dedup.finish(ticket.key, None, now)
                raise
        self.dedup.finish(ticket.key, data, now)
        if self.on_packet is not None:
            self.on_packet(ticket.client, data, "out")
        return Answer(data, kind)
