"""RFC 5176 client (radius.dae) against a real UDP responder on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pyrad.packet import CoAPacket

from radius.attrs import Attr, Code, ErrorCause
from radius.dae import (
    DaeClient,
    DaeOutcome,
    DaeTarget,
    SessionIdentity,
    disconnect_attributes,
    interpret,
    retry_schedule,
)
from radius.packet import Request, attr_int, decode_request, encode_reply
from tests.support.pyrad_client import load_dictionary

SECRET = b"dae-secret"
IDENT = SessionIdentity(
    acct_session_id="5f3a0001",
    user_name="u1",
    calling_station_id="aa:bb:cc:dd:ee:01",
    nas_ip_address="127.0.0.1",
    nas_identifier="ac-1",
    framed_ip_address="10.1.0.2",
)
Answer = Callable[[Request], bytes | None]  # request -> encoded reply (None: stay silent)


class Responder(asyncio.DatagramProtocol):
    """A NAS's DAE port: verifies each request with our codec, answers with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.datagrams: list[bytes] = []
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.datagrams.append(data)
        request = decode_request(data, SECRET)  # Request Authenticator + MA verified
        self.requests.append(request)
        reply = self.answer(request)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


def ack(request: Request) -> bytes:
    code = Code.DISCONNECT_ACK if request.code == Code.DISCONNECT_REQUEST else Code.COA_ACK
    return encode_reply(code, request, SECRET)


def nak(cause: int | None) -> Answer:
    def answer(request: Request) -> bytes:
        attrs = attr_int(Attr.ERROR_CAUSE, cause) if cause is not None else b""
        return encode_reply(Code.DISCONNECT_NAK, request, SECRET, attrs)

    return answer


@pytest.fixture
async def dae() -> AsyncIterator[DaeClient]:
    client = DaeClient(bind="127.0.0.1", timeout=0.05, retries=2)
    yield client
    await client.close()


async def responder(answer: Answer) -> Responder:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(
        lambda: Responder(answer), local_addr=("127.0.0.1", 0)
    )
    return proto


def target(r: Responder, vendor: str = "generic") -> DaeTarget:
    return DaeTarget("127.0.0.1", r.port, SECRET, vendor)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_disconnect_ack_with_every_identifying_attribute(dae: DaeClient) -> None:
    r = await responder(ack)
    before = metric("citywifi_dae_results_total", kind="disconnect", result="acked")
    result = await dae.disconnect(target(r), IDENT, event_timestamp=1_800_000_000)
    assert result.outcome is DaeOutcome.ACK and result.attempts == 1
    req = r.requests[0]
    assert req.code == Code.DISCONNECT_REQUEST
    assert req.raw[20] == Attr.MESSAGE_AUTHENTICATOR  # first (RFC 5176 §3.4, BlastRADIUS)
    assert req.text(Attr.ACCT_SESSION_ID) == "5f3a0001"
    assert req.text(Attr.USER_NAME) == "u1"
    assert req.text(Attr.CALLING_STATION_ID) == "aa:bb:cc:dd:ee:01"
    assert req.get(Attr.NAS_IP_ADDRESS) == bytes([127, 0, 0, 1])
    assert req.text(Attr.NAS_IDENTIFIER) == "ac-1"
    assert req.integer(Attr.EVENT_TIMESTAMP) == 1_800_000_000
    assert req.get(Attr.FRAMED_IP_ADDRESS) is None  # generic: not needed
    assert metric("citywifi_dae_results_total", kind="disconnect", result="acked") == before + 1


async def test_pyrad_verifies_our_disconnect_request(dae: DaeClient) -> None:
    """An independent implementation accepts the request (authenticator and MA)."""
    seen: list[CoAPacket] = []

    def answer(request: Request) -> bytes:
        pkt = CoAPacket(packet=request.raw, secret=SECRET, dict=load_dictionary())
        assert pkt.VerifyCoARequest() and pkt.verify_message_authenticator()
        seen.append(pkt)
        return ack(request)

    r = await responder(answer)
    assert (await dae.disconnect(target(r), IDENT, event_timestamp=1)).outcome is DaeOutcome.ACK
    assert seen[0]["Acct-Session-Id"] == ["5f3a0001"]


async def test_nak_503_means_the_session_is_gone(dae: DaeClient) -> None:
    r = await responder(nak(ErrorCause.SESSION_CONTEXT_NOT_FOUND))
    before = metric("citywifi_dae_naks_total", kind="disconnect", error_cause="503")
    result = await dae.disconnect(target(r), IDENT, event_timestamp=1)
    assert result.outcome is DaeOutcome.NAK and result.session_gone
    assert result.error_cause == 503
    assert metric("citywifi_dae_naks_total", kind="disconnect", error_cause="503") == before + 1


async def test_other_naks_are_not_a_gone_session(dae: DaeClient) -> None:
    r = await responder(nak(ErrorCause.SESSION_CONTEXT_NOT_REMOVABLE))
    result = await dae.disconnect(target(r), IDENT, event_timestamp=1)
    assert result.outcome is DaeOutcome.NAK and not result.session_gone


async def test_chilli_nak_without_error_cause_means_gone_generic_not(dae: DaeClient) -> None:
    r = await responder(nak(None))
    assert (await dae.disconnect(target(r, "chilli"), IDENT, event_timestamp=1)).session_gone
    assert not (await dae.disconnect(target(r), IDENT, event_timestamp=1)).session_gone


async def test_no_answer_retransmits_the_same_datagram_with_backoff(dae: DaeClient) -> None:
    r = await responder(lambda request: None)
    before = metric("citywifi_dae_results_total", kind="disconnect", result="failed")
    t0 = time.monotonic()
    result = await dae.disconnect(target(r), IDENT, event_timestamp=1)
    elapsed = time.monotonic() - t0
    assert result.outcome is DaeOutcome.TIMEOUT and result.attempts == 3
    assert len(r.datagrams) == 3 and len(set(r.datagrams)) == 1  # identical (RFC 5080)
    assert sum(retry_schedule(0.05, 2)) <= elapsed < 2.0
    assert metric("citywifi_dae_results_total", kind="disconnect", result="failed") == before + 1


async def test_a_forged_answer_is_ignored_and_a_good_one_still_counts(dae: DaeClient) -> None:
    answers = iter(["forged", "good"])

    def answer(request: Request) -> bytes:
        if next(answers) == "forged":  # signed with another secret: bad Response Authenticator
            return encode_reply(Code.DISCONNECT_ACK, request, b"not-the-secret")
        return ack(request)

    r = await responder(answer)
    before = metric("citywifi_dae_bad_replies_total", reason="bad_response_authenticator")
    result = await dae.disconnect(target(r), IDENT, event_timestamp=1)
    assert result.outcome is DaeOutcome.ACK and result.attempts == 2
    assert (
        metric("citywifi_dae_bad_replies_total", reason="bad_response_authenticator") == before + 1
    )


async def test_only_forged_answers_end_in_failure(dae: DaeClient) -> None:
    r = await responder(lambda req: encode_reply(Code.DISCONNECT_ACK, req, b"wrong"))
    result = await dae.disconnect(target(r), IDENT, event_timestamp=1)
    assert result.outcome is DaeOutcome.TIMEOUT and len(r.datagrams) == 3


async def test_a_nas_that_is_gone_is_a_timeout(dae: DaeClient) -> None:
    r = await responder(ack)
    port = r.port
    assert r.transport is not None
    r.transport.close()
    result = await dae.disconnect(DaeTarget("127.0.0.1", port, SECRET), IDENT, event_timestamp=1)
    assert result.outcome is DaeOutcome.TIMEOUT


async def test_coa_carries_the_new_session_timeout(dae: DaeClient) -> None:
    r = await responder(ack)
    result = await dae.coa(target(r), IDENT, event_timestamp=1, session_timeout=42)
    assert result.outcome is DaeOutcome.ACK
    assert r.requests[0].code == Code.COA_REQUEST
    assert r.requests[0].integer(Attr.SESSION_TIMEOUT) == 42


async def test_many_requests_to_one_nas_get_distinct_identifiers(dae: DaeClient) -> None:
    r = await responder(ack)
    results = await asyncio.gather(
        *(dae.disconnect(target(r), IDENT, event_timestamp=i) for i in range(300))
    )
    assert all(x.outcome is DaeOutcome.ACK for x in results)
    assert len(r.requests) == 300


def test_vendor_rules() -> None:
    mikrotik = disconnect_attributes(IDENT, "mikrotik", 1)
    assert bytes([Attr.FRAMED_IP_ADDRESS, 6, 10, 1, 0, 2]) in mikrotik
    with pytest.raises(ValueError, match="User-Name"):
        disconnect_attributes(SessionIdentity("x"), "chilli", 1)
    assert disconnect_attributes(SessionIdentity("x"), "generic", 1)
    assert interpret(40, 41, None, "generic").outcome is DaeOutcome.ACK
    assert retry_schedule(1.0, 4) == (1.0, 2.0, 4.0, 4.0, 4.0)
