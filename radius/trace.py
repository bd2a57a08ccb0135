"""A RADIUS packet as a field engineer reads it: every attribute by its dictionary name
with a typed value, secrets redacted — what ``radiusd -X`` prints, for ``citywifi
trace`` (issue 17). Pure: bytes in, a ``TracedPacket`` out; no secret is needed, because
nothing hidden with one is shown.

Names, types and named values come from our FreeRADIUS-format dictionaries
(``DICTIONARY_DIR``, read once). Attribute octets follow RFC 2865 §5 (types: RFC 8044 —
text as UTF-8, integer as 32-bit unsigned, ipaddr as 4 octets, date as seconds since
1970); a Vendor-Specific is split into its vendor's sub-attributes when it has RFC 2865
§5.26's suggested form, else shown as octets.

Redacted, always, whatever the dictionary says: User-Password (RFC 2865 §5.2, hidden with
the shared secret), CHAP-Password (§5.3: an MD5 over the password a listener could brute
force), Tunnel-Password (RFC 2868 §3.5) and every attribute the dictionary marks
``encrypt=``; their length is shown, never their octets. Message-Authenticator (RFC 3579
§3.2) is an HMAC, not a secret, but is shown as its presence only (it says nothing an
engineer reads). The packet's Authenticator is shown in hex (a random or MD5 value).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Final

from radius.attrs import DICTIONARY_DIR, Code

REDACTED: Final = frozenset((2, 3, 69))  # User-Password, CHAP-Password, Tunnel-Password
MESSAGE_AUTHENTICATOR: Final = 80
VENDOR_SPECIFIC: Final = 26
MAX_OCTETS_SHOWN: Final = 64  # longer octets (EAP-Message, Class) are cut, their length shown


@dataclass(frozen=True, slots=True)
class AttrDef:
    name: str
    type: str
    encrypted: bool = False
    values: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dictionary:
    attrs: Mapping[int, AttrDef]
    vendors: Mapping[int, str]  # vendor id -> name
    vendor_attrs: Mapping[tuple[int, int], AttrDef]


def parse_dictionary(root: Path) -> Dictionary:
    """Read a FreeRADIUS dictionary (``ATTRIBUTE``, ``VALUE``, ``VENDOR``,
    ``BEGIN-VENDOR``/``END-VENDOR``, ``$INCLUDE``) — the subset our files use."""
    attrs: dict[int, AttrDef] = {}
    vendors: dict[int, str] = {}
    vendor_ids: dict[str, int] = {}
    vendor_attrs: dict[tuple[int, int], AttrDef] = {}
    by_name: dict[str, tuple[int | None, int]] = {}
    values: dict[str, dict[int, str]] = {}

    def read(path: Path) -> None:
        vendor: int | None = None
        for raw in path.read_text("utf-8").splitlines():
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "$INCLUDE":
                read(path.parent / words[1])
            elif words[0] == "VENDOR":
                vendors[int(words[2])] = words[1]
                vendor_ids[words[1]] = int(words[2])
            elif words[0] == "BEGIN-VENDOR":
                vendor = vendor_ids[words[1]]
            elif words[0] == "END-VENDOR":
                vendor = None
            elif words[0] == "ATTRIBUTE":
                name, number, kind = words[1], int(words[2], 0), words[3]
                flags = words[4] if len(words) > 4 else ""
                definition = AttrDef(name, kind, "encrypt=" in flags, values.setdefault(name, {}))
                if vendor is None:
                    attrs[number] = definition
                else:
                    vendor_attrs[(vendor, number)] = definition
                by_name[name] = (vendor, number)
            elif words[0] == "VALUE":
                values.setdefault(words[1], {})[int(words[3], 0)] = words[2]

    read(root)
    return Dictionary(attrs, vendors, vendor_attrs)


@cache
def dictionary() -> Dictionary:
    return parse_dictionary(DICTIONARY_DIR / "dictionary")


@dataclass(frozen=True, slots=True)
class TracedAttr:
    name: str  # "User-Name", "WISPr-Bandwidth-Max-Down", "Attr-199", "Vendor-9-Attr-1"
    value: str  # as shown: text quoted, numbers, named values, addresses, 0x-hex
    vendor: str = ""  # the vendor's name for a vendor sub-attribute
    redacted: bool = False


@dataclass(frozen=True, slots=True)
class TracedPacket:
    code: int
    code_name: str
    identifier: int
    length: int
    authenticator: str  # hex
    attributes: tuple[TracedAttr, ...]
    problem: str = ""  # a packet that did not parse to its end says where it stopped

    def lines(self) -> list[str]:
        """``radiusd -X``-like lines: the header, then one ``Name = value`` per attribute."""
        head = (
            f"{self.code_name} Id {self.identifier} length {self.length} "
            f"authenticator 0x{self.authenticator}"
        )
        out = [head] + [f"\t{a.name} = {a.value}" for a in self.attributes]
        if self.problem:
            out.append(f"\t(malformed: {self.problem})")
        return out


def _hex(value: bytes) -> str:
    shown = value[:MAX_OCTETS_SHOWN].hex()
    return f"0x{shown}" + (f"… ({len(value)} octets)" if len(value) > MAX_OCTETS_SHOWN else "")


def _text(value: bytes) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return _hex(value)
    if not text.isprintable():
        return _hex(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(definition: AttrDef | None, value: bytes) -> str:
    kind = definition.type if definition else "octets"
    if kind == "string":
        return _text(value)
    if kind == "integer" and len(value) == 4:
        n = int.from_bytes(value, "big")
        assert definition is not None
        return definition.values.get(n, str(n))
    if kind == "ipaddr" and len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    if kind == "ipv6addr" and len(value) == 16:
        return str(ipaddress.IPv6Address(value))
    if kind == "date" and len(value) == 4:
        at = datetime.fromtimestamp(int.from_bytes(value, "big"), UTC)
        return at.strftime('"%Y-%m-%d %H:%M:%S UTC"')
    return _hex(value)


def _redact(name: str, value: bytes, vendor: str = "") -> TracedAttr:
    return TracedAttr(name, f"<redacted, {len(value)} octets>", vendor, True)


def _vendor_attrs(value: bytes, d: Dictionary) -> list[TracedAttr] | None:
    """RFC 2865 §5.26's suggested form: vendor id, then type-length-value sub-attributes
    filling the rest; None when it is not in that form (shown raw then)."""
    if len(value) < 6:
        return None
    vendor = int.from_bytes(value[:4], "big")
    vendor_name = d.vendors.get(vendor, f"Vendor-{vendor}")
    out, i = [], 4
    while i < len(value):
        if i + 2 > len(value) or value[i + 1] < 2 or i + value[i + 1] > len(value):
            return None
        vtype, vlen = value[i], value[i + 1]
        sub = value[i + 2 : i + vlen]
        definition = d.vendor_attrs.get((vendor, vtype))
        name = definition.name if definition else f"{vendor_name}-Attr-{vtype}"
        if definition is not None and definition.encrypted:
            out.append(_redact(name, sub, vendor_name))
        else:
            out.append(TracedAttr(name, _value(definition, sub), vendor_name))
        i += vlen
    return out


def _code_name(code: int) -> str:
    try:
        return "-".join(part.capitalize() for part in Code(code).name.split("_"))
    except ValueError:
        return f"Code-{code}"


def trace(data: bytes, d: Dictionary | None = None) -> TracedPacket:
    """Decode ``data`` (a request or reply as it crossed the wire) for reading. Never
    raises on a malformed packet: it shows what parsed and where it stopped."""
    d = d or dictionary()
    if len(data) < 20:
        return TracedPacket(data[0] if data else 0, "?", 0, len(data), "", (), "shorter than 20")
    code, identifier = data[0], data[1]
    length = int.from_bytes(data[2:4], "big")
    problem = ""
    if length < 20 or length > len(data):
        problem, length = f"Length {length} but {len(data)} octets", min(len(data), 4096)
    out: list[TracedAttr] = []
    i = 20
    while i < length:
        if i + 2 > length or data[i + 1] < 2 or i + data[i + 1] > length:
            problem = problem or f"attribute at octet {i} runs past the packet"
            break
        kind, size = data[i], data[i + 1]
        value = data[i + 2 : i + size]
        i += size
        definition = d.attrs.get(kind)
        name = definition.name if definition else f"Attr-{kind}"
        if kind in REDACTED or (definition is not None and definition.encrypted):
            out.append(_redact(name, value))
        elif kind == MESSAGE_AUTHENTICATOR:
            out.append(TracedAttr(name, f"<present, {len(value)} octets>"))
        elif kind == VENDOR_SPECIFIC:
            subs = _vendor_attrs(value, d)
            out.extend(subs if subs is not None else [TracedAttr(name, _hex(value))])
        else:
            out.append(TracedAttr(name, _value(definition, value)))
    return TracedPacket(
        code, _code_name(code), identifier, length, data[4:20].hex(), tuple(out), problem
    )
