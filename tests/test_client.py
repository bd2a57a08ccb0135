"""tests.support.pyrad_client (pyrad-based) against a throwaway responder built on radius.packet."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from radius.attrs import VENDOR_WISPR, Attr, Code, ErrorCause
from radius.packet import (
    Request,
    attr_int,
    attr_text,
    chap_challenge,
    chap_matches,
    decode_reply,
    decode_request,
    decrypt_user_password,
    encode_reply,
    encode_request,
    vsa,
)
from tests.support.pyrad_client import RadiusClient, set_chap

SECRET = b"client-test-secret"
PASSWORD = b"right"


class Responder(asyncio.DatagramProtocol):
    """Answers like a tiny RADIUS server; knobs make it drop, forge or leave out the MA."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[bytes] = []
        self.drop = 0
        self.silent = False
        self.forge_first = False
        self.without_message_authenticator = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append(data)
        if self.silent:
            return
        if self.drop > 0:
            self.drop -= 1
            return
        assert self.transport is not None
        req = decode_request(data, SECRET, require_message_authenticator=False)
        code, attrs = self.answer(req)
        if self.forge_first:
            self.transport.sendto(encode_reply(code, req, b"not the secret", attrs), addr)
        if self.without_message_authenticator:
            head = struct.pack(">BBH", code, req.identifier, 20 + len(attrs))
            digest = hashlib.md5(head + req.authenticator + attrs + SECRET).digest()
            self.transport.sendto(head + digest + attrs, addr)
            return
        self.transport.sendto(encode_reply(code, req, SECRET, attrs), addr)

    @staticmethod
    def answer(req: Request) -> tuple[int, bytes]:
        if req.code == Code.ACCESS_REQUEST:
            hidden = req.get(Attr.USER_PASSWORD)
            chap = req.get(Attr.CHAP_PASSWORD)
            if hidden is not None:
                ok = decrypt_user_password(hidden, SECRET, req.authenticator) == PASSWORD
            else:
                ok = chap is not None and chap_matches(chap, chap_challenge(req), PASSWORD)
            if ok:
                return Code.ACCESS_ACCEPT, attr_int(Attr.SESSION_TIMEOUT, 3600) + vsa(
                    VENDOR_WISPR, 8, (1_000_000).to_bytes(4, "big")
                )
            return Code.ACCESS_REJECT, attr_text(Attr.REPLY_MESSAGE, "wrong password")
        if req.code == Code.ACCOUNTING_REQUEST:
            return Code.ACCOUNTING_RESPONSE, b""
        if req.code == Code.STATUS_SERVER:
            return Code.ACCESS_ACCEPT, b""
        if req.code == Code.DISCONNECT_REQUEST:
            return Code.DISCONNECT_NAK, attr_int(
                Attr.ERROR_CAUSE, ErrorCause.SESSION_CONTEXT_NOT_FOUND
            )
        return Code.COA_ACK, b""


@pytest.fixture
async def responder() -> AsyncIterator[tuple[Responder, tuple[str, int]]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        Responder, local_addr=("127.0.0.1", 0)
    )
    address = transport.get_extra_info("sockname")[:2]
    yield protocol, address
    transport.close()


@pytest.fixture
async def client(
    responder: tuple[Responder, tuple[str, int]],
) -> AsyncIterator[RadiusClient]:
    async with RadiusClient(responder[1], SECRET) as c:
        yield c


async def test_pap_accept_and_reject(client: RadiusClient) -> None:
    good = client.auth_request(User_Name="13800138000", NAS_Identifier="ap-1", password="right")
    reply = await client.request(good)
    assert reply is not None
    assert reply.code == Code.ACCESS_ACCEPT
    assert reply["Session-Timeout"] == [3600]
    assert reply["WISPr-Bandwidth-Max-Down"] == [1_000_000]
    bad = client.auth_request(User_Name="13800138000", password="wrong")
    reply = await client.request(bad)
    assert reply is not None
    assert reply.code == Code.ACCESS_REJECT
    assert reply["Reply-Message"] == ["wrong password"]


async def test_chap(client: RadiusClient) -> None:
    for challenge in (None, b"\x01" * 16):
        packet = client.auth_request(User_Name="u")
        set_chap(packet, "right", challenge=challenge)
        reply = await client.request(packet)
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT
    packet = client.auth_request(User_Name="u")
    set_chap(packet, "nope", challenge=b"\x02" * 16)
    reply = await client.request(packet)
    assert reply is not None and reply.code == Code.ACCESS_REJECT


async def test_accounting_status_and_dae(client: RadiusClient) -> None:
    for with_ma in (True, False):
        acct = client.acct_request(
            add_message_authenticator=with_ma,
            Acct_Status_Type="Start",
            Acct_Session_Id="s-1",
            User_Name="u",
        )
        reply = await client.request(acct)
        assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    for accounting in (False, True):
        reply = await client.request(client.status_server(accounting=accounting))
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT
    dm = client.dae_request(Acct_Session_Id="s-1")
    reply = await client.request(dm)
    assert reply is not None and reply.code == Code.DISCONNECT_NAK
    assert reply["Error-Cause"] == ["Session-Context-Not-Found"]
    coa = client.dae_request(code=Code.COA_REQUEST, Acct_Session_Id="s-1")
    reply = await client.request(coa)
    assert reply is not None and reply.code == Code.COA_ACK


async def test_timeout_returns_none(
    client: RadiusClient, responder: tuple[Responder, tuple[str, int]]
) -> None:
    protocol = responder[0]
    protocol.silent = True
    packet = client.auth_request(User_Name="u", password="right")
    assert await client.request(packet, timeout=0.05) is None
    assert len(protocol.received) == 1
    assert await client.request(packet, timeout=0.05, retries=2) is None
    assert len(protocol.received) == 4
    assert protocol.received[1] == protocol.received[2] == protocol.received[3]


async def test_retransmission_is_identical(
    client: RadiusClient, responder: tuple[Responder, tuple[str, int]]
) -> None:
    protocol = responder[0]
    protocol.drop = 1
    packet = client.acct_request(Acct_Status_Type="Stop", Acct_Session_Id="s-2")
    reply = await client.request(packet, timeout=0.2, retries=1)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    assert len(protocol.received) == 2
    assert protocol.received[0] == protocol.received[1]


async def test_forged_reply_is_discarded(
    client: RadiusClient, responder: tuple[Responder, tuple[str, int]]
) -> None:
    responder[0].forge_first = True
    reply = await client.request(client.auth_request(User_Name="u", password="right"))
    assert reply is not None and reply.code == Code.ACCESS_ACCEPT
    assert client.discarded == 1


async def test_reply_without_message_authenticator(
    responder: tuple[Responder, tuple[str, int]],
) -> None:
    responder[0].without_message_authenticator = True
    async with RadiusClient(responder[1], SECRET) as strict:
        packet = strict.auth_request(User_Name="u", password="right")
        assert await strict.request(packet, timeout=0.1) is None
        assert strict.discarded == 1
    async with RadiusClient(responder[1], SECRET, require_message_authenticator=False) as lax:
        reply = await lax.request(lax.auth_request(User_Name="u", password="right"))
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT


async def test_more_requests_than_identifiers(
    client: RadiusClient, responder: tuple[Responder, tuple[str, int]]
) -> None:
    packets = [
        client.acct_request(Acct_Status_Type="Interim-Update", Acct_Session_Id=f"s-{n}")
        for n in range(300)
    ]
    # 256 datagrams at once can overflow the responder's socket buffer: retransmit.
    replies = await asyncio.gather(*(client.request(p, timeout=0.5, retries=5) for p in packets))
    assert all(r is not None and r.code == Code.ACCOUNTING_RESPONSE for r in replies)
    assert len({r.id for r in replies[:256] if r is not None}) == 256
    assert len(responder[0].received) >= 300


async def test_request_raw(client: RadiusClient) -> None:
    authenticator = bytes(range(16))
    data = encode_request(
        Code.ACCESS_REQUEST,
        77,
        SECRET,
        attr_text(Attr.USER_NAME, "u"),
        authenticator=authenticator,
    )
    raw = await client.request_raw(data)
    assert raw is not None
    reply = decode_reply(raw, SECRET, authenticator, require_message_authenticator=True)
    assert (reply.code, reply.identifier) == (Code.ACCESS_REJECT, 77)


async def test_closed_client() -> None:
    c = RadiusClient(("127.0.0.1", 9), SECRET)
    with pytest.raises(RuntimeError):
        await c.request(c.auth_request(User_Name="u"))
    await c.open()
    assert c.sockname[0] == "127.0.0.1" and c.sockname[1] > 0
    await c.close()
    await c.close()
