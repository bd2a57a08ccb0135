"""NAT translations from a carrier-grade NAT's logs: the mapping between public and
private addresses that MPS Order 82 Art. 8 asks an access provider to keep, and that
lets the security bureau go from "public IP A, port P, at time T" to a person.

Pure: bytes or text in, typed ``NatTranslation`` out; time is what the log says (or the
receive time the caller passes for a line that carries none). Nothing here raises on
bad input: a line or record that cannot be read is counted in a ``Tally`` under a
stable reason and skipped.

Syslog formats read (one line each; the sample lines are in tests/test_natlog_parse.py):

- **Cisco ASA / FTD / PIX** ``%ASA-6-305011`` (Built dynamic|static TCP|UDP|ICMP
  translation) and ``%ASA-6-305012`` (Teardown …), RFC 3164 wrapped.
- **Juniper** ``RT_FLOW_SESSION_CREATE[_USF]`` / ``RT_FLOW_SESSION_CLOSE[_USF]`` in
  structured (RFC 5424) form: ``source-address``, ``source-port``, ``nat-source-address``,
  ``nat-source-port``, ``protocol-id``.
- **Linux netfilter conntrack** events (``conntrack -E -o timestamp``): ``[NEW]`` and
  ``[DESTROY]`` with the original and the reply tuple; a source NAT is the reply tuple's
  destination differing from the original source.

IPFIX (RFC 7011) with the NAT event information elements of RFC 8158 is decoded by
``IpfixDecoder``: templates are kept per (exporter, observation domain, template id),
as RFC 7011 §8 scopes them.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

NAT_SCHEMA: tuple[tuple[str, str], ...] = (
    ("day", "DATE"),  # local day of ``time`` (the partition)
    ("time", "BIGINT"),  # epoch ms of the event
    ("event", "VARCHAR"),  # NatEvent value
    ("protocol", "INTEGER"),  # IANA protocol number; 0 = every protocol (a port block)
    ("private_ip", "VARCHAR"),
    ("private_port", "INTEGER"),  # NULL for a port block
    ("public_ip", "VARCHAR"),
    ("port_start", "INTEGER"),  # the public port, or the block's first port
    ("port_end", "INTEGER"),  # the same port, or the block's last port
    ("source", "VARCHAR"),  # the exporter (NAS or CGN) address
    ("archived_at", "BIGINT"),  # epoch ms
)

PROTOCOLS: Mapping[str, int] = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}


class NatEvent(StrEnum):
    CREATE = "create"  # a session (or BIB) mapping begins
    DELETE = "delete"
    BLOCK_ALLOC = "block-alloc"  # a port block is given to a private address
    BLOCK_RELEASE = "block-release"

    @property
    def starts(self) -> bool:
        return self in (NatEvent.CREATE, NatEvent.BLOCK_ALLOC)


@dataclass(frozen=True, slots=True)
class NatTranslation:
    """One NAT log event: ``private_ip:private_port`` appears as ``public_ip`` with a
    port in ``port_start..port_end`` (equal for a single port) from ``time_ms``
    (create/block-alloc) or until it (delete/block-release)."""

    time_ms: int
    event: NatEvent
    protocol: int
    private_ip: str
    private_port: int | None
    public_ip: str
    port_start: int
    port_end: int
    source: str

    def covers(self, public_ip: str, port: int) -> bool:
        return self.public_ip == public_ip and self.port_start <= port <= self.port_end

    def ends(self, other: NatTranslation) -> bool:
        """Whether this (a delete/release) closes ``other`` (a create/alloc)."""
        return (
            not self.event.starts
            and other.event.starts
            and (self.event == NatEvent.DELETE) == (other.event == NatEvent.CREATE)
            and self.source == other.source
            and self.public_ip == other.public_ip
            and self.port_start == other.port_start
            and self.port_end == other.port_end
            and self.private_ip == other.private_ip
            and self.protocol == other.protocol
        )

    def row(self, tz: ZoneInfo, archived_at: int) -> tuple[object, ...]:
        """The archive row (``NAT_SCHEMA`` order)."""
        day = datetime.fromtimestamp(self.time_ms / 1000, tz).date()
        return (
            day,
            self.time_ms,
            self.event.value,
            self.protocol,
            self.private_ip,
            self.private_port,
            self.public_ip,
            self.port_start,
            self.port_end,
            self.source,
            archived_at,
        )

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> NatTranslation:
        _day, t, event, proto, priv, pport, pub, start, end, source, _at = row
        return cls(
            time_ms=int(str(t)),
            event=NatEvent(str(event)),
            protocol=int(str(proto)),
            private_ip=str(priv),
            private_port=None if pport is None else int(str(pport)),
            public_ip=str(pub),
            port_start=int(str(start)),
            port_end=int(str(end)),
            source=str(source),
        )


@dataclass
class Tally:
    """What a parse made of its input: translations, lines that are not NAT events
    (``ignored``) and lines or records that could not be read, by reason (``bad``)."""

    parsed: int = 0
    ignored: int = 0
    bad: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.parsed += other.parsed
        self.ignored += other.ignored
        self.bad.update(other.bad)

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())


def in_force(candidates: list[NatTranslation], at_ms: int) -> list[NatTranslation]:
    """The translations in force at ``at_ms`` among ``candidates`` (the events covering
    one public address and port, in any order): each create/alloc at or before
    ``at_ms`` not closed by a matching delete/release before ``at_ms``; newest first.

    A delete at exactly ``at_ms`` still counts the mapping in force (its last moment).
    """
    ordered = sorted(candidates, key=lambda t: (t.time_ms, not t.event.starts))
    open_: list[NatTranslation] = []
    for event in ordered:
        if event.time_ms > at_ms:
            break
        if event.event.starts:
            open_ = [o for o in open_ if not _same_mapping(o, event)]
            open_.append(event)
        elif event.time_ms < at_ms:
            open_ = [o for o in open_ if not event.ends(o)]
    return sorted(open_, key=lambda t: -t.time_ms)


def _same_mapping(a: NatTranslation, b: NatTranslation) -> bool:
    """A new create for the same public port (and protocol) replaces the older one."""
    return (
        a.source == b.source
        and a.public_ip == b.public_ip
        and a.protocol == b.protocol
        and a.port_start <= b.port_end
        and b.port_start <= a.port_end
    )


# --------------------------------------------------------------------------- syslog


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    value = int(text)
    return value if 0 <= value <= 65535 else None


_PRI = re.compile(r"^<(\d{1,3})>")
# RFC 5424: VERSION SP TIMESTAMP SP HOSTNAME ...
_RFC5424_TIME = re.compile(
    r"^\d{1,2} (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d))"
)
# RFC 3164 (and the ASA "Oct 10 2018 12:34:56" with a year)
_BSD_TIME = re.compile(r"^([A-Z][a-z]{2}) {1,2}(\d{1,2})(?: (\d{4}))? (\d\d):(\d\d):(\d\d)")
_CONNTRACK_TIME = re.compile(r"^\s*\[(\d{9,11})(?:\.(\d{1,9}))?\s*\]")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

_ASA = re.compile(
    r"%(?:ASA|FTD|PIX)-\d-(305011|305012): (?:Built|Teardown) (?:dynamic|static) "
    r"(TCP|UDP|ICMP) translation from [^:\s]+:([0-9a-fA-F.:]+)/(\d+) "
    r"to [^:\s(]+(?:\([^)]*\))?:([0-9a-fA-F.:]+)/(\d+)"
)
# RFC 5424 §6.3: one or more SD-ELEMENTs, "]" and '"' escaped inside PARAM-VALUEs
_SD_ELEMENT = r'\[(?:[^\]"]|"(?:[^"\\]|\\.)*")*\]'
_JUNIPER = re.compile(rf"\bRT_FLOW_SESSION_(CREATE|CLOSE)(?:_USF)? ((?:{_SD_ELEMENT})+)")
_SD_PARAM = re.compile(r'([\w.-]+)="((?:[^"\\]|\\.)*)"')
_CONNTRACK = re.compile(r"\[(NEW|DESTROY)\]\s+(\w+)\s+(\d+)\s")
_KV = re.compile(r"\b(src|dst|sport|dport)=(\S+)")


def _line_time(line: str, tz: ZoneInfo, received_ms: int | None) -> tuple[int | None, str]:
    """The line's own time (epoch ms) and the rest of it; the year of an RFC 3164 stamp,
    which has none, is the one that puts it nearest before the receive time."""
    rest = line
    m = _CONNTRACK_TIME.match(rest)
    if m:
        frac = (m.group(2) or "0")[:3].ljust(3, "0")
        return int(m.group(1)) * 1000 + int(frac), rest[m.end() :]
    m = _PRI.match(rest)
    if m:
        rest = rest[m.end() :]
    m = _RFC5424_TIME.match(rest)
    if m:
        stamp = m.group(1).replace("Z", "+00:00")
        try:
            return int(datetime.fromisoformat(stamp).timestamp() * 1000), rest[m.end() :]
        except ValueError:
            return None, rest
    m = _BSD_TIME.match(rest)
    if m:
        month = _MONTHS.get(m.group(1))
        if month is None:
            return None, rest
        ref = datetime.fromtimestamp((received_ms or 0) / 1000, tz)
        years = [int(m.group(3))] if m.group(3) else [ref.year, ref.year - 1]
        for year in years:
            try:
                when = datetime(
                    year, month, int(m.group(2)), int(m.group(4)), int(m.group(5)),
                    int(m.group(6)), tzinfo=tz,
                )  # fmt: skip
            except ValueError:
                continue
            ms = int(when.timestamp() * 1000)
            if m.group(3) or received_ms is None or ms <= received_ms + 86_400_000:
                return ms, rest[m.end() :]
        return None, rest
    return None, rest


def parse_syslog_line(
    line: str, source: str, tz: ZoneInfo, received_ms: int | None, tally: Tally
) -> NatTranslation | None:
    """One syslog line (any of the formats in the module docstring) or None.

    ``source`` is the exporter (the datagram's sender, or the file's ``--source``);
    ``received_ms`` the receive time (None reading a file: a line without a time of its
    own is then bad, ``no_time``).
    """
    line = line.strip()
    if not line:
        return None
    kind: str | None = None
    if "%ASA-" in line or "%FTD-" in line or "%PIX-" in line:
        kind = "asa"
    elif "RT_FLOW_SESSION_" in line:
        kind = "juniper"
    elif "[NEW]" in line or "[DESTROY]" in line:
        kind = "conntrack"
    if kind is None:
        tally.ignored += 1
        return None
    when, _rest = _line_time(line, tz, received_ms)
    if when is None:
        when = received_ms
    if when is None:
        tally.bad["no_time"] += 1
        return None
    if kind == "asa":
        found = _asa(line, when, source)
    elif kind == "juniper":
        found = _juniper(line, when, source)
    else:
        found = _conntrack(line, when, source)
    if isinstance(found, str):
        if found:
            tally.bad[f"{kind}:{found}"] += 1
        else:
            tally.ignored += 1
        return None
    tally.parsed += 1
    return found


_Endpoints = tuple[str, int, str, int]  # private IP, private port, public IP, public port


def _endpoints(priv: str, pport: str, pub: str, port: str) -> _Endpoints | None:
    """The four fields of a one-port translation as read from a line; None if one is bad."""
    private, public = _ip(priv), _ip(pub)
    private_port, public_port = _port(pport), _port(port)
    if private is None or public is None or private_port is None or public_port is None:
        return None
    return private, private_port, public, public_port


def _one_port(
    when: int, created: bool, protocol: int, ends: _Endpoints, source: str
) -> NatTranslation:
    """A session translation (one public port), as the syslog formats log them."""
    private, private_port, public, public_port = ends
    return NatTranslation(
        time_ms=when,
        event=NatEvent.CREATE if created else NatEvent.DELETE,
        protocol=protocol,
        private_ip=private,
        private_port=private_port,
        public_ip=public,
        port_start=public_port,
        port_end=public_port,
        source=source,
    )


def _asa(line: str, when: int, source: str) -> NatTranslation | str:
    if "-305011:" not in line and "-305012:" not in line:
        return ""  # another ASA message: not a translation
    m = _ASA.search(line)
    if m is None:
        return "malformed"
    code, proto, priv, pport, pub, port = m.groups()
    ends = _endpoints(priv, pport, pub, port)
    if ends is None:
        return "bad_address"
    return _one_port(when, code == "305011", PROTOCOLS[proto.lower()], ends, source)


def _juniper(line: str, when: int, source: str) -> NatTranslation | str:
    m = _JUNIPER.search(line)
    if m is None:
        return "malformed"
    params = dict(_SD_PARAM.findall(m.group(2)))
    need = ("source-address", "source-port", "nat-source-address", "nat-source-port")
    if any(k not in params for k in need):
        return "missing_field"
    ends = _endpoints(
        params["source-address"],
        params["source-port"],
        params["nat-source-address"],
        params["nat-source-port"],
    )
    if ends is None:
        return "bad_address"
    if ends[:2] == ends[2:]:
        return ""  # no source NAT on this session
    proto = params.get("protocol-id", "")
    if not (proto.isascii() and proto.isdigit()) or len(proto) > 3 or int(proto) > 255:
        return "bad_protocol"
    return _one_port(when, m.group(1) == "CREATE", int(proto), ends, source)


def _conntrack(line: str, when: int, source: str) -> NatTranslation | str:
    m = _CONNTRACK.search(line)
    if m is None:
        return "malformed"
    event, _name, number = m.groups()
    if int(number) > 255:
        return "bad_protocol"
    pairs = _KV.findall(line[m.end() :])
    tuples: list[dict[str, str]] = [{}, {}]
    i = 0
    for key, value in pairs:
        if key in tuples[i]:
            i += 1
            if i > 1:
                break
        tuples[i][key] = value
    orig, reply = tuples
    if int(number) in (1, 58):
        return ""  # ICMP: an id, no port to look up
    if "sport" not in orig or "dport" not in reply:
        return "malformed"
    ends = _endpoints(orig.get("src", ""), orig["sport"], reply.get("dst", ""), reply["dport"])
    if ends is None:
        return "bad_address"
    if ends[:2] == ends[2:]:
        return ""  # not translated
    return _one_port(when, event == "NEW", int(number), ends, source)


def parse_syslog_text(
    text: str, source: str, tz: ZoneInfo, received_ms: int | None, tally: Tally
) -> Iterator[NatTranslation]:
    for line in text.splitlines():
        found = parse_syslog_line(line, source, tz, received_ms, tally)
        if found is not None:
            yield found


# --------------------------------------------------------------------------- IPFIX

IPFIX_VERSION = 10  # RFC 7011 §3.1
TEMPLATE_SET = 2  # RFC 7011 §3.3.2
OPTIONS_TEMPLATE_SET = 3
MIN_DATA_SET = 256
VARIABLE = 65535  # RFC 7011 §7: variable-length field

# Information elements (IANA IPFIX registry; RFC 8158 §4 for the NAT ones)
IE_PROTOCOL = 4  # protocolIdentifier
IE_SRC_PORT = 7  # sourceTransportPort
IE_SRC_V4 = 8  # sourceIPv4Address
IE_SRC_V6 = 27  # sourceIPv6Address (NAT64)
IE_POST_NAT_SRC_V4 = 225  # postNATSourceIPv4Address
IE_POST_NAPT_SRC_PORT = 227  # postNAPTSourceTransportPort
IE_NAT_EVENT = 230  # natEvent
IE_PORT_RANGE_START = 361
IE_PORT_RANGE_END = 362
IE_OBS_TIME_S = 322  # observationTimeSeconds
IE_OBS_TIME_MS = 323  # observationTimeMilliseconds
IE_OBS_TIME_US = 324  # observationTimeMicroseconds (NTP format, RFC 7011 §6.1.9)
IE_EVENT_TIME_MS = 152  # flowStartMilliseconds (some exporters stamp events with it)

# natEvent values (RFC 8158 §4.3, IANA "NAT Event Type")
NAT_EVENTS: Mapping[int, NatEvent] = {
    1: NatEvent.CREATE,  # NAT translation create (Historic)
    2: NatEvent.DELETE,  # NAT translation delete (Historic)
    4: NatEvent.CREATE,  # NAT44 session create
    5: NatEvent.DELETE,  # NAT44 session delete
    6: NatEvent.CREATE,  # NAT64 session create
    7: NatEvent.DELETE,  # NAT64 session delete
    8: NatEvent.CREATE,  # NAT44 BIB create
    9: NatEvent.DELETE,  # NAT44 BIB delete
    10: NatEvent.CREATE,  # NAT64 BIB create
    11: NatEvent.DELETE,  # NAT64 BIB delete
    16: NatEvent.BLOCK_ALLOC,  # Port block allocation
    17: NatEvent.BLOCK_RELEASE,  # Port block de-allocation
}
# 3 addresses exhausted, 12 ports exhausted, 13 quota exceeded, 14/15 address binding
# (no port), 18 threshold reached: no translation of a port; counted as ignored.

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


@dataclass(frozen=True, slots=True)
class FieldSpec:
    element: int
    length: int
    enterprise: int = 0  # 0: IANA


@dataclass(frozen=True, slots=True)
class Template:
    fields: tuple[FieldSpec, ...]
    options: bool = False  # an options template (its records describe the exporter)

    @property
    def min_length(self) -> int:
        return sum(1 if f.length == VARIABLE else f.length for f in self.fields)

    @property
    def slices(self) -> tuple[tuple[int, int, int], ...] | None:
        """(element, start, end) of each IANA field when every field has a fixed length
        (the common NAT templates): records are then cut without per-field checks."""
        if any(f.length == VARIABLE for f in self.fields):
            return None
        out: list[tuple[int, int, int]] = []
        pos = 0
        seen: set[int] = set()
        for f in self.fields:
            if f.enterprise == 0 and f.element not in seen:  # the first occurrence wins
                out.append((f.element, pos, pos + f.length))
                seen.add(f.element)
            pos += f.length
        return tuple(out)


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class IpfixDecoder:
    """RFC 7011 messages to NAT translations, keeping the templates each exporter sent.

    Stateful only in its template cache (RFC 7011 §8: a template is scoped to the
    transport session and observation domain: here, the exporter address and domain id).
    A data set whose template is not (yet) known is counted (``no_template``) and
    skipped: over UDP templates are resent periodically (RFC 7011 §8.4).

    Over UDP a template not refreshed within ``template_timeout`` seconds of the time
    the caller passes (``decode(..., now=)``, the receive time) is gone (RFC 7011 §8.4:
    the collector ages templates out); a data set for it is counted
    (``template_expired``) and dropped, not read with a layout the exporter may have
    reused for another template. A file (no ``now``) keeps its templates.
    """

    def __init__(self, max_templates: int = 4096, template_timeout: float | None = None) -> None:
        self.templates: dict[tuple[str, int, int], Template] = {}
        self.learned: dict[tuple[str, int, int], float] = {}  # when each was last (re)sent
        self.max_templates = max_templates
        self.template_timeout = template_timeout

    def decode(
        self, data: bytes, exporter: str, tally: Tally, now: float | None = None
    ) -> list[NatTranslation]:
        """Every NAT translation in one message (a UDP datagram or a file's message);
        ``now``: the receive time (seconds), which ages templates out."""
        try:
            return self._message(data, exporter, tally, now)
        except _Bad as bad:
            tally.bad[f"ipfix:{bad.reason}"] += 1
            return []

    def _template(
        self, key: tuple[str, int, int], now: float | None, tally: Tally
    ) -> Template | None:
        template = self.templates.get(key)
        if template is None:
            tally.bad["ipfix:no_template"] += 1
            return None
        timeout = self.template_timeout
        if now is not None and timeout is not None and now - self.learned.get(key, now) > timeout:
            del self.templates[key]
            self.learned.pop(key, None)
            tally.bad["ipfix:template_expired"] += 1
            return None
        return template

    def _expire(self, now: float | None) -> None:
        """Forget every template not refreshed within the timeout."""
        timeout = self.template_timeout
        if now is None or timeout is None:
            return
        for key in [k for k, at in self.learned.items() if now - at > timeout]:
            self.templates.pop(key, None)
            del self.learned[key]

    def _message(
        self, data: bytes, exporter: str, tally: Tally, now: float | None
    ) -> list[NatTranslation]:
        if len(data) < 16:
            raise _Bad("short_message")
        version, length, export_time, _seq, domain = struct.unpack_from("!HHIII", data)
        if version != IPFIX_VERSION:
            raise _Bad("bad_version")
        if length < 16 or length > len(data):
            raise _Bad("bad_length")
        out: list[NatTranslation] = []
        pos = 16
        while pos < length:
            if length - pos < 4:
                raise _Bad("bad_set")
            set_id, set_len = struct.unpack_from("!HH", data, pos)
            if set_len < 4 or pos + set_len > length:
                raise _Bad("bad_set")
            body = data[pos + 4 : pos + set_len]
            if set_id in (TEMPLATE_SET, OPTIONS_TEMPLATE_SET):
                try:
                    self._templates(body, exporter, domain, set_id == OPTIONS_TEMPLATE_SET, now)
                except _Bad as bad:
                    tally.bad[f"ipfix:{bad.reason}"] += 1
            elif set_id >= MIN_DATA_SET:
                template = self._template((exporter, domain, set_id), now, tally)
                if template is not None and not template.options:
                    out.extend(self._data(body, template, export_time, exporter, tally))
            else:
                tally.bad["ipfix:reserved_set"] += 1
            pos += set_len
        return out

    def _templates(
        self, body: bytes, exporter: str, domain: int, options: bool, now: float | None
    ) -> None:
        pos = 0
        while len(body) - pos >= 4:
            template_id, count = struct.unpack_from("!HH", body, pos)
            pos += 4
            if template_id < MIN_DATA_SET:
                if template_id == 0 and count == 0:
                    break  # padding (RFC 7011 §3.3.1)
                raise _Bad("bad_template_id")
            if options:
                if count == 0:
                    self.templates.pop((exporter, domain, template_id), None)
                    self.learned.pop((exporter, domain, template_id), None)
                    continue
                if len(body) - pos < 2:
                    raise _Bad("short_template")
                pos += 2  # scope field count
            if count == 0:  # a template withdrawal (RFC 7011 §8.1)
                self.templates.pop((exporter, domain, template_id), None)
                self.learned.pop((exporter, domain, template_id), None)
                continue
            specs: list[FieldSpec] = []
            for _ in range(count):
                if len(body) - pos < 4:
                    raise _Bad("short_template")
                element, flen = struct.unpack_from("!HH", body, pos)
                pos += 4
                enterprise = 0
                if element & 0x8000:
                    if len(body) - pos < 4:
                        raise _Bad("short_template")
                    (enterprise,) = struct.unpack_from("!I", body, pos)
                    pos += 4
                    element &= 0x7FFF
                if flen == 0:
                    raise _Bad("zero_length_field")
                specs.append(FieldSpec(element, flen, enterprise))
            key = (exporter, domain, template_id)
            if key not in self.templates and len(self.templates) >= self.max_templates:
                self._expire(now)
                if len(self.templates) >= self.max_templates:
                    raise _Bad("too_many_templates")
            self.templates[key] = Template(tuple(specs), options)
            if now is not None:
                self.learned[key] = now

    def _data(
        self, body: bytes, template: Template, export_time: int, exporter: str, tally: Tally
    ) -> Iterator[NatTranslation]:
        pos = 0
        minimum = max(template.min_length, 1)
        slices = template.slices
        while len(body) - pos >= minimum:
            values: dict[int, bytes] = {}
            if slices is not None:
                values = {e: body[pos + a : pos + b] for e, a, b in slices}
                pos += minimum
            for spec in template.fields if slices is None else ():
                flen = spec.length
                if flen == VARIABLE:
                    if pos >= len(body):
                        tally.bad["ipfix:short_record"] += 1
                        return
                    flen = body[pos]
                    pos += 1
                    if flen == 255:
                        if len(body) - pos < 2:
                            tally.bad["ipfix:short_record"] += 1
                            return
                        (flen,) = struct.unpack_from("!H", body, pos)
                        pos += 2
                if len(body) - pos < flen:
                    tally.bad["ipfix:short_record"] += 1
                    return
                if spec.enterprise == 0:
                    values.setdefault(spec.element, body[pos : pos + flen])
                pos += flen
            found = _nat_record(values, export_time, exporter)
            if isinstance(found, str):
                if found:
                    tally.bad[f"ipfix:{found}"] += 1
                else:
                    tally.ignored += 1
            else:
                tally.parsed += 1
                yield found


def _uint(raw: bytes) -> int:
    """An unsigned integer in reduced-size encoding (RFC 7011 §6.2) or full size."""
    return int.from_bytes(raw, "big") if 0 < len(raw) <= 8 else -1


def _record_time(values: Mapping[int, bytes], export_time: int) -> int:
    if IE_OBS_TIME_MS in values and len(values[IE_OBS_TIME_MS]) == 8:
        return _uint(values[IE_OBS_TIME_MS])
    if IE_EVENT_TIME_MS in values and len(values[IE_EVENT_TIME_MS]) == 8:
        return _uint(values[IE_EVENT_TIME_MS])
    if IE_OBS_TIME_US in values and len(values[IE_OBS_TIME_US]) == 8:
        seconds: int = int.from_bytes(values[IE_OBS_TIME_US][:4], "big")
        fraction: int = int.from_bytes(values[IE_OBS_TIME_US][4:], "big")
        return (seconds - NTP_EPOCH_OFFSET) * 1000 + (fraction * 1000 >> 32)
    if IE_OBS_TIME_S in values and len(values[IE_OBS_TIME_S]) == 4:
        return _uint(values[IE_OBS_TIME_S]) * 1000
    return export_time * 1000  # RFC 7011 §3.1: the message's export time


def _nat_record(
    values: Mapping[int, bytes], export_time: int, exporter: str
) -> NatTranslation | str:
    if IE_NAT_EVENT not in values:
        return ""  # not a NAT event record (e.g. a flow record)
    code = _uint(values[IE_NAT_EVENT])
    event = NAT_EVENTS.get(code)
    if event is None:
        return ""  # exhaustion, quota, threshold: no mapping to record
    if IE_SRC_V4 in values and len(values[IE_SRC_V4]) == 4:
        private = socket.inet_ntoa(values[IE_SRC_V4])
    elif IE_SRC_V6 in values and len(values[IE_SRC_V6]) == 16:
        private = str(ipaddress.IPv6Address(values[IE_SRC_V6]))
    else:
        return "missing_private_address"
    raw_public = values.get(IE_POST_NAT_SRC_V4, b"")
    if len(raw_public) != 4:
        return "missing_public_address"
    public = socket.inet_ntoa(raw_public)
    protocol = _uint(values.get(IE_PROTOCOL, b"\x00"))
    if not 0 <= protocol <= 255:
        return "bad_protocol"
    if event in (NatEvent.BLOCK_ALLOC, NatEvent.BLOCK_RELEASE):
        if IE_PORT_RANGE_START not in values or IE_PORT_RANGE_END not in values:
            return "missing_port_range"
        start = _uint(values[IE_PORT_RANGE_START])
        end = _uint(values[IE_PORT_RANGE_END])
        private_port = None
    else:
        if IE_POST_NAPT_SRC_PORT not in values or IE_SRC_PORT not in values:
            return "missing_port"
        start = end = _uint(values[IE_POST_NAPT_SRC_PORT])
        private_port = _uint(values[IE_SRC_PORT])
        if not 0 <= private_port <= 65535:
            return "bad_port"
    if not (0 <= start <= end <= 65535):
        return "bad_port"
    when = _record_time(values, export_time)
    if when < 0:
        return "bad_time"
    return NatTranslation(
        time_ms=when,
        event=event,
        protocol=protocol,
        private_ip=private,
        private_port=private_port,
        public_ip=public,
        port_start=start,
        port_end=end,
        source=exporter,
    )


def iter_ipfix_messages(data: bytes, tally: Tally) -> Iterator[bytes]:
    """Messages laid end to end (an IPFIX file, RFC 5655 §5: a stream of messages)."""
    pos = 0
    while len(data) - pos >= 4:
        version, length = struct.unpack_from("!HH", data, pos)
        if version != IPFIX_VERSION or length < 16 or pos + length > len(data):
            tally.bad["ipfix:bad_stream"] += 1
            return
        yield data[pos : pos + length]
        pos += length
    if pos != len(data):
        tally.bad["ipfix:trailing_bytes"] += 1


def local_day(time_ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(time_ms / 1000, tz).date()


def utc(time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000, UTC)
