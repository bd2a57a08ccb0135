"""Test kit: IPFIX (RFC 7011) messages built field by field, to feed the decoder and
the UDP listener. An encoder written from the RFC's figures, independent of the decoder
(it shares no code with controller.domain.natlog)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

# (element id, length) pairs of the RFC 8158 §5 NAT44 session template, plus the time
NAT44_SESSION = (
    (323, 8),  # observationTimeMilliseconds
    (230, 1),  # natEvent
    (4, 1),  # protocolIdentifier
    (8, 4),  # sourceIPv4Address
    (7, 2),  # sourceTransportPort
    (225, 4),  # postNATSourceIPv4Address
    (227, 2),  # postNAPTSourceTransportPort
)
PORT_BLOCK = (
    (323, 8),
    (230, 1),
    (8, 4),  # sourceIPv4Address
    (225, 4),  # postNATSourceIPv4Address
    (361, 2),  # portRangeStart
    (362, 2),  # portRangeEnd
)


def template_set(template_id: int, fields: Sequence[tuple[int, int]]) -> bytes:
    body = struct.pack("!HH", template_id, len(fields))
    for element, length in fields:
        body += struct.pack("!HH", element, length)
    return struct.pack("!HH", 2, 4 + len(body)) + body


def _value(element: int, length: int, value: object) -> bytes:
    if isinstance(value, str):
        return ipaddress.ip_address(value).packed
    assert isinstance(value, int)
    return value.to_bytes(length, "big")


def data_set(
    template_id: int, fields: Sequence[tuple[int, int]], records: Sequence[Sequence[object]]
) -> bytes:
    body = b""
    for record in records:
        for (element, length), value in zip(fields, record, strict=True):
            body += _value(element, length, value)
    return struct.pack("!HH", template_id, 4 + len(body)) + body


def message(sets: Sequence[bytes], export_time: int = 0, seq: int = 0, domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), export_time, seq, domain) + body


def session_record(
    ms: int, event: int, proto: int, priv: str, pport: int, pub: str, port: int
) -> list[object]:
    return [ms, event, proto, priv, pport, pub, port]


def block_record(ms: int, event: int, priv: str, pub: str, start: int, end: int) -> list[object]:
    return [ms, event, priv, pub, start, end]
