"""Issue 14, session and quota items: what real NASes send, end to end.

One test per item (``test_item_NN_…``), each failing on the code before its fix, plus
the tables they rest on. Real redis-server, real UDP (pyrad-built requests, the NAS
simulator of ``bench.nas_sim``); time is a settable or simulated clock.
"""

from __future__ import annotations

import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller import keys
from controller.app import Controller
from controller.config import Config, load_config
from controller.logins import IssuedLogin, issue_login
from controller.mac import called_station_mac, normalize_mac
from controller.registry import Registry
from radius.attrs import Attr, Code
from radius.client import RadiusClient, set_pap
from tests.conftest import SECRET, write_config
from tests.redis_proc import RedisProcess

SH = ZoneInfo("Asia/Shanghai")
AP = "AC-4E-91-0B-7F-2D"  # an AP MAC with letters, so case matters
DEVICE = "F8-16-54-20-F4-C2"
PHONE = "+8613800138014"
AP_TABLE = f"""
    [[access_points]]
    match = "{AP}"
    venue = "hospital"
    """


async def login(ctl: Controller, phone: str = PHONE, mac: str = "") -> IssuedLogin:
    assert ctl.store is not None
    return await issue_login(
        ctl.store,
        phone_e164=phone,
        mac=mac,
        person_key=ctl.person_key,
        ttl=300,
        now=int(ctl.clock()),
    )


def radius(ctl: Controller, *, acct: bool) -> RadiusClient:
    port = ctl.acct_port if acct else ctl.auth_port
    return RadiusClient(("127.0.0.1", port), SECRET.encode(), local_addr=("127.0.0.1", 0))


async def access(ctl: Controller, issued: IssuedLogin, mac: str = DEVICE, **kw: Any) -> Any:
    async with radius(ctl, acct=False) as c:
        req = c.auth_request(
            User_Name=issued.username, Calling_Station_Id=mac, NAS_Identifier="nas-1", **kw
        )
        set_pap(req, issued.password)
        return await c.request(req, timeout=2.0)


async def accounting(
    ctl: Controller,
    status: str,
    acct_session_id: str,
    seconds: int,
    *,
    cls: bytes | None,
    mac: str = DEVICE,
    extra: dict[int, list[bytes]] | None = None,
    **kw: Any,
) -> Any:
    async with radius(ctl, acct=True) as c:
        attrs: dict[str, Any] = {
            "Acct_Status_Type": status,
            "NAS_Identifier": "nas-1",
            **kw,
        }
        if status not in ("Accounting-On", "Accounting-Off"):
            attrs.update(
                Acct_Session_Id=acct_session_id,
                Acct_Session_Time=seconds,
                Calling_Station_Id=mac,
            )
        req = c.acct_request(**attrs)
        if cls is not None:
            req[int(Attr.CLASS)] = [cls]
        for number, values in (extra or {}).items():
            req[number] = values
        reply = await c.request(req, timeout=2.0)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    return reply


def first(reply: Any, attribute: Attr) -> Any:
    values = reply.get(int(attribute)) or [None]
    return values[0]


def reply_text(reply: Any) -> str:
    return "".join(
        v.decode() if isinstance(v, bytes) else v for v in reply.get(int(Attr.REPLY_MESSAGE), [])
    )


def city(tmp_path: Path, redis_url: str, **overrides: str) -> Config:
    extra = textwrap.dedent(AP_TABLE) + textwrap.dedent(overrides.pop("extra", ""))
    return load_config(write_config(tmp_path, redis_url, extra=extra, **overrides))


# ---------------------------------------------------------------- item 2: AP notations

# What each vendor sends, from its documentation: (vendor, Called-Station-Id,
# Calling-Station-Id). The AP is ``AP`` and the device ``DEVICE`` in every row.
VENDOR_NOTATIONS = [
    # RFC 3580 §3.20/3.21: upper case, dashes, ":SSID" appended
    ("rfc3580", "AC-4E-91-0B-7F-2D:i-Test", "F8-16-54-20-F4-C2"),
    # Huawei AC: calling-station-id mac-format default xxxx-xxxx-xxxx, lower case
    ("huawei", "ac4e-910b-7f2d:i-Test", "f816-5420-f4c2"),
    ("huawei unformatted uppercase", "AC4E910B7F2D:i-Test", "F8165420F4C2"),
    ("huawei colon-split mode1", "ac4e:910b:7f2d:i-Test", "f816:5420:f4c2"),
    ("huawei dot-split mode2", "ac.4e.91.0b.7f.2d:i-Test", "f8.16.54.20.f4.c2"),
    # H3C (Comware): the same hyphenated groups of four
    ("h3c", "ac4e-910b-7f2d:i-Test", "f816-5420-f4c2"),
    # Cisco WLC: APMAC:SSID lower case with dashes; IOS / FlexConnect standalone: dots
    ("cisco wlc", "ac-4e-91-0b-7f-2d:i-Test", "f8-16-54-20-f4-c2"),
    ("cisco ios", "ac4e.910b.7f2d:i-Test", "f816.5420.f4c2"),
    ("cisco flexconnect standalone", "ac4e.910b.7f2d", "F816.5420.F4C2"),
    # Aruba: called-station-id type macaddr delimiter colon|dash|none include-ssid
    ("aruba colon", "AC:4E:91:0B:7F:2D:i-Test", "f8165420f4c2"),
    ("aruba none", "AC4E910B7F2D:i-Test", "f8165420f4c2"),
    ("hp/aruba switch", "ac4e91-0b7f2d", "f81654-20f4c2"),
    # Ruckus SmartZone / ZoneDirector: AP MAC:SSID, device lower case with dashes
    ("ruckus", "AC-4E-91-0B-7F-2D:i-Test", "f8-16-54-20-f4-c2"),
    # MikroTik: device in capitals with colons (CAPsMAN: radio MAC:SSID)
    ("mikrotik capsman", "AC:4E:91:0B:7F:2D:i-Test", "F8:16:54:20:F4:C2"),
    # CoovaChilli: Called-Station-Id is the NAS MAC alone (radius_addcalledstation)
    ("coovachilli", "AC-4E-91-0B-7F-2D", "F8-16-54-20-F4-C2"),
    # Ubiquiti UniFi, Meraki: RFC 3580 style
    ("ubiquiti", "AC-4E-91-0B-7F-2D:i-Test", "F8-16-54-20-F4-C2"),
    # other separators before the SSID
    ("semicolon", "AC-4E-91-0B-7F-2D;i-Test", "F8-16-54-20-F4-C2"),
    ("comma", "ac4e910b7f2d,i-Test", "f8165420f4c2"),
    ("space", "ac4e.910b.7f2d i-Test", "f816.5420.f4c2"),
    ("underscore", "AC:4E:91:0B:7F:2D_i-Test", "F8:16:54:20:F4:C2"),
]

NOT_A_MAC = [
    "hotspot1",  # MikroTik hotspot: the server name (the venue comes from NAS-Identifier)
    "AC-4E-91-0B-7F-2DX",  # runs on into more letters
    "ac4e910b7f2d0",  # thirteen digits
    "AC-4E:91-0B-7F-2D",  # mixed separators
    "AC-4E-91-0B-7F",  # five groups
    "ac4e-910b7f2d",  # groups of 4 and 8
    "",
]


@pytest.mark.parametrize(("vendor", "called", "calling"), VENDOR_NOTATIONS)
def test_vendor_notations_table(vendor: str, called: str, calling: str) -> None:
    assert called_station_mac(called) == AP, vendor
    assert normalize_mac(calling) == DEVICE, vendor


@pytest.mark.parametrize("value", NOT_A_MAC)
def test_what_is_not_a_mac(value: str) -> None:
    assert called_station_mac(value) is None
    assert normalize_mac(value) is None


NOTATIONS = [
    lambda h: "-".join(h[i : i + 2] for i in range(0, 12, 2)),
    lambda h: ":".join(h[i : i + 2] for i in range(0, 12, 2)),
    lambda h: ".".join(h[i : i + 2] for i in range(0, 12, 2)),
    lambda h: "-".join(h[i : i + 4] for i in range(0, 12, 4)),
    lambda h: ".".join(h[i : i + 4] for i in range(0, 12, 4)),
    lambda h: ":".join(h[i : i + 4] for i in range(0, 12, 4)),
    lambda h: h[:6] + "-" + h[6:],
    lambda h: h,
]


@given(
    st.binary(min_size=6, max_size=6),
    st.sampled_from(NOTATIONS),
    st.booleans(),
    st.sampled_from(["", ":", ";", ",", " ", "_", "-", "/"]),
    st.text(max_size=32),
)
def test_any_notation_any_case_any_ssid_suffix(
    mac: bytes, notation: Any, upper: bool, separator: str, ssid: str
) -> None:
    text = notation(mac.hex().upper() if upper else mac.hex())
    canonical = "-".join(f"{b:02X}" for b in mac)
    assert normalize_mac(text) == canonical
    if separator:
        assert called_station_mac(text + separator + ssid) == canonical


def test_venue_by_every_vendor_notation(tmp_path: Path) -> None:
    registry = Registry(city(tmp_path, "redis://127.0.0.1:1"))
    client = registry.clients_by_id["nas-local"]  # default venue: station
    for vendor, called, _ in VENDOR_NOTATIONS:
        assert registry.venue_for(client, called, "").id == "hospital", vendor
    assert registry.venue_for(client, "hotspot1", "").id == "station"


async def test_item_02_huawei_and_cisco_sessions_land_in_the_ap_venue(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """Accounting from a Huawei/H3C (``ac4e-910b-7f2d:SSID``) and a Cisco
    (``ac4e.910b.7f2d:SSID``) AP is booked to the AP's venue, not the NAS's default, and
    their device MACs are recorded in the one canonical notation."""
    ctl = Controller(city(tmp_path, redis_proc.url))
    await ctl.start()
    try:
        assert ctl.store is not None
        issued = await login(ctl)
        for sid, called, calling in (
            ("hw-1", "ac4e-910b-7f2d:i-Test", "f816-5420-f4c2"),
            ("cisco-1", "ac4e.910b.7f2d:i-Test", "f816.5420.f4c2"),
        ):
            cls = b"cw1:" + issued.person.encode() + b":c"
            await accounting(ctl, "Start", sid, 0, cls=cls, mac=calling, Called_Station_Id=called)
            record = await ctl.store.session(issued.person, keys.session_id("nas-local", sid))
            assert (record["venue"], record["mac"]) == ("hospital", DEVICE), called
    finally:
        await ctl.stop()


# ------------------------------------------------ item 7: the last seconds of an allowance


async def test_item_07_a_login_with_less_than_the_minimum_grant_left_is_refused(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """A day that ended at 7199/7200 s (whole seconds rounded down by the NAS) does not
    give the next login Session-Timeout = 1 but the used-up answer with the reset time,
    and the report counts the day as used up."""
    from controller.reports.page import dashboard
    from tests.test_reports_helpers import Clock as DayClock
    from tests.test_reports_helpers import city_config, drain, use

    clock = DayClock(datetime(2025, 11, 10, 12, 0, tzinfo=SH))
    config = load_config(city_config(tmp_path, redis_proc.url))
    assert config.quota.min_grant_seconds == 300  # default: one interim interval
    ctl = Controller(config, clock=clock)
    await ctl.start()
    try:
        await use(ctl, "C", "mall", 7199, "c1", mac=DEVICE)  # Stop at 7199 s
        issued = await login(ctl, phone="+8613800138003")
        refused = await access(ctl, issued)
        assert refused.code == Code.ACCESS_REJECT, first(refused, Attr.SESSION_TIMEOUT)
        assert "used up" in reply_text(refused) and "2025-11-11 00:00" in reply_text(refused)
        await drain(ctl)
        clock.set(datetime(2025, 11, 20, 12, 0, tzinfo=SH))
        assert ctl.archiver is not None
        board = dashboard(ctl.archiver.archive, config, clock(), "en")
        assert board.exhausted == 1
    finally:
        await ctl.stop()


def test_minimum_grant_boundaries() -> None:
    """Exactly the minimum grant left is a login; one second less is not; a login that
    runs into tomorrow's allowance is one whatever is left today."""
    from controller.access import Outcome, decide_access
    from controller.config import QuotaPolicy
    from controller.store import PersonState

    policy = QuotaPolicy(daily_seconds=7200, timezone=SH, min_grant_seconds=300)
    noon = int(datetime(2025, 11, 10, 12, tzinfo=SH).timestamp())
    before_midnight = int(datetime(2025, 11, 10, 23, 59, 50, tzinfo=SH).timestamp())

    def decide(used: int, now: int = noon) -> Any:
        state = PersonState("pw", "", None, "", used, 0, "")
        return decide_access(
            state, credential=True, password_ok=True, mac=DEVICE, policy=policy, now=now
        )

    assert decide(6900).accept and decide(6900).session_timeout == 300
    assert decide(6901).outcome is Outcome.EXHAUSTED
    assert decide(7199).outcome is Outcome.EXHAUSTED
    assert decide(7190, before_midnight).accept  # 10 s to midnight, then a new day
    assert decide(7195, before_midnight).outcome is Outcome.EXHAUSTED
    assert policy.used_up_seconds == 6901
