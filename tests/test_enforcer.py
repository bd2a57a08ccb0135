"""The enforcer's pure core: projection, plans, DAE addressing; and its Lua against Redis."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import Client, ConfigError, load_config
from controller.domain import quota
from controller.domain.enforcement import (
    Plan,
    dae_address,
    excess_devices,
    plan_person,
    projected_exhaustion,
    session_identity,
)
from controller.domain.state import (
    AccountingWrite,
    DuePerson,
    PersonSnapshot,
    SessionFields,
    StaleCheck,
)
from controller.services.enforcer import clock_rate
from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.conftest import write_config
from tests.support.redis_proc import RedisProcess

SH = ZoneInfo("Asia/Shanghai")
NOON = int(datetime(2026, 11, 25, 12, 0, tzinfo=SH).timestamp())
MIDNIGHT = quota.next_midnight(NOON, SH)


def snap(
    *lasts: int, used: int = 0, closing: dict[str, int] | None = None, block: str = ""
) -> PersonSnapshot:
    return PersonSnapshot(
        used=used,
        open={f"nas/s{i}": (f"AA-00-00-00-00-0{i}", last) for i, last in enumerate(lasts)},
        closing=closing or {},
        block=block,
    )


def plan(s: PersonSnapshot, now: int = NOON, **kw: object) -> Plan:
    args: dict[str, object] = dict(
        now=now,
        daily=7200,
        next_midnight=MIDNIGHT,
        stale_before=now - 750,
        retry_after=300,
    )
    args.update(kw)
    return plan_person(s, **args)  # type: ignore[arg-type]


# -- projection


def test_one_session_runs_out_after_the_time_left() -> None:
    assert projected_exhaustion([NOON], 7000, 7200, MIDNIGHT) == NOON + 200


def test_two_sessions_share_what_is_left() -> None:
    # 100 s left, reports at NOON and NOON+10: each runs, together they use 2 s per second
    assert projected_exhaustion([NOON, NOON + 10], 7100, 7200, MIDNIGHT) == NOON + 55


def test_no_session_no_projection() -> None:
    assert projected_exhaustion([], 0, 7200, MIDNIGHT) is None


def test_past_midnight_the_new_day_allowance_counts() -> None:
    late = MIDNIGHT - 600
    assert projected_exhaustion([late], 0, 7200, MIDNIGHT) == MIDNIGHT + 7200
    assert projected_exhaustion([late, late], 0, 7200, MIDNIGHT) == MIDNIGHT + 3600


@given(
    lasts=st.lists(st.integers(NOON - 3000, NOON), min_size=1, max_size=5),
    used=st.integers(0, 9000),
    daily=st.integers(1, 7200),
)
def test_projection_is_the_first_second_the_allowance_is_reached(
    lasts: list[int], used: int, daily: int
) -> None:
    due = projected_exhaustion(lasts, used, daily, MIDNIGHT)
    assert due is not None and due < MIDNIGHT

    def usage(t: int) -> int:
        return used + sum(t - last for last in lasts)

    assert usage(due) >= daily
    assert usage(due - 1) < daily


# -- plans


def test_not_due_yet_wakes_at_the_projection() -> None:
    p = plan(snap(NOON, NOON, used=7000))
    assert p == Plan((), NOON + 100, "quota")
    assert p.index_at(NOON) == NOON + 100


def test_due_disconnects_every_open_session_and_looks_again() -> None:
    p = plan(snap(NOON - 100, NOON - 5, used=7200))
    assert p.disconnect == ("nas/s0", "nas/s1")
    assert p.wake == NOON + 300 and p.index_at(NOON) == NOON


def test_nothing_open_nothing_to_do() -> None:
    assert plan(snap(used=9999)) == Plan((), None, "quota")


def test_acknowledged_sessions_are_not_asked_again_before_the_retry_time() -> None:
    s = snap(NOON - 10, NOON - 10, used=7200, closing={"nas/s0": NOON - 20})
    p = plan(s)
    assert p.disconnect == ("nas/s1",)
    assert p.wake == NOON - 20 + 300  # the closing session's retry comes first
    only_closing = plan(snap(NOON - 10, used=7200, closing={"nas/s0": NOON - 20}))
    assert only_closing.disconnect == () and only_closing.wake == NOON + 280
    assert only_closing.index_at(NOON) == NOON + 280
    again = plan(snap(NOON - 10, used=7200, closing={"nas/s0": NOON - 400}))
    assert again.disconnect == ("nas/s0",)


def test_stale_sessions_do_not_drain_but_are_cut_with_the_rest() -> None:
    # s0 reported 1000 s ago (stale): only s1 runs, 100 s left
    s = snap(NOON - 1000, NOON, used=7100)
    assert plan(s).wake == NOON + 100
    assert plan(s, now=NOON + 100).disconnect == ("nas/s0", "nas/s1")
    assert plan(snap(NOON - 1000, used=7100)) == Plan((), None, "quota")  # the sweep's


def test_a_block_cuts_at_once_and_admin_force_ignores_closing_marks() -> None:
    s = snap(NOON, used=0, block="0|abuse", closing={"nas/s0": NOON - 5})
    blocked = plan(s)
    assert blocked.reason == "blocked" and blocked.disconnect == ()
    assert plan(s, force=True).disconnect == ("nas/s0",)
    assert plan(snap(NOON, block="0|x")).disconnect == ("nas/s0",)


# -- the device limit (finding 9: more devices open than max_devices)


def test_devices_beyond_the_limit_are_cut_newest_first() -> None:
    s = snap(NOON - 10, NOON - 10, NOON - 10, used=0)
    starts = {"nas/s0": NOON - 900, "nas/s1": NOON - 300, "nas/s2": NOON - 600}
    p = plan(s, max_devices=2, starts=starts)
    assert p.disconnect == ("nas/s1",) and p.reason == "device_limit"
    assert p.wake == NOON + 300  # look again one retry later (the Stop should be in)
    assert plan(s, max_devices=1, starts=starts).disconnect == ("nas/s1", "nas/s2")
    assert plan(s, max_devices=3, starts=starts).disconnect == ()  # within the limit
    assert plan(s, starts=starts).disconnect == ()  # 0: no limit (the default)


def test_device_limit_counts_devices_not_sessions_and_only_running_ones() -> None:
    same = PersonSnapshot(
        used=0,
        open={"a/1": ("AA-01", NOON), "b/1": ("AA-01", NOON), "a/2": ("AA-02", NOON)},
        closing={},
        block="",
    )
    assert excess_devices(same, max_devices=2, stale_before=NOON - 750, starts={}) == ()
    stale = snap(NOON - 1000, NOON, NOON, used=0)  # s0 is left to the stale sweep
    assert plan(stale, max_devices=2).disconnect == ()
    no_mac = PersonSnapshot(
        used=0, open={"a/1": ("", NOON), "a/2": ("", NOON), "a/3": ("", NOON)}, closing={}, block=""
    )
    starts = {"a/1": 1, "a/2": 3, "a/3": 2}
    assert excess_devices(no_mac, max_devices=2, stale_before=0, starts=starts) == ("a/2",)


def test_device_limit_waits_for_an_acknowledged_cut_and_keeps_the_quota_projection() -> None:
    s = snap(NOON, NOON, NOON, used=7000, closing={"nas/s2": NOON - 10})
    starts = {"nas/s0": 1, "nas/s1": 2, "nas/s2": 3}
    p = plan(s, max_devices=2, starts=starts)
    assert p.disconnect == () and p.wake == NOON + 67  # the quota runs out before the retry
    assert plan(s, now=NOON, max_devices=2, starts=starts).index_at(NOON) == NOON + 67
    unknown = plan(snap(NOON, NOON, NOON), max_devices=2)  # from the accounting hook
    assert unknown.disconnect and unknown.index_at(NOON) == NOON


# -- addressing the NAS


def client(address: str, vendor: str = "generic") -> Client:
    return Client(
        id="c", network=ipaddress.ip_network(address), secret=b"s", venue="v", vendor=vendor
    )


def test_dae_address_of_a_host_client_is_its_address() -> None:
    assert dae_address(client("10.0.0.7/32"), {"nas_ip": "192.168.1.1"}) == "10.0.0.7"


def test_dae_address_of_a_network_client_prefers_nas_ip_inside_it() -> None:
    net = client("10.0.0.0/24")
    assert dae_address(net, {"nas_ip": "10.0.0.9", "nas_src": "10.0.0.8"}) == "10.0.0.9"
    # a NAS-IP-Address outside the network (NAT, private): where the packets came from
    assert dae_address(net, {"nas_ip": "192.168.1.1", "nas_src": "10.0.0.8"}) == "10.0.0.8"
    assert dae_address(net, {}) is None


def test_session_identity_echoes_what_the_nas_sent() -> None:
    ident = session_identity(
        {
            "acct_session_id": "abc",
            "user": "u",
            "mac": "AA-BB-CC-DD-EE-FF",
            "calling": "aa:bb:cc:dd:ee:ff",
            "nas_ip": "10.0.0.1",
            "nas_id": "ac-1",
            "ip": "10.1.0.2",
        }
    )
    assert ident.calling_station_id == "aa:bb:cc:dd:ee:ff"
    assert (ident.acct_session_id, ident.user_name, ident.nas_identifier) == ("abc", "u", "ac-1")
    assert session_identity({"mac": "AA-BB-CC-DD-EE-FF"}).calling_station_id == (
        "AA-BB-CC-DD-EE-FF"
    )


def test_clock_rate() -> None:
    class Fast:
        rate = 10.0

        def __call__(self) -> float:
            return 0.0

    assert clock_rate(lambda: 0.0) == 1.0
    assert clock_rate(Fast()) == 10.0


# -- config


def test_enforcer_config_defaults_and_overrides(tmp_path: object) -> None:
    from pathlib import Path

    d = Path(str(tmp_path))
    cfg = load_config(write_config(d, "redis://127.0.0.1:1/0"))
    assert cfg.enforcer.enabled and cfg.enforcer.lease == 60.0
    cfg = load_config(
        write_config(
            d,
            "redis://127.0.0.1:1/0",
            extra="""
            [enforcer]
            enabled = false
            disconnect_timeout = 0.5
            disconnect_retries = 1
            lease = 2
            sweep_interval = 1
            coa_on_new_session = true
            """,
        )
    )
    e = cfg.enforcer
    assert (e.enabled, e.disconnect_timeout, e.disconnect_retries, e.lease) == (False, 0.5, 1, 2)
    assert e.coa_on_new_session and e.sweep_interval == 1.0


def test_a_lease_shorter_than_one_exchange_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    path = write_config(
        Path(str(tmp_path)),
        "redis://127.0.0.1:1/0",
        extra="""
        [enforcer]
        disconnect_timeout = 2.0
        disconnect_retries = 3
        lease = 10
        lease_seconds = 1
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "enforcer.lease: must be longer than one disconnect exchange (22 s" in text
    assert "enforcer.lease_seconds: unknown key" in text


# -- the Lua side of the snapshot, against a real redis-server


async def test_snapshot_after_accounting_matches_a_fresh_read(redis_proc: RedisProcess) -> None:
    store = Store(client_from_url(redis_proc.url))
    await store.load_scripts()
    try:
        pid = "0123456789abcdef0123"
        day = quota.local_day(NOON, SH)
        bounds = [(e, quota.day_key(d)) for e, d in quota.day_boundaries(NOON - 60, NOON, SH)]
        result = await store.account(
            AccountingWrite(
                pid=pid,
                sid="nas/a1",
                client_id="nas",
                status=3,
                reported=60,
                event_time=NOON,
                input_octets=0,
                output_octets=0,
                cause="",
                boundaries=bounds,
                session=SessionFields(mac="AA-00-00-00-00-01", client="nas"),
            )
        )
        assert result.snapshot == PersonSnapshot(
            60, {"nas/a1": ("AA-00-00-00-00-01", NOON)}, {}, ""
        )
        assert await store.mark_closing(pid, "nas/a1", NOON + 5)
        assert not await store.mark_closing(pid, "nas/gone", NOON + 5)
        await store.set_block(pid, "0|test", 60)
        fresh = await store.person_snapshot(pid, quota.day_key(day))
        assert fresh.closing == {"nas/a1": NOON + 5} and fresh.block == "0|test"
        assert (await store.session(pid, "nas/a1"))["closing"] == str(NOON + 5)
        # stale close only when still stale, at the last report
        fresh, closed, gone = (
            StaleCheck("fresh", NOON),
            StaleCheck("closed", NOON),
            StaleCheck("gone", 0),
        )
        assert await store.close_stale(pid, "nas/a1", "nas", NOON - 1, "3") == fresh
        assert await store.close_stale(pid, "nas/a1", "nas", NOON + 1, "3") == closed
        assert await store.close_stale(pid, "nas/a1", "nas", NOON + 1, "3") == gone
        record = await store.session(pid, "nas/a1")
        assert record["closed"] == str(NOON) and record["cause"] == "3"
        assert await store.redis.zscore(keys.OPEN_INDEX, keys.session_ref(pid, "nas/a1")) is None
        assert (await store.person_snapshot(pid, quota.day_key(day))).closing == {}
    finally:
        await store.close()


async def test_due_index_moves_earlier_from_accounting_and_later_only_by_cas(
    redis_proc: RedisProcess,
) -> None:
    store = Store(client_from_url(redis_proc.url))
    await store.load_scripts()
    try:
        await store.index_due({"p1": 100})
        await store.index_due({"p1": 200})  # LT: later is ignored
        assert await store.due_persons(1000, 10) == [DuePerson("p1", 100.0)]
        await store.index_due({"p1": 50})
        assert not await store.reindex_due("p1", 100.0, 500)  # moved meanwhile: left alone
        assert await store.reindex_due("p1", 50.0, 500)
        assert await store.due_persons(1000, 10) == [DuePerson("p1", 500.0)]
        assert await store.reindex_due("p1", 500.0, None)
        assert await store.due_persons(1000, 10) == []
        assert await store.acquire_lease("p1", "a", 5000)
        assert not await store.acquire_lease("p1", "b", 5000)
        await store.release_lease("p1", "b")  # not the holder: nothing happens
        assert not await store.acquire_lease("p1", "b", 5000)
        await store.release_lease("p1", "a")
        assert await store.acquire_lease("p1", "b", 5000)
    finally:
        await store.close()
