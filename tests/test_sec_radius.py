"""Issue 13, RADIUS side: the attacks of findings 1, 2, 7 and 9 against the live server.

Every test here drives an in-process ``Controller`` over real UDP on 127.0.0.x (one
loopback address per RADIUS client, so the server tells the clients apart by source as
it does in the field) with a real redis-server behind it, and performs the attack as a
hostile NAS client or a curious citizen would: no store call stands in for a packet.

- 01: a credential issued for one client, presented at another, is rejected.
- 02: accounting with a forged, foreign or old-format Class, a made-up ``<pid>.xxxx``
  User-Name or a victim's MAC books nothing onto the victim.
- 07: a MAC-bound credential needs Calling-Station-Id; the re-use grace admits only a NAS
  retry of the same login, never a replay of the same bytes from another source port.
- 09: 6 concurrent Access-Requests for 6 MACs with max_devices = 2 get exactly 2
  Accepts (credentials and MAC re-authentication), and the enforcer disconnects the
  newest devices beyond the limit when more are open anyway.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyrad.packet import CoAPacket

from controller.cli.serve import Controller
from controller.config import load_config
from controller.domain import quota
from controller.domain.identity import class_key, sign_class, verify_class
from controller.services.logins import IssuedLogin, issue_login
from controller.storage import keys
from radius.attrs import Attr, Code
from radius.packet import decode_reply
from tests.conftest import SECRET, write_config
from tests.support.pyrad_client import RadiusClient, load_dictionary, set_pap
from tests.support.redis_proc import RedisProcess, free_port, until

PHONE = "+8613800138013"
VICTIM_MAC = "AA-BB-CC-13-00-01"


@dataclass(frozen=True)
class Nas:
    id: str
    address: str
    secret: str


HOME = Nas("nas-local", "127.0.0.1", SECRET)  # tests.conftest.write_config's clients
OTHER = Nas("nas-local-2", "127.0.0.2", f"{SECRET}-2")


async def login(ctl: Controller, mac: str, nas: Nas = HOME, phone: str = PHONE) -> IssuedLogin:
    assert ctl.store is not None
    return await issue_login(
        ctl.store,
        phone_e164=phone,
        mac=mac,
        client_id=nas.id,
        person_key=ctl.person_key,
        ttl=300,
        now=int(ctl.clock()),
    )


def radius(ctl: Controller, nas: Nas, *, acct: bool = False) -> RadiusClient:
    port = ctl.acct_port if acct else ctl.auth_port
    return RadiusClient(("127.0.0.1", port), nas.secret.encode(), local_addr=(nas.address, 0))


async def auth(ctl: Controller, user: str, password: str, nas: Nas = HOME, **attrs: Any) -> Any:
    async with radius(ctl, nas) as c:
        req = c.auth_request(User_Name=user, **attrs)
        set_pap(req, password)
        return await c.request(req, timeout=2.0, retries=1)


async def acct(
    ctl: Controller,
    nas: Nas,
    status: str,
    sid: str,
    seconds: int,
    *,
    user: str = "",
    cls: bytes | None = None,
    mac: str = VICTIM_MAC,
) -> Any:
    async with radius(ctl, nas, acct=True) as c:
        attrs: dict[str, Any] = dict(
            Acct_Status_Type=status,
            Acct_Session_Id=sid,
            Acct_Session_Time=seconds,
            Calling_Station_Id=mac,
        )
        if user:
            attrs["User_Name"] = user
        req = c.acct_request(**attrs)
        if cls is not None:
            req[int(Attr.CLASS)] = [cls]
        reply = await c.request(req, timeout=2.0, retries=1)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    return reply


def messages(reply: Any) -> str:
    return "".join(
        v.decode() if isinstance(v, bytes) else v for v in reply.get(int(Attr.REPLY_MESSAGE), [])
    )


def accepted(reply: Any) -> bool:
    return reply is not None and reply.code == Code.ACCESS_ACCEPT


def rejected(reply: Any, text: str) -> bool:
    return reply is not None and reply.code == Code.ACCESS_REJECT and text in messages(reply)


async def used_today(ctl: Controller, pid: str) -> int:
    assert ctl.store is not None
    day = quota.day_key(quota.local_day(int(ctl.clock()), ctl.config.quota.timezone))
    return await ctl.store.used_on(pid, day)


# ------------------------------------------------------------------------- finding 1


async def test_finding_01_a_credential_is_rejected_at_another_client(
    controller: Controller,
) -> None:
    """Exfiltrated credentials (the portal hand-off attack) must not work at any NAS:
    issued for nas-local, presented at nas-local-2 with the right password and MAC."""
    for mac in (VICTIM_MAC, ""):  # bound to the device, and not
        issued = await login(controller, mac)
        stolen = await auth(
            controller, issued.username, issued.password, OTHER, Calling_Station_Id=VICTIM_MAC
        )
        assert rejected(stolen, "issued for another network"), messages(stolen)
        # not consumed by the refusal: the owner's own NAS still admits it
        own = await auth(controller, issued.username, issued.password, HOME,
                         Calling_Station_Id=VICTIM_MAC)  # fmt: skip
        assert accepted(own), messages(own)


# ------------------------------------------------------------------------- finding 2


async def test_finding_02_usage_cannot_be_booked_onto_another_person(
    controller: Controller,
) -> None:
    """A NAS client (the victim's own one too) makes up sessions naming the victim every
    way it can; the victim's usage, sessions and next login are untouched, and each made-
    up session is still recorded, for an anonymous person of the client that sent it."""
    assert controller.store is not None
    issued = await login(controller, VICTIM_MAC)
    accept = await auth(controller, issued.username, issued.password, HOME,
                        Calling_Station_Id=VICTIM_MAC)  # fmt: skip
    assert accepted(accept)
    genuine = accept[int(Attr.CLASS)][0]
    victim = issued.person
    await acct(controller, HOME, "Start", "real", 0, user=issued.username, cls=genuine)
    await acct(controller, HOME, "Interim-Update", "real", 600, user=issued.username, cls=genuine)
    assert await used_today(controller, victim) == 600

    forged_tag = sign_class(class_key(b"not-the-server-key-at-all"), victim, "c", "nas-local",
                            "0" * 16)  # fmt: skip
    attacks: list[tuple[Nas, str, str, bytes | None]] = [
        (OTHER, "evil-cw1", "", f"cw1:{victim}:c".encode()),  # the old unsigned format
        (HOME, "evil-cw1-home", "", f"cw1:{victim}:m".encode()),
        (OTHER, "evil-replayed-class", issued.username, genuine),  # issued to nas-local
        (HOME, "evil-forged-tag", "", forged_tag),
        (HOME, "evil-made-up-user", f"{victim}.aaaaaaaa", None),  # pid is not secret
        (OTHER, "evil-foreign-user", issued.username, None),  # credential of nas-local
        (HOME, "evil-mac-user", VICTIM_MAC, None),  # a remembered device's MAC, no Class
        (OTHER, "evil-mac-user-2", VICTIM_MAC.lower().replace("-", ":"), None),
    ]
    for nas, sid, user, cls in attacks:
        await acct(controller, nas, "Start", sid, 0, user=user, cls=cls)
        await acct(controller, nas, "Interim-Update", sid, 7000, user=user, cls=cls)

    assert await used_today(controller, victim) == 600, "usage booked onto the victim"
    assert list(await controller.store.open_sessions(victim)) == ["nas-local/real"]
    for nas, sid, _, _ in attacks:
        found = await controller.store.redis.keys(f"{keys.PREFIX}:*:s:{nas.id}/{sid}")
        assert len(found) == 1, sid  # recorded, but not under the victim
        record = await controller.store.redis.hgetall(found[0])
        assert record[b"pid"].decode() != victim and record[b"known"] == b"0", sid
    # the victim logs in again (not exhausted, not over the device limit)
    again = await login(controller, VICTIM_MAC)
    assert accepted(await auth(controller, again.username, again.password, HOME,
                               Calling_Station_Id=VICTIM_MAC))  # fmt: skip

    # what stays tied to the victim: their NAS without Class, by the credential username
    # issued to it; and the login's nonce from the Class is on the session record
    await acct(controller, HOME, "Interim-Update", "real", 900, user=issued.username)
    assert await used_today(controller, victim) == 900
    claim = verify_class(class_key(controller.person_key), genuine, "nas-local")
    assert claim is not None
    record = await controller.store.session(victim, "nas-local/real")
    assert record["login"] == claim.nonce and record["known"] == "1"


# ------------------------------------------------------------------------- finding 7


async def test_finding_07_a_bound_credential_needs_the_calling_station_id(
    controller: Controller,
) -> None:
    issued = await login(controller, VICTIM_MAC)
    without = await auth(controller, issued.username, issued.password, HOME)
    assert rejected(without, "Calling-Station-Id"), messages(without)
    other = await auth(controller, issued.username, issued.password, HOME,
                       Calling_Station_Id="AA-BB-CC-13-00-99")  # fmt: skip
    assert rejected(other, "another device")
    own = await auth(controller, issued.username, issued.password, HOME,
                     Calling_Station_Id=VICTIM_MAC)  # fmt: skip
    assert accepted(own)


async def test_finding_07_reuse_grace_is_for_a_retry_of_the_same_login_only(
    controller: Controller,
) -> None:
    """After the Accept: the same bytes from another source port (a replay: duplicate
    detection is per source), the same login from another NAS, or for another NAS session
    are refused; a fresh request of the same NAS session (it lost our Accept), or the NAS
    retransmitting a request we left unanswered, is not."""
    issued = await login(controller, VICTIM_MAC)
    attrs = dict(User_Name=issued.username, Calling_Station_Id=VICTIM_MAC,
                 Acct_Session_Id="n-1")  # fmt: skip
    async with radius(controller, HOME) as c:
        req = c.auth_request(**attrs)
        set_pap(req, issued.password)
        req.id = 42
        data = req.RequestPacket()
        first = await c.request_raw(data, timeout=2.0)
        assert first is not None and first[0] == Code.ACCESS_ACCEPT
        for _ in range(2):  # two more source ports, identical datagram
            async with radius(controller, HOME) as replayer:
                replay = await replayer.request_raw(data, timeout=2.0)
            assert replay is not None and replay[0] == Code.ACCESS_REJECT, "replay accepted"
        # the NAS itself retransmitting after its request went unanswered (answer not
        # recorded, so nothing cached: RFC 5080 §2.2.1) still gets its Accept
        controller.endpoints[0].dedup.finish(
            ("127.0.0.1", c.sockname[1], data[0], data[1], data[4:20]), None, 0.0
        )
        resent = await c.request_raw(data, timeout=2.0)
        assert resent is not None and resent[0] == Code.ACCESS_ACCEPT

    elsewhere = await auth(controller, issued.username, issued.password, OTHER,
                           Calling_Station_Id=VICTIM_MAC, Acct_Session_Id="n-1")  # fmt: skip
    assert not accepted(elsewhere)
    other_session = await auth(controller, issued.username, issued.password, HOME,
                               Calling_Station_Id=VICTIM_MAC, Acct_Session_Id="n-2")  # fmt: skip
    assert rejected(other_session, "already used")
    retry = await auth(controller, issued.username, issued.password, HOME, **{
        k: v for k, v in attrs.items() if k != "User_Name"})  # fmt: skip
    assert accepted(retry), messages(retry)
    # the retry continues the same login: the same nonce in its Class
    key = class_key(controller.person_key)
    klass = retry[int(Attr.CLASS)][0]
    first_class = decode_reply(first, SECRET.encode(), data[4:20]).get(Attr.CLASS)
    a, b = verify_class(key, first_class, "nas-local"), verify_class(key, klass, "nas-local")
    assert a is not None and b is not None and a.nonce == b.nonce


# ------------------------------------------------------------------------- finding 9


async def _concurrently(ctl: Controller, logins: list[tuple[str, str, str]]) -> list[Any]:
    """One Access-Request per (user, password, mac), all in flight at once, each from
    its own source port of nas-local."""
    clients = [radius(ctl, HOME) for _ in logins]
    for c in clients:
        await c.open()
    try:
        requests = []
        for c, (user, password, mac) in zip(clients, logins, strict=True):
            req = c.auth_request(User_Name=user, Calling_Station_Id=mac)
            set_pap(req, password)
            requests.append(c.request(req, timeout=3.0, retries=1))
        return list(await asyncio.gather(*requests))
    finally:
        for c in clients:
            await c.close()


MACS = [f"AA-BB-CC-13-09-0{i}" for i in range(6)]


async def test_finding_09_concurrent_credential_logins_get_exactly_max_devices(
    controller: Controller,
) -> None:
    assert controller.config.quota.max_devices == 2
    issued = [await login(controller, mac) for mac in MACS]
    replies = await _concurrently(
        controller, [(i.username, i.password, mac) for i, mac in zip(issued, MACS, strict=True)]
    )
    assert sum(map(accepted, replies)) == 2, [r.code if r else None for r in replies]
    assert all(accepted(r) or rejected(r, "2 devices") for r in replies)
    # a refused device's credential is not used up: once a slot is free it logs in
    winners = [mac for mac, r in zip(MACS, replies, strict=True) if accepted(r)]
    loser = next(i for i, r in zip(issued, replies, strict=True) if not accepted(r))
    for n, mac in enumerate(winners):
        await acct(controller, HOME, "Start", f"w{n}", 0, user=issued[0].username, mac=mac)
        await acct(controller, HOME, "Stop", f"w{n}", 60, user=issued[0].username, mac=mac)
    mac = MACS[issued.index(loser)]
    assert accepted(await auth(controller, loser.username, loser.password, HOME,
                               Calling_Station_Id=mac))  # fmt: skip


async def test_finding_09_concurrent_mac_reauth_gets_exactly_max_devices(
    controller: Controller,
) -> None:
    """Six remembered devices of one person come back at once by MAC authentication."""
    for n, mac in enumerate(MACS):  # each logged in once today, session over
        issued = await login(controller, mac)
        reply = await auth(controller, issued.username, issued.password, HOME,
                           Calling_Station_Id=mac)  # fmt: skip
        assert accepted(reply), (n, messages(reply))
        cls = reply[int(Attr.CLASS)][0]
        await acct(controller, HOME, "Start", f"m{n}", 0, user=issued.username, cls=cls, mac=mac)
        await acct(controller, HOME, "Stop", f"m{n}", 60, user=issued.username, cls=cls, mac=mac)
    replies = await _concurrently(controller, [(mac, mac, mac) for mac in MACS])
    assert sum(map(accepted, replies)) == 2, [r.code if r else None for r in replies]
    assert all(accepted(r) or rejected(r, "2 devices") for r in replies)


@dataclass
class DaeNas(asyncio.DatagramProtocol):
    """A NAS's RFC 5176 port that ACKs every Disconnect-Request and notes its session."""

    secret: bytes
    disconnected: list[str] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = CoAPacket(packet=data, secret=self.secret, dict=load_dictionary())
        if packet.code != Code.DISCONNECT_REQUEST or not packet.VerifyCoARequest():
            return
        self.disconnected.append(packet["Acct-Session-Id"][0])
        reply = packet.CreateReply()
        reply.add_message_authenticator()
        assert self.transport is not None
        self.transport.sendto(reply.ReplyPacket(), addr)


DAE = Nas("nas-dae", "127.0.0.6", "dae-secret-13")


@pytest.fixture
async def dae_city(
    tmp_path: Path, redis_proc: RedisProcess
) -> AsyncIterator[tuple[Controller, DaeNas]]:
    port = free_port(socket.SOCK_DGRAM)
    transport, nas = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: DaeNas(DAE.secret.encode()), local_addr=(DAE.address, port)
    )
    extra = f"""
        [[clients]]
        id = "{DAE.id}"
        address = "{DAE.address}"
        secret = "{DAE.secret}"
        venue = "station"
        vendor = "generic"
        coa_port = {port}

        [enforcer]
        disconnect_timeout = 0.3
        disconnect_retries = 1
        sweep_interval = 0.5
        """
    ctl = Controller(load_config(write_config(tmp_path, redis_proc.url, extra=extra)))
    await ctl.start()
    try:
        yield ctl, nas
    finally:
        await ctl.stop()
        transport.close()


async def test_finding_09_the_enforcer_disconnects_the_newest_device_beyond_the_limit(
    dae_city: tuple[Controller, DaeNas],
) -> None:
    """One login, and its NAS opens sessions for three devices on it anyway (past the
    Accept's gate): the newest device is cut, the two older ones keep running."""
    ctl, nas = dae_city
    assert ctl.store is not None
    issued = await login(ctl, "", DAE)
    reply = await auth(ctl, issued.username, issued.password, DAE, Calling_Station_Id=MACS[0])
    assert accepted(reply)
    cls = reply[int(Attr.CLASS)][0]
    for sid, mac, age in (("old", MACS[0], 300), ("mid", MACS[1], 200), ("new", MACS[2], 100)):
        await acct(ctl, DAE, "Interim-Update", sid, age, user=issued.username, cls=cls, mac=mac)
    await until(lambda: nas.disconnected, 10.0, "a Disconnect-Request")
    await until(
        lambda: ctl.store is not None and ctl.store.redis.hkeys(keys.closing(issued.person)),
        5.0,
        "the ACK recorded",
    )
    closing = await ctl.store.redis.hkeys(keys.closing(issued.person))
    assert nas.disconnected == ["new"] and closing == [b"nas-dae/new"]
    assert sorted(await ctl.store.open_sessions(issued.person)) == [
        "nas-dae/mid",
        "nas-dae/new",  # until its Stop
        "nas-dae/old",
    ]
