"""The address record's attributes, decoded from real packets by both codecs (the
compiled one when built, and ``radius.packet``): Framed-IPv6-Prefix (RFC 3162 §2.3),
Delegated-IPv6-Prefix (RFC 4818 §3), Framed-IPv6-Address (RFC 6911), the RFC 8045
IP-Port-Range and Huawei's NAT VSAs; malformed values are "" / None, never an error.
And the IPFIX decoder's template timeout (RFC 7011 §8.4) on a simulated clock."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import ConfigError, load_config
from controller.domain.natlog import IpfixDecoder, Tally
from controller.services.radius_service import nat_block
from radius import events, fastpath, packet
from radius.addresses import PortBlock, ipv6_prefix, port_block
from radius.attrs import Attr
from tests.conftest import write_config
from tests.support.ipfix_kit import NAT44_SESSION, data_set, message, session_record, template_set
from tests.test_address_who import port_range_value, prefix_value

SECRET = b"s3cret-for-tests"

CODECS: list[Callable[..., packet.Request]] = [packet.decode_request]
if fastpath.available():
    CODECS.append(fastpath.load().decode_request)


def accounting(attrs: bytes) -> bytes:
    body = packet.attr_int(Attr.ACCT_STATUS_TYPE, 1) + packet.attr(Attr.ACCT_SESSION_ID, b"s1")
    return packet.encode_request(4, 7, SECRET, body + attrs, message_authenticator=False)


@pytest.mark.parametrize("decode", CODECS)
def test_prefixes_address_and_port_block_from_a_packet(
    decode: Callable[..., packet.Request],
) -> None:
    raw = accounting(
        packet.attr(97, prefix_value("2001:db8:1:2::/64"))
        + packet.attr(123, prefix_value("2001:db8:aa00::/56"))
        + packet.attr(168, socket.inet_pton(socket.AF_INET6, "2001:db8:1:2::5"))
        + packet.attr(241, port_range_value("203.0.113.9", 1024, 2047))
    )
    event = events.accounting_request(decode(raw, SECRET), "nas", events.Source("", 0))
    assert event.framed_ipv6_prefix == "2001:db8:1:2::/64"
    assert event.delegated_ipv6_prefix == "2001:db8:aa00::/56"
    assert event.framed_ipv6_address == "2001:db8:1:2::5"
    assert event.port_block == PortBlock("203.0.113.9", 1024, 2047)
    assert event.port_block.ports == "1024-2047"


@given(st.binary(min_size=4, max_size=4), st.binary(min_size=0, max_size=8))
def test_ipv4_attributes_are_dotted_quads_or_empty(address: bytes, other: bytes) -> None:
    """NAS-IP-Address and Framed-IP-Address (RFC 2865 §5.4, §5.8): four octets as the
    dotted quad ``ipaddress`` writes; any other length (malformed) ""."""
    raw = accounting(
        packet.attr(Attr.NAS_IP_ADDRESS, address)
        + packet.attr(Attr.FRAMED_IP_ADDRESS, other or b"x")
    )
    for decode in CODECS:
        event = events.accounting_request(decode(raw, SECRET), "nas", events.Source("", 0))
        assert event.nas_ip_address == str(ipaddress.IPv4Address(address))
        want = str(ipaddress.IPv4Address(other)) if len(other) == 4 else ""
        assert event.framed_ip_address == want


@pytest.mark.parametrize("decode", CODECS)
def test_huawei_nat_vsas(decode: Callable[..., packet.Request]) -> None:
    raw = accounting(
        packet.vsa(2011, 161, socket.inet_aton("203.0.113.5"))
        + packet.vsa(2011, 162, struct.pack("!I", 40000))
        + packet.vsa(2011, 163, struct.pack("!I", 40255))
    )
    event = events.accounting_request(decode(raw, SECRET), "nas", events.Source("", 0))
    assert event.port_block == PortBlock("203.0.113.5", 40000, 40255)
    assert event.framed_ipv6_prefix == "" and event.delegated_ipv6_prefix == ""


def test_h3c_and_nokia_port_blocks() -> None:
    h3c = {
        (25506, 32): [socket.inet_aton("198.51.100.7")],
        (25506, 33): [struct.pack("!I", 5000)],
        (25506, 34): [struct.pack("!I", 5999)],
    }
    assert port_block({}, h3c) == PortBlock("198.51.100.7", 5000, 5999)
    nokia = {(6527, 121): [b"192.0.2.1 2000-2999 router base"]}
    assert port_block({}, nokia) == PortBlock("192.0.2.1", 2000, 2999)
    for bad in (b"192.0.2.1", b"nope 1-2 router base", b"192.0.2.1 2-1", b"192.0.2.1 1-700000"):
        assert port_block({}, {(6527, 121): [bad]}) is None, bad


def test_malformed_values_are_empty() -> None:
    assert ipv6_prefix(b"") == "" and ipv6_prefix(b"\x00") == ""
    assert ipv6_prefix(b"\x00\x81" + bytes(16)) == ""  # length 129
    assert ipv6_prefix(b"\x00\x40" + bytes(4)) == ""  # /64 needs 8 octets
    assert ipv6_prefix(b"\x00\x40" + bytes(17)) == ""  # too long
    assert ipv6_prefix(b"\x00\x00") == "::/0"
    # host bits set: the network it names (RFC 3162 says they are zero)
    assert ipv6_prefix(b"\x00\x20" + socket.inet_pton(socket.AF_INET6, "2001:db8::1")) == (
        "2001:db8::/32"
    )
    hw = {(2011, 161): [socket.inet_aton("203.0.113.5")], (2011, 162): [struct.pack("!I", 9)]}
    assert port_block({}, hw) is None  # no end port
    hw[(2011, 163)] = [struct.pack("!I", 8)]
    assert port_block({}, hw) is None  # end before start
    hw[(2011, 163)] = [struct.pack("!I", 70000)]
    assert port_block({}, hw) is None  # beyond 65535
    release = bytearray(port_range_value("203.0.113.9", 1, 2))
    release[1 + 2 + 3] = 2  # IP-Port-Alloc = Deallocation
    assert port_block({241: [bytes(release)]}, {}) is None
    assert port_block({241: [b"\x06\x03\x06\x00"]}, {}) is None  # a TLV running off the end
    assert port_block({241: [b"\x05"]}, {}) is None  # another extended type


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_decoders_never_raise(prefix: bytes, extended: bytes) -> None:
    assert isinstance(ipv6_prefix(prefix), str)
    found = port_block({241: [extended]}, {(2011, 161): [prefix[:4]], (2011, 162): [extended[:4]]})
    assert found is None or 0 <= found.start <= found.end <= 65535


def test_ipfix_templates_expire_without_refresh() -> None:
    """RFC 7011 §8.4: a UDP template not refreshed within the timeout is gone; its data
    set is counted and dropped; a resend brings it back; a file (no clock) keeps it."""
    exporter = "192.0.2.1"
    template = message([template_set(256, NAT44_SESSION)])
    record = session_record(1_762_743_600_000, 4, 6, "10.1.2.3", 50000, "203.0.113.5", 40000)
    data = message([data_set(256, NAT44_SESSION, [record])])
    decoder = IpfixDecoder(template_timeout=60)
    tally = Tally()
    decoder.decode(template, exporter, tally, now=1000.0)
    assert len(decoder.decode(data, exporter, tally, now=1060.0)) == 1  # at the limit
    decoder.decode(template, exporter, tally, now=1100.0)  # refreshed
    assert len(decoder.decode(data, exporter, tally, now=1150.0)) == 1
    assert decoder.decode(data, exporter, tally, now=1161.0) == []
    assert tally.bad == {"ipfix:template_expired": 1}
    assert decoder.decode(data, exporter, tally, now=1162.0) == []
    assert tally.bad["ipfix:no_template"] == 1
    decoder.decode(template, exporter, tally, now=2000.0)
    assert len(decoder.decode(data, exporter, tally, now=2001.0)) == 1
    # full: templates past their time make room for new ones
    small = IpfixDecoder(max_templates=1, template_timeout=60)
    small.decode(template, exporter, Tally(), now=0.0)
    other = message([template_set(257, NAT44_SESSION)])
    small.decode(other, exporter, full := Tally(), now=30.0)
    assert full.bad == {"ipfix:too_many_templates": 1}
    small.decode(other, exporter, Tally(), now=100.0)
    assert set(small.templates) == {(exporter, 1, 257)}
    # without a clock (a file): never expire
    keeps = IpfixDecoder(template_timeout=60)
    keeps.decode(template, exporter, Tally())
    assert len(keeps.decode(data, exporter, Tally())) == 1


def test_a_client_names_its_own_port_block_attributes(tmp_path: Path) -> None:
    """``[[clients]] port_block_vsa``: a NAS whose vendor is not read anyway names the
    vendor attributes of its port block; another client's packets are read as usual."""
    text = write_config(tmp_path, "redis://127.0.0.1:1/0").read_text()
    own = 'id = "nas-local"\n'
    assert own in text
    text = text.replace(
        own,
        own + "port_block_vsa = { vendor = 9, address = 200, first_port = 201, last_port = 202 }\n",
    )
    (tmp_path / "citywifi.toml").write_text(text)
    config = load_config(tmp_path / "citywifi.toml")
    nas = next(c for c in config.clients if c.id == "nas-local")
    assert nas.port_block_vsa == (9, 200, 201, 202)
    raw = accounting(
        packet.vsa(9, 200, socket.inet_aton("198.51.100.9"))
        + packet.vsa(9, 201, struct.pack("!I", 3000))
        + packet.vsa(9, 202, struct.pack("!I", 3063))
    )
    event = events.accounting_request(
        packet.decode_request(raw, SECRET), "nas-local", events.Source("", 0)
    )
    assert event.port_block is None  # vendor 9 is nobody's default
    assert nat_block(nas, event) == PortBlock("198.51.100.9", 3000, 3063)
    other = dataclasses.replace(nas, port_block_vsa=None)
    assert nat_block(other, event) is None
    bad = text.replace("first_port = 201", "first_port = 300")
    (tmp_path / "citywifi.toml").write_text(bad)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "citywifi.toml")
    assert "port_block_vsa.first_port" in str(caught.value.problems[0])


def test_check_config_warns_of_a_listener_without_exporters(tmp_path: Path) -> None:
    path = write_config(tmp_path, "redis://127.0.0.1:1/0")
    path.write_text(path.read_text() + "\n[natlog]\nlisten = true\n")
    config = load_config(path)
    assert [str(w) for w in config.warnings if "natlog.listen" in str(w)] != []
    assert "drops every datagram" in " ".join(str(w) for w in config.warnings)
