"""RADIUS packet core: bytes in, typed requests out; replies and requests encoded to bytes.

Pure and on the hot path: no sockets, no clock, no pyrad. Attributes are kept as raw
octets keyed by type; callers decode the few they read (``Request.text``,
``Request.integer``).

Authenticators (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3/§3.4, RFC 5997 §3) and the
Message-Authenticator (RFC 2869 §5.14, RFC 3579 §3.2) are verified and produced here.
BlastRADIUS (CVE-2024-3596): Message-Authenticator is required on Access-Request by
default, a Proxy-State without it is refused, and every Access-* and Status-Server reply
carries it first. An Accounting-Response to an Accounting-Request carries none (see
``encode_reply``: peers disagree on how to compute it, and no RFC asks for it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from radius.attrs import Attr, Code

__all__ = [
    "MAX_PACKET",
    "PacketError",
    "Reason",
    "Request",
    "attr",
    "attr_int",
    "attr_text",
    "attr_text_split",
    "chap_challenge",
    "chap_matches",
    "decode_reply",
    "decode_request",
    "decrypt_user_password",
    "encode_reply",
    "encode_request",
    "encrypt_user_password",
    "vsa",
]

Reason = Literal[
    "malformed",
    "invalid_attribute",
    "unexpected_code",
    "missing_message_authenticator",
    "bad_message_authenticator",
    "bad_request_authenticator",
    "bad_response_authenticator",
    "proxy_state_without_message_authenticator",
]

MAX_PACKET: Final = 4096
"""Largest Length a packet may have (RFC 2865 §3)."""

_HEADER: Final = 20
_ZERO16: Final = bytes(16)
_MA: Final = int(Attr.MESSAGE_AUTHENTICATOR)
_MA_LEN: Final = 18
_MA_ZEROED: Final = bytes((_MA, _MA_LEN)) + _ZERO16
_MA_TAG: Final = bytes((_MA, _MA_LEN))
_VSA: Final = int(Attr.VENDOR_SPECIFIC)
_PROXY_STATE: Final = int(Attr.PROXY_STATE)
_CHAP_CHALLENGE: Final = int(Attr.CHAP_CHALLENGE)

_ACCESS_REQUEST: Final = int(Code.ACCESS_REQUEST)
_STATUS_SERVER: Final = int(Code.STATUS_SERVER)
_ACCOUNTING_REQUEST: Final = int(Code.ACCOUNTING_REQUEST)
_ACCOUNTING_RESPONSE: Final = int(Code.ACCOUNTING_RESPONSE)

_REQUEST_CODES: Final = frozenset(
    (
        Code.ACCESS_REQUEST,
        Code.ACCOUNTING_REQUEST,
        Code.STATUS_SERVER,
        Code.DISCONNECT_REQUEST,
        Code.COA_REQUEST,
    )
)
_SIGNED_REQUEST_CODES: Final = frozenset(
    (Code.ACCOUNTING_REQUEST, Code.DISCONNECT_REQUEST, Code.COA_REQUEST)
)
_REPLIES_TO: Final[Mapping[int, frozenset[int]]] = {
    Code.ACCESS_REQUEST: frozenset((Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE)),
    Code.ACCOUNTING_REQUEST: frozenset((Code.ACCOUNTING_RESPONSE,)),
    # RFC 5997 §3: Access-Accept on the authentication port, Accounting-Response on accounting.
    Code.STATUS_SERVER: frozenset((Code.ACCESS_ACCEPT, Code.ACCOUNTING_RESPONSE)),
    Code.DISCONNECT_REQUEST: frozenset((Code.DISCONNECT_ACK, Code.DISCONNECT_NAK)),
    Code.COA_REQUEST: frozenset((Code.COA_ACK, Code.COA_NAK)),
}
_REPLY_CODES: Final = frozenset(c for codes in _REPLIES_TO.values() for c in codes)
_ACCESS_REPLY_CODES: Final = frozenset(
    (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE)
)

_HDR: Final = struct.Struct(">BBH")
_ATTR_INT: Final = struct.Struct(">BBI")
_VSA_HDR: Final = struct.Struct(">BBIBB")


class PacketError(Exception):
    """A datagram to drop silently; ``reason`` is a stable label for the drop metric."""

    reason: Reason

    def __init__(self, reason: Reason, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded, verified packet (also used for decoded replies, see ``decode_reply``).

    ``attrs`` maps standard attribute types to their values in packet order. Well-formed
    Vendor-Specific attributes (RFC 2865 §5.26) are split into ``vsas`` keyed by
    ``(vendor id, vendor type)``; a Vendor-Specific that is not in that form stays raw in
    ``attrs[26]``. ``raw`` is the packet up to its Length field (left out of the repr).
    """

    code: int
    identifier: int
    authenticator: bytes
    attrs: Mapping[int, list[bytes]]
    vsas: Mapping[tuple[int, int], list[bytes]] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False)

    def get(self, attr: int) -> bytes | None:
        """The first value of ``attr``, or None."""
        values = self.attrs.get(attr)
        return values[0] if values else None

    def text(self, attr: int) -> str | None:
        """The first value of ``attr`` as text (RFC 2865 §5: UTF-8), or None."""
        values = self.attrs.get(attr)
        return values[0].decode("utf-8", errors="replace") if values else None

    def integer(self, attr: int) -> int | None:
        """The first value of ``attr`` as a 32-bit unsigned integer (None: absent, not 4 octets)."""
        values = self.attrs.get(attr)
        if not values or len(values[0]) != 4:
            return None
        return int.from_bytes(values[0], "big")

    def all(self, attr: int) -> list[bytes]:
        """Every value of ``attr``, in packet order."""
        return list(self.attrs.get(attr, ()))


_Pads = tuple["hashlib._Hash", "hashlib._Hash"]
_pads_by_secret: dict[bytes, _Pads] = {}


def _hmac_md5(secret: bytes, message: bytes) -> bytes:
    """HMAC-MD5 (RFC 2104) with the keyed inner and outer MD5 states cached per secret:
    about twice as fast as ``hmac.digest`` for packet-sized messages."""
    pads = _pads_by_secret.get(secret)
    if pads is None:
        key = hashlib.md5(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\x00")
        pads = (
            hashlib.md5(bytes(b ^ 0x36 for b in key)),
            hashlib.md5(bytes(b ^ 0x5C for b in key)),
        )
        if len(_pads_by_secret) >= 4096:
            _pads_by_secret.clear()
        _pads_by_secret[secret] = pads
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()


def _header(data: bytes) -> tuple[int, int, bytes]:
    """Check the header (RFC 2865 §3); return code, length and the packet cut to Length."""
    size = len(data)
    if size < _HEADER:
        raise PacketError("malformed", f"datagram of {size} octets is shorter than a header")
    length = (data[2] << 8) | data[3]
    if length < _HEADER or length > MAX_PACKET:
        raise PacketError("malformed", f"Length field {length} outside 20..4096")
    if length > size:
        raise PacketError("malformed", f"Length field {length} exceeds datagram of {size} octets")
    if length < size:
        data = data[:length]
    return data[0], length, data


def _split_vsa(value: bytes, vsas: dict[tuple[int, int], list[bytes]]) -> bool:
    """Add the sub-attributes of a Vendor-Specific value to ``vsas`` if it has the
    RFC 2865 §5.26 form (Vendor-Id, then type/length/value); False leaves ``vsas`` alone."""
    size = len(value)
    if size < 6:
        return False
    vendor = int.from_bytes(value[:4], "big")
    found: list[tuple[int, bytes]] = []
    pos = 4
    while pos < size:
        if pos + 2 > size:
            return False
        end = pos + value[pos + 1]
        if end < pos + 2 or end > size:
            return False
        found.append((value[pos], value[pos + 2 : end]))
        pos = end
    for vtype, sub in found:
        key = (vendor, vtype)
        values = vsas.get(key)
        if values is None:
            vsas[key] = [sub]
        else:
            values.append(sub)
    return True


def _parse_attributes(
    data: bytes, length: int
) -> tuple[dict[int, list[bytes]], dict[tuple[int, int], list[bytes]], int]:
    """Walk the attribute TLVs (RFC 2865 §5); return attrs, vsas and the offset of the
    Message-Authenticator (-1 when absent)."""
    attrs: dict[int, list[bytes]] = {}
    vsas: dict[tuple[int, int], list[bytes]] = {}
    ma_at = -1
    pos = _HEADER
    while pos < length:
        if pos + 2 > length:
            raise PacketError("malformed", f"attribute header at offset {pos} overflows the packet")
        atype = data[pos]
        if atype == 0:  # RFC 2865 §5: type 0 is not defined; FreeRADIUS drops the packet
            raise PacketError("invalid_attribute", f"attribute type 0 at offset {pos}")
        end = pos + data[pos + 1]
        if end < pos + 2 or end > length:
            raise PacketError("malformed", f"attribute {atype} at offset {pos} has a bad length")
        value = data[pos + 2 : end]
        if atype != _VSA or not _split_vsa(value, vsas):
            if atype == _MA:
                if ma_at >= 0:
                    raise PacketError("malformed", "more than one Message-Authenticator")
                ma_at = pos
            values = attrs.get(atype)
            if values is None:
                attrs[atype] = [value]
            else:
                values.append(value)
        pos = end
    return attrs, vsas, ma_at


def _ma_valid(data: bytes, ma_at: int, vector: bytes, secret: bytes) -> bool:
    """RFC 3579 §3.2: HMAC-MD5 over the packet with ``vector`` in the authenticator field
    and the Message-Authenticator value zeroed."""
    if data[ma_at + 1] != _MA_LEN:
        return False
    signed = b"".join((data[:4], vector, data[_HEADER:ma_at], _MA_ZEROED, data[ma_at + _MA_LEN :]))
    expected = _hmac_md5(secret, signed)
    return hmac.compare_digest(expected, data[ma_at + 2 : ma_at + _MA_LEN])


def decode_request(
    data: bytes, secret: bytes, *, require_message_authenticator: bool = True
) -> Request:
    """Decode and verify a request; raise ``PacketError`` for anything to drop.

    Octets beyond the Length field are padding and ignored (RFC 2865 §3).

    - Access-Request: the Message-Authenticator is verified when present (RFC 3579 §3.2,
      over the random Request Authenticator); when absent the request is refused if
      ``require_message_authenticator`` or if it carries a Proxy-State (BlastRADIUS).
    - Status-Server: the Message-Authenticator is mandatory (RFC 5997 §3).
    - Accounting-Request (RFC 2866 §3), Disconnect-Request and CoA-Request (RFC 5176 §2.3):
      Request Authenticator = MD5(Code+ID+Length+16 zero octets+Attributes+Secret). A
      Message-Authenticator, if present, is computed before the Request Authenticator, so
      over 16 zero octets in the authenticator field (RFC 5176 §3.4; FreeRADIUS and pyrad
      do the same for Accounting-Request).
    """
    code, length, data = _header(data)
    if code not in _REQUEST_CODES:
        raise PacketError("unexpected_code", f"code {code} is not a request we serve")
    attrs, vsas, ma_at = _parse_attributes(data, length)
    authenticator = data[4:_HEADER]
    if code in (_ACCESS_REQUEST, _STATUS_SERVER):
        if ma_at >= 0:
            if not _ma_valid(data, ma_at, authenticator, secret):
                raise PacketError("bad_message_authenticator", "Message-Authenticator mismatch")
        elif code == _STATUS_SERVER or require_message_authenticator:
            raise PacketError("missing_message_authenticator", "no Message-Authenticator")
        elif _PROXY_STATE in attrs:
            raise PacketError(
                "proxy_state_without_message_authenticator",
                "Proxy-State without Message-Authenticator",
            )
    else:
        expected = hashlib.md5(b"".join((data[:4], _ZERO16, data[_HEADER:], secret))).digest()
        if not hmac.compare_digest(expected, authenticator):
            raise PacketError("bad_request_authenticator", "Request Authenticator mismatch")
        if ma_at >= 0 and not _ma_valid(data, ma_at, _ZERO16, secret):
            raise PacketError("bad_message_authenticator", "Message-Authenticator mismatch")
    return Request(code, data[1], authenticator, attrs, vsas, data)


def decode_reply(
    data: bytes,
    secret: bytes,
    request_authenticator: bytes,
    *,
    require_message_authenticator: bool = False,
) -> Request:
    """Decode and verify a reply to a request we sent (client side: tests, DAE, simulators).

    The Response Authenticator is MD5(Code+ID+Length+RequestAuth+Attributes+Secret)
    (RFC 2865 §3, RFC 2866 §3, RFC 5176 §2.3). A Message-Authenticator, when present, is
    checked over the Request Authenticator (RFC 3579 §3.2, RFC 5176 §3.4, RFC 5997 §3);
    for Accounting-Response and Disconnect/CoA ACK/NAK 16 zero octets are accepted too:
    FreeRADIUS before 3.2.9 signs them that way (3.2.9 on, and radsecproxy, use the
    Request Authenticator), and a client must take the answers of both. ``authenticator``
    of the result is the Response Authenticator. The caller matches the Identifier.
    """
    code, length, data = _header(data)
    if code not in _REPLY_CODES:
        raise PacketError("unexpected_code", f"code {code} is not a reply")
    attrs, vsas, ma_at = _parse_attributes(data, length)
    expected = hashlib.md5(
        b"".join((data[:4], request_authenticator, data[_HEADER:], secret))
    ).digest()
    if not hmac.compare_digest(expected, data[4:_HEADER]):
        raise PacketError("bad_response_authenticator", "Response Authenticator mismatch")
    if ma_at >= 0:
        if not _ma_valid(data, ma_at, request_authenticator, secret) and (
            code in _ACCESS_REPLY_CODES or not _ma_valid(data, ma_at, _ZERO16, secret)
        ):
            raise PacketError("bad_message_authenticator", "Message-Authenticator mismatch")
    elif require_message_authenticator:
        raise PacketError("missing_message_authenticator", "no Message-Authenticator")
    return Request(code, data[1], data[4:_HEADER], attrs, vsas, data)


def encode_reply(
    code: int,
    request: Request,
    secret: bytes,
    attrs: bytes = b"",
    *,
    message_authenticator: bool | None = None,
) -> bytes:
    """Encode a reply to ``request``: Message-Authenticator first (when sent), then
    ``attrs`` (encoded attributes), then the request's Proxy-States in order (RFC 2865
    §5.33).

    The Message-Authenticator is HMAC-MD5 over the reply with the Request Authenticator in
    the authenticator field (RFC 3579 §3.2, RFC 5176 §3.4, RFC 5997 §3). It is sent by
    default (``message_authenticator=None``) in every reply except an Accounting-Response
    to an Accounting-Request. No RFC defines that one, and peers disagree: FreeRADIUS
    before 3.2.9 (Debian 12 ships 3.2.1) verifies it over 16 zero octets, FreeRADIUS
    3.2.9 on and radsecproxy (every version) over the Request Authenticator, so a reply
    carrying one is dropped by one camp or the other. Neither requires one (FreeRADIUS
    asks it of Access-* replies only, radsecproxy of replies to Access-Request only), and
    FreeRADIUS sends none itself: without it every peer takes the answer, whose Response
    Authenticator already covers the whole packet. ``message_authenticator=True`` adds it
    anyway, computed the current way (over the Request Authenticator).

    Then the Response Authenticator (RFC 2865 §3). Raises ValueError for a code that does
    not answer the request or a reply longer than 4096 octets.
    """
    allowed = _REPLIES_TO.get(request.code)
    if allowed is None or code not in allowed:
        raise ValueError(f"code {code} does not answer a request of code {request.code}")
    if message_authenticator is None:
        message_authenticator = not (
            code == _ACCOUNTING_RESPONSE and request.code == _ACCOUNTING_REQUEST
        )
    proxy_states = request.attrs.get(_PROXY_STATE)
    tail = (
        b"".join([bytes((_PROXY_STATE, len(v) + 2)) + v for v in proxy_states])
        if proxy_states
        else b""
    )
    length = _HEADER + (_MA_LEN if message_authenticator else 0) + len(attrs) + len(tail)
    if length > MAX_PACKET:
        raise ValueError(f"reply of {length} octets exceeds {MAX_PACKET}")
    head = _HDR.pack(code, request.identifier, length)
    if message_authenticator:
        mac = _hmac_md5(secret, b"".join((head, request.authenticator, _MA_ZEROED, attrs, tail)))
        body = b"".join((_MA_TAG, mac, attrs, tail))
    else:
        body = attrs + tail
    response = hashlib.md5(b"".join((head, request.authenticator, body, secret))).digest()
    return b"".join((head, response, body))


def encode_request(
    code: int,
    identifier: int,
    secret: bytes,
    attrs: bytes,
    *,
    authenticator: bytes | None = None,
    message_authenticator: bool = True,
) -> bytes:
    """Encode a request (client side), with the Message-Authenticator first when asked.

    Access-Request and Status-Server get ``authenticator`` or 16 random octets (RFC 2865
    §3). A User-Password is hidden with the Request Authenticator (RFC 2865 §5.2), so a
    caller sending one draws the authenticator first, encrypts with it, and passes it here.

    Accounting-Request, Disconnect-Request and CoA-Request get the computed Request
    Authenticator (RFC 2866 §3, RFC 5176 §2.3; ``authenticator`` must be None); their
    Message-Authenticator is computed first, over 16 zero octets (RFC 5176 §3.4).
    """
    if not 0 <= identifier <= 255:
        raise ValueError(f"identifier {identifier} outside 0..255")
    body = _MA_ZEROED + attrs if message_authenticator else attrs
    length = _HEADER + len(body)
    if length > MAX_PACKET:
        raise ValueError(f"request of {length} octets exceeds {MAX_PACKET}")
    head = _HDR.pack(code, identifier, length)
    if code in (_ACCESS_REQUEST, _STATUS_SERVER):
        auth = secrets.token_bytes(16) if authenticator is None else authenticator
        if len(auth) != 16:
            raise ValueError("the authenticator is 16 octets")
        if message_authenticator:
            mac = _hmac_md5(secret, b"".join((head, auth, body)))
            body = b"".join((_MA_TAG, mac, attrs))
        return b"".join((head, auth, body))
    if code in _SIGNED_REQUEST_CODES:
        if authenticator is not None:
            raise ValueError(f"the Request Authenticator of code {code} is computed")
        if message_authenticator:
            mac = _hmac_md5(secret, b"".join((head, _ZERO16, body)))
            body = b"".join((_MA_TAG, mac, attrs))
        auth = hashlib.md5(b"".join((head, _ZERO16, body, secret))).digest()
        return b"".join((head, auth, body))
    raise ValueError(f"code {code} is not a request")


def _xor16(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def encrypt_user_password(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Hide a User-Password (RFC 2865 §5.2): NUL-pad to a multiple of 16 octets (at least
    16), then XOR block by block with MD5(secret + previous ciphertext block), the first
    block chained on the Request Authenticator. Raises ValueError above 128 octets."""
    size = len(password)
    if size > 128:
        raise ValueError(f"password of {size} octets exceeds 128")
    padded = password + bytes((-size) % 16 if size else 16)
    keyed = hashlib.md5(secret)
    out: list[bytes] = []
    last = authenticator
    for i in range(0, len(padded), 16):
        h = keyed.copy()
        h.update(last)
        last = _xor16(h.digest(), padded[i : i + 16])
        out.append(last)
    return b"".join(out)


def decrypt_user_password(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """Recover a User-Password (RFC 2865 §5.2) and strip the NUL padding. Raises
    ``PacketError("malformed")`` unless the length is a multiple of 16 in 16..128."""
    size = len(hidden)
    if size == 0 or size % 16 or size > 128:
        raise PacketError("malformed", f"User-Password of {size} octets")
    keyed = hashlib.md5(secret)
    out: list[bytes] = []
    last = authenticator
    for i in range(0, size, 16):
        h = keyed.copy()
        h.update(last)
        block = hidden[i : i + 16]
        out.append(_xor16(h.digest(), block))
        last = block
    return b"".join(out).rstrip(b"\x00")


def chap_challenge(request: Request) -> bytes:
    """The CHAP challenge: CHAP-Challenge if present, else the Request Authenticator
    (RFC 2865 §2.2, §5.40)."""
    challenge = request.get(_CHAP_CHALLENGE)
    return request.authenticator if challenge is None else challenge


def chap_matches(chap_password: bytes, challenge: bytes, password: bytes) -> bool:
    """Check a CHAP-Password (RFC 2865 §5.3, RFC 1994 §4.1): 1-octet CHAP Ident then
    MD5(Ident + password + challenge). Constant-time; False for a wrong length."""
    if len(chap_password) != 17:
        return False
    expected = hashlib.md5(b"".join((chap_password[:1], password, challenge))).digest()
    return hmac.compare_digest(expected, chap_password[1:])


def attr(code: int, value: bytes) -> bytes:
    """One attribute (RFC 2865 §5): type, length, value. ValueError above 253 octets."""
    if len(value) > 253:
        raise ValueError(f"attribute {code}: value of {len(value)} octets exceeds 253")
    return bytes((code, len(value) + 2)) + value


def attr_int(code: int, n: int) -> bytes:
    """An integer attribute (RFC 2865 §5: 32-bit unsigned, network order)."""
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError(f"attribute {code}: {n} is not a 32-bit unsigned integer")
    return _ATTR_INT.pack(code, 6, n)


def attr_text(code: int, s: str) -> bytes:
    """A text attribute (RFC 2865 §5: UTF-8). ValueError above 253 octets."""
    return attr(code, s.encode("utf-8"))


def attr_text_split(code: int, s: str) -> bytes:
    """Text longer than one attribute as several attributes of the same type, cut at
    character boundaries (for Reply-Message, RFC 2865 §5.18). Empty text gives b""."""
    data = s.encode("utf-8")
    size = len(data)
    out: list[bytes] = []
    pos = 0
    while pos < size:
        end = min(pos + 253, size)
        while end < size and data[end] & 0xC0 == 0x80:
            end -= 1
        out.append(bytes((code, end - pos + 2)) + data[pos:end])
        pos = end
    return b"".join(out)


def vsa(vendor: int, vtype: int, value: bytes) -> bytes:
    """A Vendor-Specific attribute holding one vendor attribute (RFC 2865 §5.26).
    ValueError above 247 octets of value."""
    if len(value) > 247:
        raise ValueError(f"vendor attribute {vendor}/{vtype}: {len(value)} octets exceed 247")
    if not 0 <= vendor <= 0xFFFFFFFF or not 0 <= vtype <= 255:
        raise ValueError(f"vendor {vendor} / type {vtype} out of range")
    return _VSA_HDR.pack(_VSA, len(value) + 8, vendor, vtype, len(value) + 2) + value
