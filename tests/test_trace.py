"""The debugging tools of issue 17: ``radius.trace`` on real packets (built by pyrad, an
independent implementation: PAP, CHAP, Message-Authenticator, Vendor-Specific), and
against a live in-process ``serve`` (its own tracer, fed by the RADIUS cores'
``on_packet`` hook): ``citywifi test-login --acct`` gets an Access-Accept and three
Accounting-Responses, while ``citywifi trace`` prints that exchange decoded, the
password redacted."""

from __future__ import annotations

import argparse
import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pyrad.packet import AccessRequest, AccountingRequest, AuthPacket, Packet

from controller.cli import test_login
from controller.cli import trace as trace_cli
from controller.cli.serve import Controller
from controller.config import Config, load_config
from radius.attrs import DICTIONARY_DIR
from radius.trace import parse_dictionary, trace
from tests.conftest import SECRET
from tests.support.pyrad_client import load_dictionary, set_chap, set_pap
from tests.support.redis_proc import RedisProcess, until
from tests.test_reports_helpers import city_config

PASSWORD = "s3cret-pass"


def _request(code: int = AccessRequest, **attrs: Any) -> Packet:
    packet = AuthPacket(code=code, secret=SECRET.encode(), dict=load_dictionary(), id=7)
    for name, value in attrs.items():
        packet[name.replace("_", "-")] = value
    return packet


def test_pap_request_with_message_authenticator_and_vendor_attributes() -> None:
    packet = _request(
        User_Name="u-0042",
        NAS_IP_Address="192.0.2.10",
        NAS_Port=3,
        Service_Type="Login-User",
        Called_Station_Id="00-11-22-33-44-01:i-Test",
        WISPr_Location_Name="Station",
        ChilliSpot_Bandwidth_Max_Down=2048,
    )
    set_pap(packet, PASSWORD)
    packet.add_message_authenticator()
    raw = packet.RequestPacket()
    traced = trace(raw)
    assert traced.code_name == "Access-Request" and traced.identifier == 7
    shown = {a.name: a.value for a in traced.attributes}
    assert shown["User-Name"] == '"u-0042"'
    assert shown["NAS-IP-Address"] == "192.0.2.10"
    assert shown["NAS-Port"] == "3"
    assert shown["Service-Type"] == "Login-User"  # a named value from the dictionary
    assert shown["WISPr-Location-Name"] == '"Station"'
    assert shown["ChilliSpot-Bandwidth-Max-Down"] == "2048"
    assert shown["User-Password"] == "<redacted, 16 octets>"
    assert shown["Message-Authenticator"] == "<present, 16 octets>"
    text = "\n".join(traced.lines())
    hidden = packet[2][0] if 2 in packet else b""
    assert PASSWORD not in text and (not hidden or hidden.hex() not in text)
    assert text.startswith("Access-Request Id 7 length")


def test_chap_and_accounting_and_unknown_attributes() -> None:
    packet = _request(User_Name="u-0042")
    set_chap(packet, PASSWORD, challenge=b"0123456789abcdef")
    traced = trace(packet.RequestPacket())
    shown = {a.name: a.value for a in traced.attributes}
    assert shown["CHAP-Password"] == "<redacted, 17 octets>"
    assert shown["CHAP-Challenge"] == "0x" + b"0123456789abcdef".hex()

    acct = _request(
        AccountingRequest,
        User_Name="u-0042",
        Acct_Status_Type="Interim-Update",
        Acct_Session_Time=60,
        Acct_Terminate_Cause="Idle-Timeout",
        Event_Timestamp=1_764_650_000,
    )
    traced = trace(acct.RequestPacket())
    shown = {a.name: a.value for a in traced.attributes}
    assert traced.code_name == "Accounting-Request"
    assert shown["Acct-Status-Type"] == "Interim-Update"
    assert shown["Acct-Terminate-Cause"] == "Idle-Timeout"
    assert shown["Event-Timestamp"] == '"2025-12-02 04:33:20 UTC"'

    # an attribute no dictionary names, a vendor no dictionary knows, then a cut packet
    raw = bytearray(acct.RequestPacket())
    extra = bytes((199, 4, 1, 2)) + bytes((26, 10)) + (9).to_bytes(4, "big") + bytes((1, 4, 5, 6))
    raw += extra
    raw[2:4] = len(raw).to_bytes(2, "big")
    traced = trace(bytes(raw))
    assert ("Attr-199", "0x0102") in [(a.name, a.value) for a in traced.attributes]
    assert ("Vendor-9-Attr-1", "0x0506") in [(a.name, a.value) for a in traced.attributes]
    cut = trace(bytes(raw[:-3]) + b"")
    assert cut.problem  # says where it stopped, never raises
    assert trace(b"\x01\x02").problem == "shorter than 20"


def test_encrypted_vendor_attributes_are_redacted(tmp_path: Path) -> None:
    (tmp_path / "dictionary").write_text(
        "VENDOR Acme 999\nBEGIN-VENDOR Acme\nATTRIBUTE Acme-Key 1 octets encrypt=2\n"
        "END-VENDOR Acme\n"
    )
    d = parse_dictionary(tmp_path / "dictionary")
    raw = bytearray(20) + bytes((26, 12)) + (999).to_bytes(4, "big") + bytes((1, 6)) + b"KEY!"
    raw[0], raw[2:4] = 2, len(raw).to_bytes(2, "big")
    traced = trace(bytes(raw), d)
    assert traced.code_name == "Access-Accept"
    assert [(a.name, a.value, a.vendor) for a in traced.attributes] == [
        ("Acme-Key", "<redacted, 4 octets>", "Acme")
    ]
    assert parse_dictionary(DICTIONARY_DIR / "dictionary").vendors[14122] == "WISPr"


# --------------------------------------------------------------------------- live


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(city_config(tmp_path, redis_proc.url))


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    controller = Controller(city)
    await controller.start()
    yield controller
    await controller.stop()


def _args(ctl: Controller, **kw: Any) -> argparse.Namespace:
    values: dict[str, Any] = dict(
        phone="13800138001",
        client="nas-local",
        acct=True,
        mac=test_login.TEST_MAC,
        server="127.0.0.1",
        auth_port=ctl.auth_port,
        acct_port=ctl.acct_port,
        timeout=2.0,
    )
    values.update(kw)
    return argparse.Namespace(**values)


async def test_test_login_and_trace_against_a_running_server(ctl: Controller) -> None:
    assert ctl.store is not None and ctl.tracer is not None
    tracer = ctl.tracer  # the real hook: Controller.start passes tracer.observe to the cores
    tracer.interval = 0.05  # from its next round on: the switch is seen sooner
    traced = io.StringIO()
    follow = asyncio.ensure_future(
        trace_cli.follow(
            ctl.config,
            argparse.Namespace(client="nas-local", seconds=60, leave_on=False, off=False),
            traced,
        )
    )
    try:
        await until(lambda: tracer.traced == {"nas-local"}, what="the switch seen")
        shown = io.StringIO()
        assert await test_login.run(ctl.config, _args(ctl), shown) == 0
        out = shown.getvalue()
        assert "Received Access-Accept" in out and out.count("Received Accounting-Response") == 3
        assert "User-Password = <redacted, 16 octets>" in out
        assert "Session-Timeout = " in out and "Class = 0x" in out
        await until(lambda: traced.getvalue().count("-> Accounting-Response") == 3, what="trace")
        lines = traced.getvalue()
        assert "<- Access-Request" in lines and "-> Access-Accept" in lines
        assert "\tUser-Password = <redacted, 16 octets>" in lines
        assert "\tAcct-Status-Type = Start" in lines and "\tAcct-Status-Type = Stop" in lines
        assert '\tCalling-Station-Id = "02-00-5E-10-00-01"' in lines
    finally:
        follow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follow
    assert await ctl.store.redis.zscore("cw:trace:on", "nas-local") is None  # off at the end
    # a reject is exit 1 (a phone the server blocks is simplest: an unknown client here)
    assert await test_login.run(ctl.config, _args(ctl, client="nope"), io.StringIO()) == 2


async def test_the_switches_are_one_sorted_set_read_in_one_round_trip_and_they_expire(
    redis_proc: RedisProcess,
) -> None:
    """Every worker reads the switches once a second: one ZRANGEBYSCORE whatever the
    number of clients (not one command per client), and a trace ends by itself."""
    from controller.storage.redis_conn import client_from_url
    from controller.storage.store import Store
    from controller.storage.trace import SWITCHES, TraceStore

    now = [1_800_000_000.0]
    store = Store(client_from_url(redis_proc.url))
    db = TraceStore(store, clock=lambda: now[0])
    clients = [f"nas-{i}" for i in range(2000)]
    try:
        await db.on("nas-7", 60, "test")
        before = await store.redis.info("commandstats")
        assert await db.active(clients) == {"nas-7"}
        after = await store.redis.info("commandstats")
        calls = {
            k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"]
            for k in after
            if k.startswith("cmdstat_")
        }
        calls = {k: n for k, n in calls.items() if n and k != "cmdstat_info"}
        assert calls == {"cmdstat_zremrangebyscore": 1, "cmdstat_zrangebyscore": 1}, calls
        now[0] += 59
        assert await db.active(clients) == {"nas-7"}
        now[0] += 1  # the trace's last second is over
        assert await db.active(clients) == frozenset()
        assert await store.redis.zcard(SWITCHES) == 0  # the ended trace is dropped
        await db.on("nas-7", 60, "test")
        assert await db.off("nas-7") and not await db.off("nas-7")
    finally:
        await store.close()
