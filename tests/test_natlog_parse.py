"""NAT log parsers (controller.domain.natlog): one real sample line per syslog format,
IPFIX messages (RFC 7011) with the NAT events of RFC 8158, bad input counted and never
raised, and a property test that no byte string crashes the IPFIX decoder."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domain.natlog import (
    IpfixDecoder,
    NatEvent,
    NatTranslation,
    Tally,
    in_force,
    iter_ipfix_messages,
    parse_syslog_line,
    parse_syslog_text,
)
from tests.support.ipfix_kit import (
    NAT44_SESSION,
    PORT_BLOCK,
    block_record,
    data_set,
    message,
    session_record,
    template_set,
)

SH = ZoneInfo("Asia/Shanghai")
CGN = "192.0.2.1"


def ms(*args: int, tz: ZoneInfo = SH) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


def one(line: str, received_ms: int | None = None) -> tuple[NatTranslation | None, Tally]:
    tally = Tally()
    return parse_syslog_line(line, CGN, SH, received_ms, tally), tally


# --------------------------------------------------------------------------- Cisco ASA


def test_cisco_asa_built_and_teardown() -> None:
    # Sample message text as in Cisco's ASA syslog guide and the logstash-patterns-core
    # CISCOFW305011 test: "%ASA-6-305011: Built dynamic TCP translation from
    # inside:172.31.98.44/1772 to outside:100.66.98.44/8256", here with an RFC 3164 header
    # carrying the year, as ASA's "logging timestamp" with year writes it.
    built = (
        "<166>Oct 10 2018 12:34:56 localhost : %ASA-6-305011: Built dynamic TCP translation"
        " from inside:172.31.98.44/1772 to outside:100.66.98.44/8256"
    )
    t, tally = one(built)
    assert t == NatTranslation(
        time_ms=ms(2018, 10, 10, 12, 34, 56),
        event=NatEvent.CREATE,
        protocol=6,
        private_ip="172.31.98.44",
        private_port=1772,
        public_ip="100.66.98.44",
        port_start=8256,
        port_end=8256,
        source=CGN,
    )
    assert tally.parsed == 1 and not tally.bad
    # the named-interface variant "Outside(Inside_nat_outbound):" and a teardown
    down = (
        "Oct 10 2018 12:40:00 fw1 : %ASA-6-305012: Teardown dynamic UDP translation from"
        " Inside:192.168.111.10/56298 to Outside(Inside_nat_outbound):212.156.67.62/12694"
        " duration 0:05:04"
    )
    t, _ = one(down)
    assert t is not None and t.event == NatEvent.DELETE and t.protocol == 17
    assert (t.private_ip, t.public_ip, t.port_start) == ("192.168.111.10", "212.156.67.62", 12694)


def test_rfc3164_without_a_year_takes_the_receive_year() -> None:
    line = (
        "<166>Jan  2 00:00:05 fw1 : %ASA-6-305011: Built dynamic TCP translation from"
        " inside:10.0.0.5/4000 to outside:203.0.113.9/61000"
    )
    t, _ = one(line, received_ms=ms(2026, 1, 2, 0, 0, 6))
    assert t is not None and t.time_ms == ms(2026, 1, 2, 0, 0, 5)
    # received on the 1st of January, a line stamped "Dec 31" is last year's
    line = line.replace("Jan  2 00:00:05", "Dec 31 23:59:59")
    t, _ = one(line, received_ms=ms(2026, 1, 1, 0, 0, 1))
    assert t is not None and t.time_ms == ms(2025, 12, 31, 23, 59, 59)


# --------------------------------------------------------------------------- Juniper


def test_juniper_rt_flow_session_create_usf() -> None:
    # Sample from Juniper's "System Log Error Messages for Next Gen Services" (MX-SPC3),
    # RFC 5424 with structured data, trimmed after the fields we read.
    line = (
        "<14>1 2018-06-26T17:23:06.269-07:00 booklet RT_FLOW - RT_FLOW_SESSION_CREATE_USF"
        ' [junos@2636.1.1.1.2.25 prefix="SYSLOG-PREFIX" service-set-name="JNPR-NH-SSET3"'
        ' source-address="50.0.0.10" source-port="1" destination-address="60.0.0.10"'
        ' destination-port="21219" connection-tag="0" service-name="icmp"'
        ' nat-source-address="100.0.0.1" nat-source-port="1024"'
        ' nat-destination-address="60.0.0.10" nat-destination-port="21219"'
        ' protocol-id="1" policy-name="p1"]'
    )
    t, tally = one(line)
    pdt = datetime(2018, 6, 26, 17, 23, 6, 269000).replace(
        tzinfo=datetime.fromisoformat("2018-06-26T00:00:00-07:00").tzinfo
    )
    assert t is not None and tally.parsed == 1
    assert t.time_ms == int(pdt.timestamp() * 1000)
    assert (t.event, t.protocol, t.private_ip, t.private_port) == (
        NatEvent.CREATE,
        1,
        "50.0.0.10",
        1,
    )
    assert (t.public_ip, t.port_start, t.port_end) == ("100.0.0.1", 1024, 1024)
    close = line.replace("RT_FLOW_SESSION_CREATE_USF", "RT_FLOW_SESSION_CLOSE_USF")
    t, _ = one(close)
    assert t is not None and t.event == NatEvent.DELETE


def test_juniper_with_several_sd_elements_and_escapes() -> None:
    # RFC 5424 §6.3.3: several SD-ELEMENTs (util-linux logger adds timeQuality first),
    # and "]" escaped inside a value
    line = (
        "<13>1 2026-12-02T04:32:49.491013+00:00 vm root - RT_FLOW_SESSION_CLOSE"
        ' [timeQuality tzKnown="1" isSynced="0"][junos@2636.1.1.1.2.25 rule="a\\]b"'
        ' source-address="10.1.2.7" source-port="51000" nat-source-address="203.0.113.5"'
        ' nat-source-port="42000" protocol-id="17"] session closed'
    )
    t, _ = one(line)
    assert t is not None and t.event == NatEvent.DELETE and t.port_start == 42000
    assert t.time_ms == 1796185969491  # 2026-12-02T04:32:49.491Z


def test_juniper_without_source_nat_is_not_a_translation() -> None:
    line = (
        "<14>1 2018-06-26T17:23:06Z r1 RT_FLOW - RT_FLOW_SESSION_CREATE [junos@2636.1.1.1.2.40"
        ' source-address="10.0.0.1" source-port="5000" nat-source-address="10.0.0.1"'
        ' nat-source-port="5000" protocol-id="6"]'
    )
    t, tally = one(line)
    assert t is None and tally.ignored == 1 and not tally.bad


# --------------------------------------------------------------------------- conntrack


def test_conntrack_new_and_destroy() -> None:
    # `conntrack -E -o timestamp` lines; the shape as in weaveworks/scope's test fixture
    # ("Obtained though conntrack -E -p tcp -o id"): original tuple, then the reply tuple
    # whose dst/dport is the translated source.
    new = (
        "[1711468800.123456]    [NEW] tcp      6 120 SYN_SENT src=192.168.1.100"
        " dst=93.184.216.34 sport=45000 dport=443 [UNREPLIED] src=93.184.216.34"
        " dst=203.0.113.7 sport=443 dport=61001"
    )
    t, tally = one(new)
    assert t == NatTranslation(
        time_ms=1711468800123,
        event=NatEvent.CREATE,
        protocol=6,
        private_ip="192.168.1.100",
        private_port=45000,
        public_ip="203.0.113.7",
        port_start=61001,
        port_end=61001,
        source=CGN,
    )
    destroy = (
        "[1711468900.5]  [DESTROY] udp      17 src=10.70.0.9 dst=8.8.4.4 sport=52725"
        " dport=53 packets=1 bytes=86 src=8.8.4.4 dst=198.51.100.3 sport=53 dport=40001"
        " packets=1 bytes=134 mark=512"
    )
    t, _ = one(destroy)
    assert t is not None and t.event == NatEvent.DELETE and t.time_ms == 1711468900500
    assert (t.protocol, t.public_ip, t.port_start) == (17, "198.51.100.3", 40001)
    # not translated (reply dst is the original source): not a NAT event
    plain = (
        "[1711468900.5]  [DESTROY] tcp      6 src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2"
        " src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1"
    )
    t, tally = one(plain)
    assert t is None and tally.ignored == 1


def test_bad_lines_are_counted_not_raised() -> None:
    tally = Tally()
    text = "\n".join(
        [
            "hello world",  # not a NAT line
            "%ASA-6-305011: Built dynamic TCP translation from inside:1.2.3/1 to outside:x/2",
            "<166>Oct 10 2018 12:34:56 h : %ASA-6-305011: Built dynamic TCP translation from"
            " inside:10.0.0.1/99999 to outside:203.0.113.1/5",  # port out of range
            "[1711468800.1] [NEW] tcp 6 120 src=10.0.0.1",  # truncated
            "[NEW] tcp 6 120 src=10.0.0.1 dst=1.1.1.1 sport=1 dport=2 src=1.1.1.1"
            " dst=203.0.113.1 sport=2 dport=3",  # no time in a file
            "<14>1 2018-06-26T17:23:06Z r1 RT_FLOW - RT_FLOW_SESSION_CREATE [junos@x"
            ' source-address="10.0.0.1"]',
            "\x00\xff garbage \udcff",
        ]
    )
    assert list(parse_syslog_text(text, CGN, SH, None, tally)) == []
    assert tally.ignored == 2
    assert tally.bad == {
        "no_time": 2,
        "asa:bad_address": 1,
        "conntrack:malformed": 1,
        "juniper:missing_field": 1,
    }


# --------------------------------------------------------------------------- IPFIX


def _pair() -> tuple[bytes, bytes]:
    t0 = ms(2025, 11, 10, 11, 45)
    templates = message([template_set(256, NAT44_SESSION), template_set(257, PORT_BLOCK)])
    data = message(
        [
            data_set(
                256,
                NAT44_SESSION,
                [
                    session_record(t0, 4, 6, "10.1.2.3", 50000, "203.0.113.5", 40000),
                    session_record(t0 + 60_000, 5, 6, "10.1.2.3", 50000, "203.0.113.5", 40000),
                ],
            ),
            data_set(
                257, PORT_BLOCK, [block_record(t0, 16, "10.1.2.4", "203.0.113.5", 2048, 2303)]
            ),
        ]
    )
    return templates, data


def test_ipfix_nat44_sessions_and_port_blocks() -> None:
    templates, data = _pair()
    decoder = IpfixDecoder()
    tally = Tally()
    assert decoder.decode(templates, CGN, tally) == []
    found = decoder.decode(data, CGN, tally)
    t0 = ms(2025, 11, 10, 11, 45)
    assert [(t.event, t.time_ms, t.private_ip, t.port_start, t.port_end) for t in found] == [
        (NatEvent.CREATE, t0, "10.1.2.3", 40000, 40000),
        (NatEvent.DELETE, t0 + 60_000, "10.1.2.3", 40000, 40000),
        (NatEvent.BLOCK_ALLOC, t0, "10.1.2.4", 2048, 2303),
    ]
    assert found[0].private_port == 50000 and found[2].private_port is None
    assert found[2].protocol == 0 and tally.parsed == 3 and not tally.bad


def test_ipfix_templates_are_per_exporter_and_domain() -> None:
    templates, data = _pair()
    decoder = IpfixDecoder()
    tally = Tally()
    decoder.decode(templates, CGN, tally)
    assert decoder.decode(data, "192.0.2.99", tally) == []  # another exporter: unknown
    other_domain = data[:12] + struct.pack("!I", 7) + data[16:]
    assert decoder.decode(other_domain, CGN, tally) == []
    assert tally.bad["ipfix:no_template"] == 4  # two data sets each
    # a withdrawal (field count 0, RFC 7011 §8.1) forgets the template
    decoder.decode(message([struct.pack("!HHHH", 2, 8, 256, 0)]), CGN, tally)
    assert len(decoder.decode(data, CGN, tally)) == 1  # only the port block remains


def test_ipfix_file_stream_and_bad_messages() -> None:
    templates, data = _pair()
    tally = Tally()
    assert len(list(iter_ipfix_messages(templates + data, tally))) == 2 and not tally.bad
    list(iter_ipfix_messages(templates + data[:-3], tally))
    assert tally.bad["ipfix:bad_stream"] == 1
    decoder = IpfixDecoder()
    bad = Tally()
    assert decoder.decode(b"\x00\x09" + templates[2:], CGN, bad) == []  # NetFlow v9
    assert decoder.decode(templates[:10], CGN, bad) == []
    assert bad.bad == {"ipfix:bad_version": 1, "ipfix:short_message": 1}


def test_ipfix_non_port_events_are_ignored() -> None:
    fields = ((323, 8), (230, 1))
    decoder = IpfixDecoder()
    tally = Tally()
    msg = message([template_set(300, fields), data_set(300, fields, [[0, 3], [0, 13]])])
    assert decoder.decode(msg, CGN, tally) == [] and tally.ignored == 2


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_ipfix_decoder_never_raises_on_bytes(data: bytes) -> None:
    decoder = IpfixDecoder()
    tally = Tally()
    templates, _ = _pair()
    decoder.decode(templates, CGN, tally)
    for t in decoder.decode(data, CGN, tally):
        assert 0 <= t.port_start <= t.port_end <= 65535
    list(iter_ipfix_messages(data, tally))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**40),
            st.sampled_from([4, 5, 16, 17, 3]),
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
            st.integers(0, 65535),
            st.integers(0, 2**32 - 1),
            st.integers(0, 65535),
        ),
        max_size=20,
    ),
    st.integers(0, 40),
)
def test_ipfix_decoder_on_mutated_valid_messages(
    records: list[tuple[int, int, int, int, int, int, int]], cut: int
) -> None:
    """Well-formed messages decode to exactly their records; truncated ones never raise."""
    rows = [[t, e, p, a, sp, b, pp] for t, e, p, a, sp, b, pp in records]
    body = message([template_set(256, NAT44_SESSION), data_set(256, NAT44_SESSION, rows)])
    tally = Tally()
    found = IpfixDecoder().decode(body, CGN, tally)
    assert len(found) == sum(1 for r in records if r[1] in (4, 5))
    assert tally.ignored == sum(1 for r in records if r[1] == 3)
    assert tally.bad.get("ipfix:missing_port_range", 0) == sum(1 for r in records if r[1] > 15)
    truncated = body[: max(0, len(body) - cut)]
    IpfixDecoder().decode(truncated, CGN, Tally())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            "<166>Oct 10 2018 12:34:56 h : %ASA-6-305011: Built dynamic TCP translation from"
            " inside:10.0.0.1/{0} to outside:203.0.113.1/{1}",
            '<14>1 2018-06-26T17:23:06Z r RT_FLOW - RT_FLOW_SESSION_CREATE [j source-address="{0}"'
            ' source-port="{1}" nat-source-address="203.0.113.1" nat-source-port="{0}"'
            ' protocol-id="{1}"]',
            "[1711468800.1] [NEW] tcp 6 120 src={0} dst=1.1.1.1 sport={1} dport=2 src=1.1.1.1"
            " dst=203.0.113.1 sport=2 dport={0}",
        ]
    ),
    st.text(max_size=12),
    st.text(max_size=12),
    st.text(max_size=80),
)
def test_syslog_parser_never_raises(template: str, a: str, b: str, tail: str) -> None:
    """Any text in the fields (Unicode digits, huge numbers, quotes) or after the line is
    parsed, ignored or counted bad; never an exception."""
    tally = Tally()
    line = template.replace("{0}", a).replace("{1}", b) + tail
    found = parse_syslog_line(line, CGN, SH, None, tally)
    assert found is None or 0 <= found.port_start <= 65535
    assert tally.parsed + tally.ignored + tally.bad_total == 1


# --------------------------------------------------------------------------- in force


def _t(time_ms: int, event: NatEvent, priv: str = "10.0.0.1", start: int = 100, end: int = 100):  # type: ignore[no-untyped-def]
    return NatTranslation(time_ms, event, 6, priv, 5, "203.0.113.1", start, end, CGN)


def test_in_force() -> None:
    c, d = NatEvent.CREATE, NatEvent.DELETE
    events = [_t(1000, c), _t(2000, d), _t(3000, c, "10.0.0.2")]
    assert in_force(events, 500) == []
    assert [t.private_ip for t in in_force(events, 1500)] == ["10.0.0.1"]
    assert [t.private_ip for t in in_force(events, 2000)] == ["10.0.0.1"]  # its last moment
    assert in_force(events, 2500) == []
    assert [t.private_ip for t in in_force(events, 9000)] == ["10.0.0.2"]
    # a port block covering the port, released later
    blocks = [
        _t(0, NatEvent.BLOCK_ALLOC, "10.0.0.9", 0, 511),
        _t(5000, NatEvent.BLOCK_RELEASE, "10.0.0.9", 0, 511),
    ]
    assert [t.private_ip for t in in_force(blocks, 4000)] == ["10.0.0.9"]
    assert in_force(blocks, 6000) == []
    # a new create for the same public port replaces the old one (its delete was lost)
    assert [t.private_ip for t in in_force([_t(1, c), _t(2, c, "10.0.0.3")], 3)] == ["10.0.0.3"]
    assert datetime.fromtimestamp(0, UTC).year == 1970
