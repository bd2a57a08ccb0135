"""Typed events: what a verified request says, and what the server answers, as values.

In the manner of h11's events: one frozen class per message, built once from a packet
that ``radius.packet`` has verified, and read by field afterwards. The service layer
never sees attribute numbers: ``AccessRequest.calling_station_id``, not
``request.text(31)``. The decoders here (``access_request``, ``accounting_request``,
``status_server``) are the only place that maps attributes (RFC 2865 §5, RFC 2866 §5,
RFC 2869 §5, RFC 3162, RFC 4372, RFC 4818, RFC 5580, RFC 6911, RFC 8045) to fields.

Text attributes are UTF-8 (RFC 2865 §5, invalid octets replaced), addresses are kept
as text ("" when absent or of the wrong length), integers as ``int`` (None when
absent or not 4 octets, where the absence matters). Replies carry the reply attributes
already encoded and, as typed fields, what the request log says about them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import field
from typing import ClassVar, Final, Literal, NamedTuple

from radius import fastpath
from radius.addresses import (
    DELEGATED_IPV6_PREFIX,
    FRAMED_IPV6_PREFIX,
    PortBlock,
    first_prefix,
    ipv4_text,
    port_block,
)
from radius.attrs import AcctStatus, Attr, Code
from radius.eap import eap_from_request
from radius.packet import PacketError, Request, decrypt_user_password
from radius.record import record

__all__ = [
    "AccessAccept",
    "AccessChallenge",
    "AccessReject",
    "AccessReply",
    "AccessRequest",
    "AccountingRequest",
    "AccountingResponse",
    "HiddenPassword",
    "NoReply",
    "Reply",
    "Source",
    "StatusServer",
    "access_request",
    "accounting_request",
    "status_server",
]


class Source(NamedTuple):
    """Where a request came from: the NAS's address and UDP port. A NAS of a CIDR client
    may send from any address of its network; this one is where RFC 5176 requests go."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


_USER_NAME: Final = int(Attr.USER_NAME)
_USER_PASSWORD: Final = int(Attr.USER_PASSWORD)
_CHAP_PASSWORD: Final = int(Attr.CHAP_PASSWORD)
_CHAP_CHALLENGE: Final = int(Attr.CHAP_CHALLENGE)
_NAS_IP: Final = int(Attr.NAS_IP_ADDRESS)
_NAS_IPV6: Final = int(Attr.NAS_IPV6_ADDRESS)
_NAS_ID: Final = int(Attr.NAS_IDENTIFIER)
_CALLED: Final = int(Attr.CALLED_STATION_ID)
_CALLING: Final = int(Attr.CALLING_STATION_ID)
_SESSION_ID: Final = int(Attr.ACCT_SESSION_ID)
_CUI: Final = int(Attr.CHARGEABLE_USER_IDENTITY)
_PROXY_STATE: Final = int(Attr.PROXY_STATE)
_STATUS_TYPE: Final = int(Attr.ACCT_STATUS_TYPE)
_DELAY: Final = int(Attr.ACCT_DELAY_TIME)
_SESSION_TIME: Final = int(Attr.ACCT_SESSION_TIME)
_IN: Final = int(Attr.ACCT_INPUT_OCTETS)
_OUT: Final = int(Attr.ACCT_OUTPUT_OCTETS)
_IN_GIGA: Final = int(Attr.ACCT_INPUT_GIGAWORDS)
_OUT_GIGA: Final = int(Attr.ACCT_OUTPUT_GIGAWORDS)
_EVENT_TIMESTAMP: Final = int(Attr.EVENT_TIMESTAMP)
_CAUSE: Final = int(Attr.ACCT_TERMINATE_CAUSE)
_FRAMED_IP: Final = int(Attr.FRAMED_IP_ADDRESS)
_FRAMED_IPV6: Final = int(Attr.FRAMED_IPV6_ADDRESS)
_CLASS: Final = int(Attr.CLASS)
_OPERATOR_NAME: Final = int(Attr.OPERATOR_NAME)
_EAP_MESSAGE: Final = int(Attr.EAP_MESSAGE)
_STATE: Final = int(Attr.STATE)
_STATUSES: Final = {int(s): s for s in AcctStatus}
# What ``_accounting_values``' compiled twin (radius/_speedups.c) reads, in this order:
# the one list of numbers it knows (given to it by ``fastpath.accounting_values``).
_ACCOUNTING_ATTRS: Final = (
    _STATUS_TYPE,
    _SESSION_ID,
    _USER_NAME,
    _CALLING,
    _CALLED,
    _NAS_ID,
    _NAS_IP,
    _NAS_IPV6,
    _FRAMED_IP,
    _FRAMED_IPV6,
    _SESSION_TIME,
    _IN,
    _IN_GIGA,
    _OUT,
    _OUT_GIGA,
    _DELAY,
    _EVENT_TIMESTAMP,
    _CAUSE,
    _CLASS,
    _OPERATOR_NAME,
    _PROXY_STATE,
)


class HiddenPassword:
    """A User-Password as sent, hidden with the client's secret and the Request
    Authenticator (RFC 2865 §5.2); ``reveal()`` recovers it. Recovered on demand: a MAC
    re-authentication (most Access-Requests) never needs it, and the two MD5 blocks per
    request are a measurable part of the server's CPU. The secret is never shown."""

    __slots__ = ("_authenticator", "_hidden", "_secret")

    def __init__(self, hidden: bytes, secret: bytes, authenticator: bytes) -> None:
        self._hidden = hidden
        self._secret = secret
        self._authenticator = authenticator

    def reveal(self) -> bytes | None:
        """The password without its NUL padding; None when the attribute's length is not
        a multiple of 16 in 16..128 (not a User-Password: a bad request)."""
        try:
            return decrypt_user_password(self._hidden, self._secret, self._authenticator)
        except PacketError:
            return None

    def __repr__(self) -> str:
        return "HiddenPassword(...)"


@record
class AccessRequest:
    """An Access-Request (RFC 2865 §4.1) from ``client`` (its id), verified.

    ``user_password`` is the User-Password (RFC 2865 §5.2), recovered by ``reveal()``.
    ``chap_challenge`` is CHAP-Challenge, else the Request Authenticator (RFC 2865
    §2.2). ``wants_cui``: the NAS asked for a Chargeable-User-Identity (RFC 4372 §2.1).
    ``eap``: the EAP packet of its EAP-Message attributes joined (RFC 3579 §3.1), None
    when it has none; ``state``: the State it echoes (RFC 2865 §5.24), which names the
    EAP conversation it continues (RFC 3579 §2.6.1).
    """

    client: str
    source: Source
    identifier: int
    authenticator: bytes
    user_name: str | None = None
    user_password: HiddenPassword | None = None
    chap_password: bytes | None = None
    chap_challenge: bytes = b""
    calling_station_id: str = ""
    called_station_id: str = ""
    nas_identifier: str = ""
    nas_ip_address: str = ""
    nas_ipv6_address: str = ""
    acct_session_id: str = ""
    wants_cui: bool = False
    proxy_state: tuple[bytes, ...] = ()
    eap: bytes | None = field(default=None, repr=False)
    state: bytes | None = None
    # the shared secret the request was verified with (the client's, or RadSec's fixed
    # "radsec", RFC 6614 §2.3): what MS-MPPE keys in the answer are hidden with
    secret: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.identifier <= 255 or len(self.authenticator) != 16:
            raise ValueError("an Identifier is one octet, an authenticator 16 (RFC 2865 §3)")


@record
class AccountingRequest:
    """An Accounting-Request (RFC 2866 §4.1) from ``client``, verified.

    ``status`` is the Acct-Status-Type when it is one this server acts on, else None;
    ``status_type`` is the number as sent (None when absent: RFC 2866 §5.1 requires it).
    Octets include their Gigawords (RFC 2869 §5.1-5.2). ``delay`` is Acct-Delay-Time as
    sent (the service caps what it believes). ``klass`` is the first Class (RFC 2865
    §5.25), which this server signed on the Accept when the NAS echoes it.
    """

    client: str
    source: Source
    identifier: int
    status_type: int | None
    status: AcctStatus | None = None
    session_id: str = ""
    user_name: str = ""
    calling_station_id: str = ""
    called_station_id: str = ""
    nas_identifier: str = ""
    nas_ip_address: str = ""
    nas_ipv6_address: str = ""
    framed_ip_address: str = ""
    framed_ipv6_address: str = ""
    session_time: int = 0
    input_octets: int = 0
    output_octets: int = 0
    delay: int = 0
    event_timestamp: int | None = None
    terminate_cause: int | None = None
    klass: bytes | None = None
    operator_name: str | None = None
    proxy_state: tuple[bytes, ...] = ()
    # the address record (radius.addresses): RFC 3162 / RFC 4818 prefixes, the NAT block
    framed_ipv6_prefix: str = ""
    delegated_ipv6_prefix: str = ""
    port_block: PortBlock | None = None
    # the verified Vendor-Specific attributes by (vendor, type), for a per-NAS reading
    vsas: Mapping[tuple[int, int], list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status is not None and self.status != self.status_type:
            raise ValueError("status and status_type disagree")
        if min(self.session_time, self.input_octets, self.output_octets, self.delay) < 0:
            raise ValueError("counters are unsigned (RFC 2866 §5)")


@record
class StatusServer:
    """A Status-Server (RFC 5997 §3), verified (its Message-Authenticator is mandatory)."""

    client: str
    source: Source
    identifier: int


@record
class _Reply:
    """A reply: its attributes (encoded, without Message-Authenticator and Proxy-State,
    which ``radius.packet.encode_reply`` adds), and for the request log whom and what it
    is about: the person id, the venue, the session and the result label."""

    code: ClassVar[Code]
    attributes: bytes = b""
    person: str = ""
    venue: str = ""
    session: str = ""
    result: str = ""


@record
class AccessAccept(_Reply):
    """Access-Accept (RFC 2865 §4.2). One that does not fit 4096 octets with the echoed
    Proxy-States is sent as a bare Access-Reject (``radius.core``)."""

    code: ClassVar[Code] = Code.ACCESS_ACCEPT
    result: str = "accept"


@record
class AccessReject(_Reply):
    """Access-Reject (RFC 2865 §4.3); ``result`` is the reason label."""

    code: ClassVar[Code] = Code.ACCESS_REJECT


@record
class AccountingResponse(_Reply):
    """Accounting-Response (RFC 2866 §4.2): sent only once the request is recorded."""

    code: ClassVar[Code] = Code.ACCOUNTING_RESPONSE


@record
class AccessChallenge(_Reply):
    """Access-Challenge (RFC 2865 §4.4): one round of an EAP conversation, its
    EAP-Message and State in ``attributes`` (RFC 3579 §2.6.1)."""

    code: ClassVar[Code] = Code.ACCESS_CHALLENGE
    result: str = "challenge"


@record
class NoReply:
    """Send nothing, for a reason the service knows and the drop counter should show
    (``citywifi_radius_dropped_total{reason}``) instead of ``not_recorded``: an EAP round
    whose State names no conversation (unknown, replayed, expired or another client's,
    RFC 3579 §2.6.1). Not cached: a retransmission is judged afresh."""

    reason: Literal["unknown_state"]


AccessReply = AccessAccept | AccessReject | AccessChallenge
Reply = AccessAccept | AccessReject | AccessChallenge | AccountingResponse


def _text(attrs: dict[int, list[bytes]], attr: int) -> str:
    values = attrs.get(attr)
    return values[0].decode("utf-8", errors="replace") if values else ""


def _integer(attrs: dict[int, list[bytes]], attr: int) -> int | None:
    values = attrs.get(attr)
    if not values or len(values[0]) != 4:
        return None
    return int.from_bytes(values[0], "big")


def _ipv4(attrs: dict[int, list[bytes]], attr: int) -> str:
    values = attrs.get(attr)
    return ipv4_text(values[0]) if values else ""


def _ipv6_text(raw: bytes) -> str:
    """A 16-octet IPv6 address (RFC 3162 §2.1-2.2) in RFC 5952 form: also what the
    compiled ``accounting_values`` calls for one (rare: kept in Python, to be exact)."""
    return str(ipaddress.IPv6Address(raw))


def _ipv6(attrs: dict[int, list[bytes]], attr: int) -> str:
    values = attrs.get(attr)
    if not values or len(values[0]) != 16:
        return ""
    return _ipv6_text(values[0])


def access_request(request: Request, client: str, secret: bytes, source: Source) -> AccessRequest:
    """The event of a verified Access-Request of ``client`` (whose ``secret`` hides the
    User-Password, RFC 2865 §5.2: kept for ``HiddenPassword.reveal``). One with
    EAP-Message raises ``radius.eap.EapError`` when it lacks Message-Authenticator
    (RFC 3579 §3.3) or its EAP-Messages do not make one EAP packet."""
    attrs: dict[int, list[bytes]] = request.attrs  # type: ignore[assignment]
    user = attrs.get(_USER_NAME)
    hidden = attrs.get(_USER_PASSWORD)
    chap = attrs.get(_CHAP_PASSWORD)
    challenge = attrs.get(_CHAP_CHALLENGE)
    proxy = attrs.get(_PROXY_STATE)
    return AccessRequest(
        client,
        source,
        request.identifier,
        request.authenticator,
        user[0].decode("utf-8", errors="replace") if user else None,
        HiddenPassword(hidden[0], secret, request.authenticator) if hidden else None,
        chap[0] if chap else None,
        challenge[0] if challenge else request.authenticator,
        _text(attrs, _CALLING),
        _text(attrs, _CALLED),
        _text(attrs, _NAS_ID),
        _ipv4(attrs, _NAS_IP),
        _ipv6(attrs, _NAS_IPV6),
        _text(attrs, _SESSION_ID),
        _CUI in attrs,
        tuple(proxy) if proxy else (),
        eap_from_request(request) if _EAP_MESSAGE in attrs else None,
        state[0] if (state := attrs.get(_STATE)) else None,
        secret,
    )


def _accounting_values(attrs: dict[int, list[bytes]]) -> fastpath.AccountingValues:
    """The fields of an Accounting-Request's event from status_type to proxy_state, in
    ``AccountingRequest``'s order, read from its attributes (RFC 2866 §5, RFC 2869 §5:
    the octets include their Acct-Input/Output-Gigawords, RFC 2869 §5.1-5.2, times 2**32).

    The reference model and the fallback of ``radius._speedups.accounting_values``
    (issue 16: these twenty small calls per request were a measurable part of the
    accounting path; the C twin makes them one). ``tests/test_accounting_values.py``
    holds the two to the same tuple."""
    status_type = _integer(attrs, _STATUS_TYPE)
    klass = attrs.get(_CLASS)
    operator = attrs.get(_OPERATOR_NAME)
    proxy = attrs.get(_PROXY_STATE)
    return (
        status_type,
        _STATUSES.get(status_type) if status_type is not None else None,
        _text(attrs, _SESSION_ID),
        _text(attrs, _USER_NAME),
        _text(attrs, _CALLING),
        _text(attrs, _CALLED),
        _text(attrs, _NAS_ID),
        _ipv4(attrs, _NAS_IP),
        _ipv6(attrs, _NAS_IPV6),
        _ipv4(attrs, _FRAMED_IP),
        _ipv6(attrs, _FRAMED_IPV6),
        _integer(attrs, _SESSION_TIME) or 0,
        (_integer(attrs, _IN) or 0) + ((_integer(attrs, _IN_GIGA) or 0) << 32),
        (_integer(attrs, _OUT) or 0) + ((_integer(attrs, _OUT_GIGA) or 0) << 32),
        _integer(attrs, _DELAY) or 0,
        _integer(attrs, _EVENT_TIMESTAMP),
        _integer(attrs, _CAUSE),
        klass[0] if klass else None,
        operator[0].decode("utf-8", errors="replace") if operator else None,
        tuple(proxy) if proxy else (),
    )


# The compiled twin when built and not switched off (``CITYWIFI_PURE_PYTHON``), else the
# reference above: chosen once, when this module is first imported (as the server's data
# path is chosen at start); the two give the same tuple.
_values: fastpath.AccountingValuesOf = (
    fastpath.accounting_values(_ACCOUNTING_ATTRS, _STATUSES, _ipv6_text) or _accounting_values
)


def accounting_request(request: Request, client: str, source: Source) -> AccountingRequest:
    """The event of a verified Accounting-Request of ``client``: its fields from
    ``_values`` (one C call when the extension is built, issue 16), its address record
    and VSAs here."""
    attrs: dict[int, list[bytes]] = request.attrs  # type: ignore[assignment]
    return AccountingRequest(
        client,
        source,
        request.identifier,
        *_values(attrs),
        first_prefix(attrs, FRAMED_IPV6_PREFIX),
        first_prefix(attrs, DELEGATED_IPV6_PREFIX),
        port_block(attrs, request.vsas),
        request.vsas,
    )


def status_server(request: Request, client: str, source: Source) -> StatusServer:
    """The event of a verified Status-Server of ``client``."""
    return StatusServer(client, source, request.identifier)
