"""EAP packets (RFC 3748 §4) and their carriage in RADIUS (RFC 3579 §3.1, §3.3).

Pure: bytes in, typed packets out. An EAP packet can be longer than one RADIUS attribute
(253 octets of value), so it travels as consecutive EAP-Message attributes that the
receiver concatenates in order (RFC 3579 §3.1); ``eap_message_attrs`` cuts one and
``eap_from_request`` joins them again. RFC 3579 §3.3 makes Message-Authenticator
mandatory in every packet that carries EAP-Message (a packet without it is silently
discarded), because EAP itself has no integrity protection against the RADIUS hop:
``eap_from_request`` refuses such a request whatever the client's
``require_message_authenticator`` switch says. ``radius.packet.decode_request`` has
already verified a Message-Authenticator that is present.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

from radius.attrs import Attr
from radius.packet import Request

__all__ = [
    "EAP_MAX",
    "EapCode",
    "EapError",
    "EapPacket",
    "EapType",
    "decode_eap",
    "eap_from_request",
    "eap_message_attrs",
]

EAP_MAX: Final = 4096 - 20
"""Largest EAP packet one Access-Request can carry: its attributes fit in a 4096-octet
RADIUS packet (RFC 2865 §3); a peer fragments anything longer at the EAP method layer
(RFC 5281 §9.2.2 for TTLS)."""

_HDR: Final = struct.Struct(">BBH")
_EAP_MESSAGE: Final = int(Attr.EAP_MESSAGE)
_MA: Final = int(Attr.MESSAGE_AUTHENTICATOR)

EapReason = Literal[
    "missing_eap_message",
    "missing_message_authenticator",
    "malformed_eap",
    "eap_too_long",
]


class EapError(Exception):
    """An EAP packet (or its RADIUS carriage) to discard; ``reason`` is a stable label."""

    reason: EapReason

    def __init__(self, reason: EapReason, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class EapCode(IntEnum):
    """EAP codes (RFC 3748 §4)."""

    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    """EAP method types we name (RFC 3748 §5, IANA "EAP Method Types")."""

    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3
    MD5_CHALLENGE = 4
    TLS = 13
    TTLS = 21
    PEAP = 25
    EXPANDED = 254


@dataclass(frozen=True, slots=True)
class EapPacket:
    """One EAP packet. ``type`` is None for Success and Failure, which carry no Type
    (RFC 3748 §4.2); ``data`` is what follows the Type octet."""

    code: int
    identifier: int
    type: int | None = None
    data: bytes = b""

    def encode(self) -> bytes:
        """The packet's octets (RFC 3748 §4): Code, Identifier, Length, then Type and data
        for Request and Response."""
        if self.code in (EapCode.SUCCESS, EapCode.FAILURE):
            if self.type is not None or self.data:
                raise ValueError("EAP Success and Failure carry no type or data")
            return _HDR.pack(self.code, self.identifier, 4)
        if self.type is None:
            raise ValueError("an EAP Request or Response has a type")
        length = 5 + len(self.data)
        if length > 0xFFFF:
            raise ValueError(f"EAP packet of {length} octets")
        return _HDR.pack(self.code, self.identifier, length) + bytes((self.type,)) + self.data


def decode_eap(data: bytes) -> EapPacket:
    """Decode one EAP packet (RFC 3748 §4). Octets beyond Length are padding and ignored
    (§4.1); a Length past the data, a Request/Response without a Type, or a code outside
    1..4 raise ``EapError("malformed_eap")``."""
    if len(data) < 4:
        raise EapError("malformed_eap", f"EAP packet of {len(data)} octets")
    code, identifier, length = _HDR.unpack_from(data)
    if length < 4 or length > len(data):
        raise EapError("malformed_eap", f"EAP Length {length} with {len(data)} octets")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        return EapPacket(code, identifier)
    if code not in (EapCode.REQUEST, EapCode.RESPONSE):
        raise EapError("malformed_eap", f"EAP code {code}")
    if length < 5:
        raise EapError("malformed_eap", "EAP Request/Response without a Type")
    return EapPacket(code, identifier, data[4], bytes(data[5:length]))


def eap_message_attrs(eap: bytes) -> bytes:
    """``eap`` as consecutive EAP-Message attributes of at most 253 octets of value each
    (RFC 3579 §3.1), to append to a RADIUS packet's attributes."""
    if not eap:
        raise ValueError("an empty EAP-Message")
    out: list[bytes] = []
    for pos in range(0, len(eap), 253):
        chunk = eap[pos : pos + 253]
        out.append(bytes((_EAP_MESSAGE, len(chunk) + 2)) + chunk)
    return b"".join(out)


def eap_from_request(request: Request) -> bytes:
    """The EAP packet of a decoded Access-Request: its EAP-Message attributes joined in
    packet order (RFC 3579 §3.1). Raises ``EapError`` when there is none, when the
    request lacks Message-Authenticator (RFC 3579 §3.3), or when the joined octets are
    not exactly one EAP packet (its Length must cover them all)."""
    parts = request.attrs.get(_EAP_MESSAGE)
    if not parts:
        raise EapError("missing_eap_message", "no EAP-Message")
    if _MA not in request.attrs:
        raise EapError("missing_message_authenticator", "EAP-Message without Message-Authenticator")
    eap = b"".join(parts)
    if len(eap) > EAP_MAX:
        raise EapError("eap_too_long", f"EAP packet of {len(eap)} octets")
    if len(eap) < 4 or int.from_bytes(eap[2:4], "big") != len(eap):
        raise EapError("malformed_eap", "EAP-Message octets do not make one EAP packet")
    return eap
