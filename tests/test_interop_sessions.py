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

from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.domain import quota
from controller.domain.identity import class_key, new_nonce, sign_class
from controller.domain.mac import called_station_mac, normalize_mac
from controller.domain.registry import Registry
from controller.services.logins import IssuedLogin, issue_login
from controller.storage import keys
from radius.attrs import Attr, Code
from tests.conftest import SECRET, write_config
from tests.support.portal_kit import Clock
from tests.support.pyrad_client import RadiusClient, set_pap
from tests.support.redis_proc import RedisProcess, until

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
        client_id="nas-local",
        person_key=ctl.person_key,
        ttl=300,
        now=int(ctl.clock()),
    )


def signed_class(ctl: Controller, pid: str, client: str = "nas-local") -> bytes:
    """The Class an Access-Accept to ``client`` would carry (issue 13: Class is signed)."""
    return sign_class(class_key(ctl.person_key), pid, "c", client, new_nonce())


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


def city(tmp_path: Path, redis_url: str, max_devices: int = 2, **overrides: str) -> Config:
    extra = textwrap.dedent(AP_TABLE) + textwrap.dedent(overrides.pop("extra", ""))
    path = write_config(tmp_path, redis_url, extra=extra, **overrides)
    path.write_text(path.read_text().replace("max_devices = 2", f"max_devices = {max_devices}"))
    return load_config(path)


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
            cls = signed_class(ctl, issued.person)
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
    from controller.services.reports.dashboard import dashboard
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
    from controller.config import QuotaPolicy
    from controller.domain.access import Outcome, decide_access
    from controller.domain.state import Origin, PersonState

    policy = QuotaPolicy(daily_seconds=7200, timezone=SH, min_grant_seconds=300)
    noon = int(datetime(2025, 11, 10, 12, tzinfo=SH).timestamp())
    before_midnight = int(datetime(2025, 11, 10, 23, 59, 50, tzinfo=SH).timestamp())

    def decide(used: int, now: int = noon) -> Any:
        state = PersonState(
            password="pw", client="nas", bound_mac="", used=None, used_today=used,
            other_devices=0, block="",
        )  # fmt: skip
        return decide_access(
            state,
            credential=True,
            password_ok=True,
            mac=DEVICE,
            policy=policy,
            now=now,
            origin=Origin("nas"),
        )

    assert decide(6900).accept and decide(6900).session_timeout == 300
    assert decide(6901).outcome is Outcome.EXHAUSTED
    assert decide(7199).outcome is Outcome.EXHAUSTED
    assert decide(7190, before_midnight).accept  # 10 s to midnight, then a new day
    assert decide(7195, before_midnight).outcome is Outcome.EXHAUSTED
    assert policy.used_up_seconds == 6901


# --------------------------------- item 3: a rebooted NAS reuses session ids (generations)

NOON = datetime(2025, 11, 10, 12, 0, tzinfo=SH).timestamp()
NO_LOOP = "\n[enforcer]\nenabled = false\n"  # the due index is still written; nothing acts


async def open_sids(ctl: Controller, pid: str) -> set[str]:
    assert ctl.store is not None
    return set((await ctl.store.person_snapshot(pid, "20251110")).open)


async def used(ctl: Controller, pid: str) -> int:
    assert ctl.store is not None
    return await ctl.store.used_on(pid, "20251110")


async def archived(ctl: Controller) -> dict[str, int]:
    """record id -> seconds, of every session in the archive."""
    from controller.storage.archive import ledger_sql

    assert ctl.archiver is not None
    await ctl.archiver.drain()
    archive = ctl.archiver.archive
    days = [datetime(2025, 11, 10).date()]
    sql = ledger_sql(archive, days, SH, 6, int(ctl.clock() * 1000))
    rows = archive.query(f"SELECT record_id, sum(seconds) FROM ({sql}) GROUP BY 1")
    return {str(r[0]): int(r[1]) for r in rows}


async def test_item_03_a_reused_session_id_after_accounting_on_is_a_new_session(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """Cisco restarts Acct-Session-Ids at 1 after a reload: the session reusing an old id
    after Accounting-On is counted from its first second, held against max_devices,
    enforced and archived as a session of its own."""
    clock = Clock(NOON)
    ctl = Controller(city(tmp_path, redis_proc.url, max_devices=1, extra=NO_LOOP), clock=clock)
    await ctl.start()
    try:
        first_login = await login(ctl)
        pid = first_login.person
        cls = signed_class(ctl, pid)
        assert (await access(ctl, first_login)).code == Code.ACCESS_ACCEPT
        await accounting(ctl, "Start", "1", 0, cls=cls)
        clock.advance(600)
        await accounting(ctl, "Interim-Update", "1", 600, cls=cls)
        assert await used(ctl, pid) == 600
        clock.advance(100)
        await accounting(ctl, "Accounting-On", "", 0, cls=None)  # the NAS rebooted
        assert await open_sids(ctl, pid) == set()

        clock.advance(100)
        again = await login(ctl)
        assert (await access(ctl, again)).code == Code.ACCESS_ACCEPT
        await accounting(ctl, "Start", "1", 0, cls=cls)  # the same id, a new session
        clock.advance(100)
        await accounting(ctl, "Interim-Update", "1", 100, cls=cls)
        assert await used(ctl, pid) == 700  # counted from its first second
        (second,) = await open_sids(ctl, pid)
        assert second == "nas-local#2/1"  # generation 2 of (nas-local, "1")
        # held against max_devices = 1: another device is refused
        other = await access(ctl, await login(ctl), mac="F8-16-54-20-F4-C9")
        assert other.code == Code.ACCESS_REJECT and "devices" in reply_text(other)
        # enforced: the projection counts it running
        assert ctl.enforcer is not None and ctl.store is not None
        now = int(clock())
        plan = ctl.enforcer.plan(await ctl.store.person_snapshot(pid, "20251110"), now)
        assert plan.wake == now + 7200 - 700
        clock.advance(100)
        await accounting(ctl, "Stop", "1", 200, cls=cls, Acct_Terminate_Cause="User-Request")
        assert await used(ctl, pid) == 800
        # a late retransmission of either session's reports counts nothing again
        await accounting(ctl, "Interim-Update", "1", 600, cls=cls)
        await accounting(ctl, "Stop", "1", 200, cls=cls, Acct_Terminate_Cause="User-Request")
        assert await used(ctl, pid) == 800
        assert sorted((await archived(ctl)).values()) == [200, 600]  # two sessions
        record = await ctl.store.session(pid, second)
        assert record["acct_session_id"] == "1" and record["closed"] and record["seen"] == "200"
    finally:
        await ctl.stop()


async def test_session_id_reuse_rules(tmp_path: Path, redis_proc: RedisProcess) -> None:
    """When a report is a new generation and when it is the old session's (late)."""
    clock = Clock(NOON)
    ctl = Controller(city(tmp_path, redis_proc.url, extra=NO_LOOP), clock=clock)
    await ctl.start()
    try:
        pid = (await login(ctl)).person
        cls = signed_class(ctl, pid)
        assert ctl.store is not None
        store = ctl.store

        async def gen(asid: str) -> str:
            record = await store.session(pid, keys.session_id("nas-local", asid))
            return record.get("gen", "1")

        # a Start after the Stop of a session with the same id (no Accounting-On between)
        await accounting(ctl, "Start", "a", 0, cls=cls)
        clock.advance(300)
        await accounting(ctl, "Stop", "a", 300, cls=cls)
        clock.advance(60)
        await accounting(ctl, "Start", "a", 0, cls=cls)
        assert await gen("a") == "2"
        clock.advance(60)
        await accounting(ctl, "Interim-Update", "a", 60, cls=cls)
        assert await used(ctl, pid) == 360
        # after Accounting-On, an Interim (its Start lost) of a session begun later
        await accounting(ctl, "Start", "b", 0, cls=cls)
        clock.advance(300)
        await accounting(ctl, "Interim-Update", "b", 300, cls=cls)
        await accounting(ctl, "Accounting-On", "", 0, cls=None)
        clock.advance(120)
        await accounting(ctl, "Interim-Update", "b", 100, cls=cls)
        assert await gen("b") == "2" and await used(ctl, pid) == 360 + 300 + 100
        # ... but the old session's report, stored by the NAS (begun before the reboot)
        await accounting(ctl, "Stop", "b", 400, cls=cls, Acct_Delay_Time=40)
        assert await gen("b") == "2"
        # a Stop-closed session's retransmitted Stop and a reordered Interim: the same one
        await accounting(ctl, "Start", "c", 0, cls=cls)
        clock.advance(300)
        await accounting(ctl, "Stop", "c", 300, cls=cls)
        clock.advance(45)
        await accounting(ctl, "Stop", "c", 300, cls=cls)
        await accounting(ctl, "Interim-Update", "c", 240, cls=cls, Acct_Delay_Time=105)
        assert await gen("c") == "1"
        # a smaller Acct-Session-Time begun after the last report: the NAS started over
        clock.advance(600)
        await accounting(ctl, "Interim-Update", "c", 60, cls=cls)
        assert await gen("c") == "2"
        # a duplicate Start of an open session is that session
        await accounting(ctl, "Start", "d", 0, cls=cls)
        await accounting(ctl, "Start", "d", 0, cls=cls)
        assert await gen("d") == "1"
    finally:
        await ctl.stop()


# ------------------------------------- item 6: a NAS that reports less often than asked


async def test_item_06_a_nas_reporting_every_300_s_cannot_double_the_allowance(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """Asked for 60 s (the floor), a CoovaChilli-like NAS reports every 300 s. The first
    device's session looks stale before its first interim (nothing was seen of its
    cadence yet) and a second device logs in; when the first reports after all it is
    re-opened, its 300 s counted once, and both are cut together when the allowance is
    gone: no more than the allowance plus the enforcement slack (docs/enforcement.md)."""
    from tests.test_enforcer_integration import NasSpec, ended
    from tests.test_enforcer_integration import city as sim_city

    daily, speed = 600, 40.0
    slow = NasSpec("sim-a", "127.0.0.11", "chilli", honour_session_timeout=True, report_every=300)
    async with sim_city(tmp_path, redis_proc, (slow,), daily=daily, speed=speed) as c:
        (nas,) = c.sims
        pid, phone = await c.login(nas, PHONE, "02-00-00-00-0A-06")
        assert phone.interim == 300 and c.config.quota.interim_interval == 60
        await until(lambda: _closed(c, pid, nas, phone), c.real(200) + 5, "the (wrong) stale close")
        _, laptop = await c.login(nas, PHONE, "02-00-00-00-0A-07")  # the phone looks gone
        await ended(c, phone, laptop, sim_seconds=daily + 200)  # (or their Session-Timeouts)
        total = await c.used(pid)
        online = sum((s.stopped_at or 0) - s.start for s in (phone, laptop))
        print(f"\nslow NAS: counted {total} s, online {online:.1f} s of {daily} s")
        bound = 2 * (1 + 0.25 * speed)  # per device: rounding + enforcement latency
        assert total <= daily + bound and online <= daily + bound
        assert phone.cause == laptop.cause == 6  # both cut by Disconnect-Request
        record = await c.record(pid, nas, phone)
        assert record["closed"] and record["cause"] == "6" and record["shut"] == "stop"
        # the phone's cadence is known now: its grace is 2.5 x 300 s, not 2.5 x 60 s
        assert record["gap"] == "300" and record["slack"] == str(150 * (300 - 60) // 60)


async def _closed(c: Any, pid: str, sim: Any, s: Any) -> bool:
    return bool((await c.record(pid, sim, s)).get("closed"))


async def test_stale_grace_follows_the_observed_cadence(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """A session whose NAS reports every 300 s (asked for 60) stays open, counted against
    max_devices and projected, until 2.5 x 300 s after its last report; then it closes
    as stale at that report, and a report after all re-opens it."""
    clock = Clock(NOON)
    ctl = Controller(
        city(tmp_path, redis_proc.url, interim_interval="60", extra=NO_LOOP), clock=clock
    )
    await ctl.start()
    try:
        assert ctl.store is not None and ctl.enforcer is not None
        store, enforcer = ctl.store, ctl.enforcer
        issued = await login(ctl)
        pid = issued.person
        cls = signed_class(ctl, pid)
        sid = keys.session_id("nas-local", "slow")
        await accounting(ctl, "Start", "slow", 0, cls=cls)
        clock.advance(300)
        await accounting(ctl, "Interim-Update", "slow", 300, cls=cls)
        last = int(clock())
        # a second session on the same NAS, no interim of its own yet: judged on the NAS's
        await accounting(ctl, "Start", "slow2", 0, cls=cls, mac="F8-16-54-20-F4-C8")
        sid2 = keys.session_id("nas-local", "slow2")
        await until(lambda: store.cadences(), 5, "the NAS's cadence to be shared")
        clock.advance(400)  # past 2.5 x 60 s, within 2.5 x 300 s
        now = int(clock())
        assert not await enforcer.sweep_stale(now)
        assert await open_sids(ctl, pid) == {sid, sid2}
        snap = await store.person_snapshot(pid, "20251110")
        slack = quota.StaleRule(150, 60).slack(300)
        assert slack == 600 and snap.slack == {sid: slack, sid2: slack}  # 150 x 240 / 60
        state = await store.auth_state(pid, "", "F8-16-54-20-F4-C9", "20251110", now - 150)
        assert state.other_devices == 2
        assert enforcer.plan(await store.person_snapshot(pid, "20251110"), now).wake is not None
        clock.advance(351)  # 751 s after the last report
        await enforcer.sweep_stale(int(clock()))
        record = await store.session(pid, sid)
        assert record["closed"] == str(last) and record["shut"] == "stale"
        assert await open_sids(ctl, pid) == set()
        assert await used(ctl, pid) == 300
        clock.advance(149)  # the NAS reports after all: 1200 s since the Start
        await accounting(ctl, "Interim-Update", "slow", 1200, cls=cls)
        assert await open_sids(ctl, pid) == {sid}  # re-opened
        assert await used(ctl, pid) == 1200  # the 900 s since its last report, once
        assert "closed" not in await store.session(pid, sid)
        # a retransmission of that report counts nothing again
        await accounting(ctl, "Interim-Update", "slow", 1200, cls=cls)
        assert await used(ctl, pid) == 1200
    finally:
        await ctl.stop()


# -------------------------------------- item 5 (parts): Chargeable-User-Identity, Operator-Name

SECOND_OPERATOR = """
    [[operators]]
    id = "op-unicom"
    name = "中国联通"

    [[venues]]
    id = "mall"
    name = { zh = "北国商城", en = "Beiguo Mall" }
    type = "shopping_mall"
    district = "裕华区"
    operator = "op-unicom"

    [[access_points]]
    match = "AC-4E-91-0B-7F-99"
    venue = "mall"
    """


async def test_item_05_cui_on_request_and_operator_name_recorded(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """A NAS asking for a Chargeable-User-Identity (RFC 4372 §2.1: a nul value) gets the
    person's, stable across logins, different per venue operator, never derived from the
    number; Operator-Name (RFC 5580 §4.1) in accounting is kept on the session record."""
    ctl = Controller(city(tmp_path, redis_proc.url, extra=SECOND_OPERATOR))
    await ctl.start()
    try:
        assert ctl.store is not None
        cuis = []
        for called in ("", "", "AC-4E-91-0B-7F-99:i-Test"):
            issued = await login(ctl)
            kw = {"Called_Station_Id": called} if called else {}
            reply = await access(ctl, issued, Chargeable_User_Identity=b"\x00", **kw)
            assert reply.code == Code.ACCESS_ACCEPT
            cuis.append(first(reply, Attr.CHARGEABLE_USER_IDENTITY))
        pid = issued.person
        assert cuis[0] is not None and cuis[0] == cuis[1] != cuis[2]
        from controller.domain.identity import chargeable_identity

        assert cuis[0] == chargeable_identity(pid, "op-telecom", ctl.person_key)
        assert cuis[2] == chargeable_identity(pid, "op-unicom", ctl.person_key) != cuis[0]
        assert b"13800138014" not in b"".join(cuis) and len(cuis[0]) == 32
        # not asked, not sent
        plain = await access(ctl, await login(ctl))
        assert first(plain, Attr.CHARGEABLE_USER_IDENTITY) is None

        cls = signed_class(ctl, pid)
        await accounting(ctl, "Start", "op-1", 0, cls=cls, Operator_Name="1cmcc.cn")
        record = await ctl.store.session(pid, keys.session_id("nas-local", "op-1"))
        assert record["operator_name"] == "1cmcc.cn"
    finally:
        await ctl.stop()


@pytest.mark.parametrize("gap", [30, 60, 61, 119, 300, 600, 601, 5000])
async def test_lua_slack_is_the_stale_rule(redis_proc: RedisProcess, gap: int) -> None:
    """account.lua's slack for a session with one gap equals ``quota.StaleRule.slack``;
    the gap is the NAS's (its Acct-Session-Time), not how late the report arrived (here
    900 s late, as after our own downtime)."""
    from controller.domain.state import AccountingWrite, SessionFields
    from controller.storage.redis_conn import client_from_url
    from controller.storage.store import Store

    rule = quota.StaleRule(150, 60)
    store = Store(client_from_url(redis_proc.url))
    await store.load_scripts()
    try:
        pid, sid = "0123456789abcdef0123", keys.session_id("nas-local", f"g{gap}")
        t0 = int(NOON)
        for status, reported, at in ((1, 0, t0), (3, gap, t0 + gap + 900)):
            bounds = quota.DayClock(SH).boundaries(at - reported, at)
            result = await store.account(
                AccountingWrite(
                    pid=pid,
                    sid=sid,
                    client_id="nas-local",
                    status=status,
                    reported=reported,
                    event_time=at,
                    input_octets=0,
                    output_octets=0,
                    cause="",
                    boundaries=bounds,
                    session=SessionFields(pid=pid, mac=DEVICE),
                    stale=rule,
                )
            )
        assert result.gap == min(gap, rule.cap)
        assert result.snapshot is not None
        assert result.snapshot.slack.get(sid, 0) == rule.slack(gap)
    finally:
        await store.close()


def test_session_keys_of_generations() -> None:
    assert keys.session_id("ac-1", "00A1") == "ac-1/00A1"
    assert keys.session_id("ac-1", "00A1", 3) == "ac-1#3/00A1"
    assert keys.session_generation("ac-1#3/00A1", 1) == "ac-1/00A1"
    assert keys.session_generation("ac-1/x/y#2", 2) == "ac-1#2/x/y#2"  # ids may hold / and #
    assert keys.client_of("ac-1#3/a/b") == keys.client_of("ac-1/a#2/b") == "ac-1"
