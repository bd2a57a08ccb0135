"""The RADIUS server end to end: real redis-server, real UDP, pyrad-based client."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from controller.cli.serve import Controller
from controller.config import Config
from controller.domain.identity import class_key, person_id, verify_class
from controller.services.logins import IssuedLogin, issue_login
from controller.storage import keys
from radius.attrs import Attr, Code
from tests.conftest import SECRET
from tests.support.pyrad_client import RadiusClient, set_chap
from tests.support.redis_proc import RedisProcess

SH = ZoneInfo("Asia/Shanghai")
PHONE = "+8613800138000"
MAC = "AA-BB-CC-00-00-01"


async def login(
    ctl: Controller, mac: str = "", phone: str = PHONE, client_id: str = "nas-local"
) -> IssuedLogin:
    assert ctl.store is not None
    return await issue_login(
        ctl.store,
        phone_e164=phone,
        mac=mac,
        client_id=client_id,
        person_key=ctl.person_key,
        ttl=300,
        now=int(ctl.clock()),
    )


def client(
    ctl: Controller, acct: bool = False, local: str = "127.0.0.1", secret: str = SECRET
) -> RadiusClient:
    port = ctl.acct_port if acct else ctl.auth_port
    return RadiusClient(("127.0.0.1", port), secret.encode(), local_addr=(local, 0))


async def auth(ctl: Controller, user: str, password: str | None, mac: str = MAC, **kw: Any) -> Any:
    async with client(ctl) as c:
        req = c.auth_request(User_Name=user, Calling_Station_Id=mac, NAS_Identifier="nas-1", **kw)
        if password is not None:
            from tests.support.pyrad_client import set_pap

            set_pap(req, password)
        return await c.request(req, timeout=2.0)


async def acct(
    ctl: Controller,
    status: str,
    sid: str,
    seconds: int,
    *,
    user: str = "",
    cls: bytes | None = None,
    mac: str = MAC,
    **kw: Any,
) -> Any:
    async with client(ctl, acct=True) as c:
        attrs: dict[str, Any] = dict(
            Acct_Status_Type=status,
            Acct_Session_Id=sid,
            Acct_Session_Time=seconds,
            Calling_Station_Id=mac,
            NAS_Identifier="nas-1",
            **kw,
        )
        if user:
            attrs["User_Name"] = user
        req = c.acct_request(**attrs)
        if cls is not None:
            req[int(Attr.CLASS)] = [cls]
        return await c.request(req, timeout=2.0)


def reply_messages(reply: Any) -> str:
    return "".join(
        v.decode() if isinstance(v, bytes) else v for v in reply.get(int(Attr.REPLY_MESSAGE), [])
    )


async def used_today(ctl: Controller, pid: str) -> int:
    assert ctl.store is not None
    day = datetime.fromtimestamp(ctl.clock(), SH).strftime("%Y%m%d")
    return await ctl.store.used_on(pid, day)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_pap_login_accepted_with_quota_attributes(controller: Controller) -> None:
    issued = await login(controller, MAC)
    reply = await auth(controller, issued.username, issued.password)
    assert reply is not None and reply.code == Code.ACCESS_ACCEPT
    timeout = reply["Session-Timeout"][0]
    assert 0 < timeout <= 7200 + 86400
    assert reply["Acct-Interim-Interval"][0] == 300
    claim = verify_class(class_key(controller.person_key), reply[int(Attr.CLASS)][0], "nas-local")
    assert claim is not None and (claim.person, claim.kind) == (issued.person, "c")
    # Message-Authenticator is the first attribute of the reply (BlastRADIUS)
    assert reply.raw_packet[20] == Attr.MESSAGE_AUTHENTICATOR


@pytest.mark.parametrize("with_challenge", [True, False])
async def test_chap_login(controller: Controller, with_challenge: bool) -> None:
    issued = await login(controller)
    async with client(controller) as c:
        req = c.auth_request(User_Name=issued.username, Calling_Station_Id=MAC)
        set_chap(req, issued.password, challenge=b"0123456789abcdef" if with_challenge else None)
        reply = await c.request(req, timeout=2.0)
    assert reply is not None and reply.code == Code.ACCESS_ACCEPT


async def test_rejects_say_why(controller: Controller) -> None:
    issued = await login(controller, MAC)
    bad = await auth(controller, issued.username, "wrong-password")
    assert bad.code == Code.ACCESS_REJECT and "invalid" in reply_messages(bad)
    unknown = await auth(controller, "nobody", "x")
    assert unknown.code == Code.ACCESS_REJECT and "unknown" in reply_messages(unknown)
    other_device = await auth(controller, issued.username, issued.password, mac="AA-BB-CC-00-00-99")
    assert other_device.code == Code.ACCESS_REJECT and "another device" in reply_messages(
        other_device
    )
    ok = await auth(controller, issued.username, issued.password)
    assert ok.code == Code.ACCESS_ACCEPT


async def test_credential_is_single_use(controller: Controller) -> None:
    issued = await login(controller)
    assert (await auth(controller, issued.username, issued.password)).code == Code.ACCESS_ACCEPT
    again = await auth(controller, issued.username, issued.password, mac="AA-BB-CC-00-00-02")
    assert again.code == Code.ACCESS_REJECT and "already used" in reply_messages(again)


async def test_interims_drain_the_allowance_and_then_reject(controller: Controller) -> None:
    issued = await login(controller)
    accept = await auth(controller, issued.username, issued.password)
    cls = accept[int(Attr.CLASS)][0]
    assert (
        await acct(controller, "Start", "s1", 0, user=issued.username, cls=cls)
    ).code == Code.ACCOUNTING_RESPONSE
    assert (
        await acct(controller, "Interim-Update", "s1", 3600, user=issued.username, cls=cls)
    ) is not None
    assert await used_today(controller, issued.person) == 3600
    # a second login the same day gets the time that is left
    second = await login(controller)
    reply = await auth(controller, second.username, second.password)
    assert reply.code == Code.ACCESS_ACCEPT and reply["Session-Timeout"][0] <= 3600
    # the allowance is used up: the next login is rejected with the reset time
    assert (
        await acct(controller, "Interim-Update", "s1", 7200, user=issued.username, cls=cls)
    ) is not None
    third = await login(controller)
    rejected = await auth(controller, third.username, third.password)
    assert rejected.code == Code.ACCESS_REJECT
    assert "00:00" in reply_messages(rejected) and "used up" in reply_messages(rejected)


async def test_repeated_reordered_and_replayed_accounting_counts_once(
    controller: Controller,
) -> None:
    issued = await login(controller)
    for _ in range(3):  # three separate transmissions (new identifiers): counted once
        assert (
            await acct(controller, "Interim-Update", "s2", 600, user=issued.username)
        ) is not None
    assert await used_today(controller, issued.person) == 600
    await acct(controller, "Interim-Update", "s2", 300, user=issued.username)  # late, older
    assert await used_today(controller, issued.person) == 600
    await acct(
        controller, "Stop", "s2", 900, user=issued.username, Acct_Terminate_Cause="User-Request"
    )
    await acct(
        controller, "Interim-Update", "s2", 800, user=issued.username
    )  # reordered after Stop
    assert await used_today(controller, issued.person) == 900
    assert controller.store is not None
    session = await controller.store.session(issued.person, "nas-local/s2")
    assert session["closed"] and session["cause"] == "1"
    assert await controller.store.open_sessions(issued.person) == {}


async def test_retransmission_gets_cached_reply_without_side_effects(
    controller: Controller,
) -> None:
    issued = await login(controller)
    async with client(controller, acct=True) as c:
        req = c.acct_request(
            Acct_Status_Type="Interim-Update",
            Acct_Session_Id="s3",
            Acct_Session_Time=120,
            User_Name=issued.username,
        )
        req.id = 77
        data = req.RequestPacket()
        first = await c.request_raw(data, timeout=2.0)
        before = metric(
            "citywifi_radius_requests_total", port="acct", type="duplicate", result="cached"
        )
        second = await c.request_raw(data, timeout=2.0)
    assert first is not None and first == second
    assert (
        metric("citywifi_radius_requests_total", port="acct", type="duplicate", result="cached")
        == before + 1
    )
    assert await used_today(controller, issued.person) == 120


async def test_mac_authentication_of_a_remembered_device(controller: Controller) -> None:
    unknown = await auth(controller, MAC, MAC)
    assert unknown.code == Code.ACCESS_REJECT and "portal" in reply_messages(unknown)
    issued = await login(controller)
    assert (await auth(controller, issued.username, issued.password)).code == Code.ACCESS_ACCEPT
    again = await auth(controller, MAC.lower().replace("-", ":"), "")
    assert again.code == Code.ACCESS_ACCEPT
    claim = verify_class(class_key(controller.person_key), again[int(Attr.CLASS)][0], "nas-local")
    assert claim is not None and (claim.person, claim.kind) == (issued.person, "m")


async def test_device_limit(controller: Controller) -> None:
    for i in (1, 2):
        issued = await login(controller)
        mac = f"AA-BB-CC-00-01-0{i}"
        assert (
            await auth(controller, issued.username, issued.password, mac=mac)
        ).code == Code.ACCESS_ACCEPT
        await acct(controller, "Start", f"d{i}", 0, user=issued.username, mac=mac)
    third = await login(controller)
    reply = await auth(controller, third.username, third.password, mac="AA-BB-CC-00-01-03")
    assert reply.code == Code.ACCESS_REJECT and "2 devices" in reply_messages(reply)
    # the same device logging in again is not an extra device
    fourth = await login(controller)
    assert (
        await auth(controller, fourth.username, fourth.password, mac="AA-BB-CC-00-01-01")
    ).code == Code.ACCESS_ACCEPT


async def test_accounting_on_closes_the_clients_sessions(controller: Controller) -> None:
    issued = await login(controller)
    await acct(controller, "Start", "on1", 0, user=issued.username)
    await acct(controller, "Interim-Update", "on1", 300, user=issued.username)
    assert controller.store is not None
    assert len(await controller.store.open_sessions(issued.person)) == 1
    async with client(controller, acct=True) as c:
        reply = await c.request(
            c.acct_request(Acct_Status_Type="Accounting-On", NAS_Identifier="nas-1"), timeout=2.0
        )
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    assert await controller.store.open_sessions(issued.person) == {}
    session = await controller.store.session(issued.person, "nas-local/on1")
    assert session["cause"] == "11" and session["closed"] == session["last"]
    assert await used_today(controller, issued.person) == 300


async def test_unknown_person_accounting_is_still_recorded(controller: Controller) -> None:
    reply = await acct(
        controller, "Interim-Update", "ghost", 100, user="someone-else", mac="AA-BB-CC-00-00-77"
    )
    assert reply is not None
    assert controller.store is not None
    raw = await controller.store.redis.keys(f"{keys.PREFIX}:*:s:nas-local/ghost")
    assert len(raw) == 1


async def test_venue_from_access_point(controller: Controller) -> None:
    issued = await login(controller)
    await acct(
        controller,
        "Start",
        "ap1",
        0,
        user=issued.username,
        Called_Station_Id="00-11-22-33-44-55:i-Test",
    )
    assert controller.store is not None
    session = await controller.store.session(issued.person, "nas-local/ap1")
    assert session["venue"] == "hospital" and session["venue_type"] == "hospital"


async def test_unknown_client_dropped_and_counted(controller: Controller) -> None:
    before = metric("citywifi_radius_dropped_total", port="auth", reason="unknown_client")
    async with client(controller, local="127.0.0.3") as c:
        assert await c.request(c.auth_request(User_Name="x"), timeout=0.3) is None
    assert (
        metric("citywifi_radius_dropped_total", port="auth", reason="unknown_client") == before + 1
    )


async def test_wrong_secret_and_missing_message_authenticator_dropped(
    controller: Controller,
) -> None:
    issued = await login(controller)
    before = metric(
        "citywifi_radius_dropped_total", port="auth", reason="bad_message_authenticator"
    )
    async with client(controller, secret="wrong") as c:
        assert await c.request(c.auth_request(User_Name=issued.username), timeout=0.3) is None
    assert (
        metric("citywifi_radius_dropped_total", port="auth", reason="bad_message_authenticator")
        == before + 1
    )
    async with client(controller) as c:
        req = c.auth_request(User_Name=issued.username, add_message_authenticator=False)
        assert await c.request(req, timeout=0.3) is None
    async with client(controller, acct=True, secret="wrong") as c:
        req = c.acct_request(Acct_Status_Type="Start", Acct_Session_Id="x")
        assert await c.request(req, timeout=0.3) is None


async def test_status_server_on_both_ports(controller: Controller) -> None:
    async with client(controller) as c:
        reply = await c.request(c.status_server(), timeout=2.0)
        assert reply is not None and reply.code == Code.ACCESS_ACCEPT
    async with client(controller, acct=True) as c:
        reply = await c.request(c.status_server(accounting=True), timeout=2.0)
        assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE


async def test_no_accounting_response_while_redis_is_down(
    controller: Controller, redis_proc: RedisProcess
) -> None:
    issued = await login(controller)
    assert (await acct(controller, "Interim-Update", "r1", 60, user=issued.username)) is not None
    redis_proc.stop()
    try:
        assert (await acct(controller, "Interim-Update", "r1", 120, user=issued.username)) is None
        assert (await auth(controller, issued.username, issued.password)) is None
    finally:
        redis_proc.start()
    deadline = time.monotonic() + 10
    reply = None
    while reply is None and time.monotonic() < deadline:
        reply = await acct(controller, "Interim-Update", "r1", 180, user=issued.username)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    assert await used_today(controller, issued.person) == 180  # AOF kept the 60 s


async def test_session_spanning_midnight_is_split(config: Config) -> None:
    now = [datetime(2026, 11, 26, 0, 10, tzinfo=SH).timestamp()]
    ctl = Controller(config, clock=lambda: now[0])
    await ctl.start()
    try:
        issued = await login(ctl)
        await acct(ctl, "Interim-Update", "mid", 1200, user=issued.username)
        assert ctl.store is not None
        assert await ctl.store.used_on(issued.person, "20261125") == 600
        assert await ctl.store.used_on(issued.person, "20261126") == 600
    finally:
        await ctl.stop()


async def test_late_evening_login_runs_into_tomorrow(config: Config) -> None:
    now = [datetime(2026, 11, 25, 23, 30, tzinfo=SH).timestamp()]
    ctl = Controller(config, clock=lambda: now[0])
    await ctl.start()
    try:
        issued = await login(ctl)
        reply = await auth(ctl, issued.username, issued.password)
        assert reply["Session-Timeout"][0] == 1800 + 7200
    finally:
        await ctl.stop()


def test_person_id_is_keyed_and_opaque() -> None:
    a = person_id(PHONE, b"k1")
    assert a != person_id(PHONE, b"k2") and PHONE[1:] not in a and len(a) == 20
