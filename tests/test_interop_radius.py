"""Protocol rules that real peers hold us to (issue 14 items 1, 4, 5), on our own sockets.

The peers themselves are in tests/test_interop_peers.py; here each rule is pinned down
against a real server (real UDP, real redis-server) or as the pure function it is:
the Message-Authenticator of Accounting-Responses, Status-Server only while the store can
record (RFC 5997 §4.2), attribute type 0, drop-log limits, Event-Timestamp of DAE answers
(RFC 5176 §3.5) and NAS-IPv6-Address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import ipaddress
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from controller.cli.serve import Controller
from controller.config import Config
from controller.services.radius_service import anonymous_person
from controller.storage import keys
from controller.storage.store import StoreHealth
from radius.attrs import Attr, Code
from radius.dae import (
    DaeClient,
    DaeOutcome,
    DaeTarget,
    SessionIdentity,
    disconnect_attributes,
    event_timestamp_fresh,
)
from radius.packet import (
    Request,
    attr,
    attr_int,
    attr_text,
    decode_request,
    encode_reply,
    encode_request,
)
from radius.server import DropLog
from tests.conftest import SECRET
from tests.support.pyrad_client import RadiusClient, accounting_reply_valid
from tests.support.redis_proc import RedisProcess, until

KEY = SECRET.encode()
ACCT = attr_int(Attr.ACCT_STATUS_TYPE, 1) + attr_text(Attr.ACCT_SESSION_ID, "s-1")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def attributes(packet: bytes) -> list[int]:
    out, pos = [], 20
    while pos + 2 <= len(packet):
        out.append(packet[pos])
        pos += max(2, packet[pos + 1])
    return out


def hmac_over(reply: bytes, vector: bytes) -> bytes:
    """RFC 3579 §3.2 HMAC-MD5 of a reply whose Message-Authenticator is first, with
    ``vector`` in the authenticator field (written here, not taken from radius.packet)."""
    zeroed = reply[:4] + vector + reply[20:22] + bytes(16) + reply[38:]
    return hmac.new(KEY, zeroed, "md5").digest()


# ------------------------------------------------------- item 1: Accounting-Response MA


def test_accounting_response_carries_no_message_authenticator() -> None:
    """None in an Accounting-Response to an Accounting-Request (FreeRADIUS 3.2.1 and
    radsecproxy disagree on it, see encode_reply); Access-* and Status-Server replies keep
    it first, over the Request Authenticator."""
    acct = decode_request(encode_request(Code.ACCOUNTING_REQUEST, 1, KEY, ACCT), KEY)
    reply = encode_reply(Code.ACCOUNTING_RESPONSE, acct, KEY)
    assert Attr.MESSAGE_AUTHENTICATOR not in attributes(reply) and len(reply) == 20
    assert hashlib.md5(reply[:4] + acct.authenticator + KEY).digest() == reply[4:20]
    for code, answer in ((Code.STATUS_SERVER, Code.ACCOUNTING_RESPONSE), (1, 2), (12, 2)):
        req = decode_request(encode_request(code, 2, KEY, b""), KEY)
        reply = encode_reply(answer, req, KEY)
        assert reply[20] == Attr.MESSAGE_AUTHENTICATOR
        assert hmac_over(reply, req.authenticator) == reply[22:38]


def test_message_authenticator_when_asked_is_over_the_request_authenticator() -> None:
    """Where one is sent, it is computed as FreeRADIUS 3.2.9 (rad_sign) and radsecproxy
    (buf2radmsg) verify it: Request Authenticator in the header, not 16 zero octets."""
    acct = decode_request(encode_request(Code.ACCOUNTING_REQUEST, 3, KEY, ACCT), KEY)
    reply = encode_reply(Code.ACCOUNTING_RESPONSE, acct, KEY, message_authenticator=True)
    assert reply[20] == Attr.MESSAGE_AUTHENTICATOR
    assert hmac_over(reply, acct.authenticator) == reply[22:38]
    assert hmac_over(reply, bytes(16)) != reply[22:38]
    assert accounting_reply_valid(reply, acct.authenticator, KEY)


def signed_response(request: Request, rule: str, *, key: bytes = KEY) -> bytes:
    """An Accounting-Response signed as an old ("zero") or a current ("request") peer."""
    head = bytes((Code.ACCOUNTING_RESPONSE, request.identifier, 0, 38))
    vector = bytes(16) if rule == "zero" else request.authenticator
    mac = hmac.new(key, head + vector + bytes((80, 18)) + bytes(16), "md5").digest()
    body = bytes((80, 18)) + mac
    return head + hashlib.md5(head + request.authenticator + body + key).digest() + body


def test_client_takes_accounting_answers_of_old_and_new_peers() -> None:
    acct = decode_request(encode_request(Code.ACCOUNTING_REQUEST, 4, KEY, ACCT), KEY)
    for rule in ("zero", "request"):
        assert accounting_reply_valid(signed_response(acct, rule), acct.authenticator, KEY)
    forged = signed_response(acct, "request", key=b"other")
    assert not accounting_reply_valid(forged, acct.authenticator, KEY)
    good = signed_response(acct, "request")
    flipped = good[:30] + bytes((good[30] ^ 1,)) + good[31:]
    head = flipped[:4] + acct.authenticator
    resigned = flipped[:4] + hashlib.md5(head + flipped[20:] + KEY).digest() + flipped[20:]
    assert not accounting_reply_valid(resigned, acct.authenticator, KEY)  # bad MA
    assert not accounting_reply_valid(good, bytes(16), KEY)  # not this request's answer


class CurrentPeer(asyncio.DatagramProtocol):
    """A home server answering accounting as FreeRADIUS 3.2.9 / radsecproxy do."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.transport.sendto(signed_response(decode_request(data, KEY), "request"), addr)


async def test_test_client_accepts_a_current_peers_accounting_answer() -> None:
    """pyrad alone checks the zero-octet rule and discarded these answers."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(CurrentPeer, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        async with RadiusClient(("127.0.0.1", port), KEY) as client:
            request = client.acct_request(Acct_Status_Type="Start", Acct_Session_Id="c-1")
            reply = await client.request(request, timeout=1.0)
            assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
            assert client.discarded == 0
    finally:
        transport.close()


# ------------------------------------------------- item 4: Status-Server and the store


def test_store_health_follows_the_latest_outcome() -> None:
    health = StoreHealth()
    assert health.can_record()
    assert health.report(False, 10.0) and not health.can_record() and health.since == 10.0
    assert not health.report(False, 11.0) and health.since == 10.0
    assert health.report(True, 12.0) and health.can_record()


@pytest.fixture
async def quick(config: Config) -> AsyncIterator[Controller]:
    """A controller whose Redis exchanges give up after 0.3 s."""
    ctl = Controller(
        dataclasses.replace(config, redis=dataclasses.replace(config.redis, timeout=0.3))
    )
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.stop()


async def status(port: int, *, accounting: bool) -> Any:
    async with RadiusClient(("127.0.0.1", port), KEY) as client:
        return await client.request(client.status_server(accounting=accounting), timeout=0.3)


async def test_status_server_unanswered_while_redis_is_frozen(
    quick: Controller, redis_proc: RedisProcess
) -> None:
    """RFC 5997 §4.2 on both ports: no answer while Redis cannot record (found by the
    store's own probe: no request needed), answers again as soon as it can."""
    ports = {"auth": (quick.auth_port, False), "acct": (quick.acct_port, True)}
    for port, accounting in ports.values():
        assert (await status(port, accounting=accounting)) is not None
    store = quick.store
    assert store is not None and redis_proc.proc is not None
    before = {r: metric("citywifi_radius_dropped_total", port=r, reason="store_unavailable")
              for r in ports}  # fmt: skip
    redis_proc.proc.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: not store.health.can_record(), 5, "the probe finds Redis frozen")
        for role, (port, accounting) in ports.items():
            assert (await status(port, accounting=accounting)) is None, role
            dropped = metric("citywifi_radius_dropped_total", port=role, reason="store_unavailable")
            assert dropped > before[role]
    finally:
        redis_proc.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    for port, accounting in ports.values():
        await until(lambda p=port, a=accounting: status(p, accounting=a), 5, "answered again")
    assert time.monotonic() - resumed < 3


async def test_status_server_unanswered_while_redis_is_gone(
    quick: Controller, redis_proc: RedisProcess
) -> None:
    """Redis shut down (connection refused) counts as down too, and back up as up."""
    assert quick.store is not None
    redis_proc.stop()
    try:
        await until(lambda: not quick.store.health.can_record(), 5, "the probe finds Redis gone")
        assert (await status(quick.acct_port, accounting=True)) is None
    finally:
        redis_proc.start()
    await until(lambda: status(quick.acct_port, accounting=True), 10, "answered again")


# ------------------------------------------------------ item 5: smaller protocol items


async def send_raw(port: int, datagrams: list[bytes], handled: Callable[[], bool]) -> list[bytes]:
    """Send datagrams from one socket; once ``handled`` says the server is done with
    them (a drop counter moved: no answer can follow), return what came back."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            got.append(data)

    transport, _ = await loop.create_datagram_endpoint(
        Sink, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port)
    )
    try:
        for data in datagrams:
            transport.sendto(data)
        await until(handled, 5, "the datagrams handled")
    finally:
        transport.close()
    return got


async def test_attribute_type_0_is_dropped_and_counted(controller: Controller) -> None:
    """As FreeRADIUS: a packet with attribute 0 is not decoded (no answer)."""
    bad = encode_request(Code.ACCOUNTING_REQUEST, 7, KEY, ACCT + attr(0, b"x"))
    before = metric("citywifi_radius_dropped_total", port="acct", reason="invalid_attribute")

    def counted() -> bool:
        now = metric("citywifi_radius_dropped_total", port="acct", reason="invalid_attribute")
        return now == before + 1

    assert await send_raw(controller.acct_port, [bad], counted) == []


def test_drop_log_one_line_per_source_per_interval() -> None:
    log = DropLog(interval=60.0, max_sources=3)
    first = log.admit("192.0.2.1", 0.0)
    assert first is not None and first.suppressed == 0
    assert all(log.admit("192.0.2.1", t) is None for t in (1.0, 2.0, 59.0))
    again = log.admit("192.0.2.1", 60.0)
    assert again is not None and (again.source, again.suppressed) == ("192.0.2.1", 3)
    assert log.admit("192.0.2.2", 61.0) is not None and log.admit("192.0.2.3", 61.0)
    # the table is full: new sources share one line, "*"
    overflow = log.admit("192.0.2.4", 62.0)
    assert overflow is not None and overflow.source == "*"
    assert log.admit("192.0.2.5", 63.0) is None
    # an interval later the expired entries are pruned and sources have their own again
    fresh = log.admit("192.0.2.6", 125.0)
    assert fresh is not None and fresh.source == "192.0.2.6"


async def test_a_flood_of_bad_packets_logs_one_line(controller: Controller) -> None:
    """Issue 13 item 14: 200 datagrams with a bad authenticator from one NAS give one log
    line; the counter moves by 200."""
    good = encode_request(Code.ACCOUNTING_REQUEST, 9, KEY, ACCT)
    bad = good[:4] + bytes(16) + good[20:]
    reason = "bad_request_authenticator"
    before = metric("citywifi_radius_dropped_total", port="acct", reason=reason)
    with structlog.testing.capture_logs() as logs:
        got = await send_raw(
            controller.acct_port,
            [bad] * 200,
            lambda: (
                metric("citywifi_radius_dropped_total", port="acct", reason=reason) == before + 200
            ),
        )
    assert got == []
    lines = [e for e in logs if e["event"] == "radius.dropped"]
    assert len(lines) == 1, lines  # each endpoint has its own DropLog: a fresh minute
    assert lines[0]["reason"] == reason and lines[0]["source"] == "127.0.0.1"
    assert lines[0]["suppressed"] == 0  # the first line; the next would say 199


def test_event_timestamp_window() -> None:
    now = 1_800_000_000.0
    stamp: Callable[[float], bytes] = lambda t: int(t).to_bytes(4, "big")  # noqa: E731
    assert event_timestamp_fresh(None, now, 300)
    assert event_timestamp_fresh(stamp(now - 300), now, 300)
    assert event_timestamp_fresh(stamp(now + 300), now, 300)
    assert not event_timestamp_fresh(stamp(now - 301), now, 300)
    assert not event_timestamp_fresh(stamp(now + 301), now, 300)
    assert not event_timestamp_fresh(b"\x00\x01", now, 300)
    assert event_timestamp_fresh(stamp(0), now, 0)  # 0: not checked


class StampedNas(asyncio.DatagramProtocol):
    """A NAS's DAE port answering Disconnect-ACK with a given Event-Timestamp."""

    def __init__(self, stamp: int) -> None:
        self.stamp = stamp
        self.seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.seen += 1
        request = decode_request(data, KEY)
        stamped = attr_int(Attr.EVENT_TIMESTAMP, self.stamp)
        self.transport.sendto(encode_reply(Code.DISCONNECT_ACK, request, KEY, stamped), addr)


@pytest.mark.parametrize(
    ("offset", "window", "outcome"),
    [(0, 300, DaeOutcome.ACK), (-3600, 300, DaeOutcome.TIMEOUT), (-3600, 0, DaeOutcome.ACK)],
)
async def test_dae_answer_outside_the_window_is_ignored(
    offset: int, window: float, outcome: DaeOutcome
) -> None:
    now = 1_800_000_000.0
    loop = asyncio.get_running_loop()
    nas = StampedNas(int(now) + offset)
    transport, _ = await loop.create_datagram_endpoint(lambda: nas, local_addr=("127.0.0.1", 0))
    client = DaeClient(bind="127.0.0.1", timeout=0.05, retries=1, timestamp_window=window,
                       clock=lambda: now)  # fmt: skip
    before = metric("citywifi_dae_bad_replies_total", reason="stale_event_timestamp")
    try:
        target = DaeTarget("127.0.0.1", transport.get_extra_info("sockname")[1], KEY)
        result = await client.disconnect(
            target, SessionIdentity(acct_session_id="s-1"), event_timestamp=int(now)
        )
    finally:
        await client.close()
        transport.close()
    assert result.outcome is outcome
    stale = metric("citywifi_dae_bad_replies_total", reason="stale_event_timestamp") - before
    assert stale == (nas.seen if outcome is DaeOutcome.TIMEOUT else 0)


def test_disconnect_names_the_nas_by_every_address_it_reported() -> None:
    both = SessionIdentity("s-1", nas_ip_address="192.0.2.7", nas_ipv6_address="2001:db8::7")
    req = decode_request(
        encode_request(Code.DISCONNECT_REQUEST, 1, KEY, disconnect_attributes(both, "generic", 1)),
        KEY,
    )
    assert req.get(Attr.NAS_IP_ADDRESS) == ipaddress.ip_address("192.0.2.7").packed
    assert req.get(Attr.NAS_IPV6_ADDRESS) == ipaddress.ip_address("2001:db8::7").packed
    odd = SessionIdentity("s-1", nas_ip_address="2001:db8::7", nas_ipv6_address="192.0.2.7")
    attrs = disconnect_attributes(odd, "generic", 1)
    assert bytes((Attr.NAS_IP_ADDRESS, 6)) not in attrs
    assert bytes((Attr.NAS_IPV6_ADDRESS, 18)) not in attrs


async def test_accounting_records_nas_ipv6_address(controller: Controller) -> None:
    async with RadiusClient(("127.0.0.1", controller.acct_port), KEY) as client:
        request = client.acct_request(
            Acct_Status_Type="Start", Acct_Session_Id="v6-rec", User_Name="aa-bb-cc-00-00-66"
        )
        request[int(Attr.NAS_IPV6_ADDRESS)] = [ipaddress.ip_address("2001:db8::1").packed]
        assert (await client.request(request, timeout=2.0)) is not None
    assert controller.store is not None
    pid = anonymous_person("nas-local", "aa-bb-cc-00-00-66")
    record = await controller.store.session(pid, keys.session_id("nas-local", "v6-rec"))
    assert record["nas_ipv6"] == "2001:db8::1"
