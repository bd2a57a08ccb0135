"""The quota enforcer end to end: real redis-server, real UDP, simulated NASes (bench.nas_sim).

Time runs ``SPEED`` times faster than real time: the controllers and the simulators share
one ``SimClock``, so a 60 s interim interval (the RFC 2869 floor) passes in 3 real seconds
and every figure below (usage, overshoot, grace) is in simulated seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bench.nas_sim import NasSimulator, SimClock, SimSession
from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.domain import quota
from controller.services.logins import issue_login
from controller.storage import keys
from controller.storage.store import Store
from radius.attrs import TerminateCause
from tests.conftest import write_config
from tests.support.redis_proc import RedisProcess, until
from tests.support.redis_topologies import Cluster

SPEED = 20.0
INTERIM = 60
DAILY = 120
DISCONNECT_TIMEOUT = 0.1  # real seconds
RETRIES = 2


@dataclass(frozen=True)
class NasSpec:
    id: str
    address: str
    vendor: str = "chilli"
    dae_mode: str = "ack"
    honour_session_timeout: bool = False  # one device: Session-Timeout would end it anyway
    report_every: int | None = None  # reports at its own cadence, not the one asked for


NAS_A = NasSpec("sim-a", "127.0.0.11", "chilli", honour_session_timeout=True)
NAS_B = NasSpec("sim-b", "127.0.0.12", "generic", honour_session_timeout=True)
LAX_B = NasSpec("sim-b", "127.0.0.12", "generic")  # ignores Session-Timeout


@dataclass
class City:
    config: Config
    clock: SimClock
    sims: list[NasSimulator]
    controllers: list[Controller]

    @property
    def ctl(self) -> Controller:
        return self.controllers[0]

    def real(self, sim_seconds: float) -> float:
        return self.clock.real(sim_seconds)

    async def try_login(
        self, sim: NasSimulator, phone: str, mac: str
    ) -> tuple[str, SimSession | None]:
        store = self.ctl.store
        assert store is not None
        issued = await issue_login(
            store,
            phone_e164=phone,
            mac="",
            client_id=sim.nas_identifier,  # the simulators' NAS-Identifier is their client id
            person_key=self.ctl.person_key,
            ttl=300,
            now=int(self.clock()),
        )
        return issued.person, await sim.login(issued.username, issued.password, mac=mac)

    async def login(self, sim: NasSimulator, phone: str, mac: str) -> tuple[str, SimSession]:
        pid, session = await self.try_login(sim, phone, mac)
        assert session is not None, sim.events[-1]
        return pid, session

    async def used(self, pid: str) -> int:
        assert self.ctl.store is not None
        day = quota.day_key(quota.local_day(int(self.clock()), self.config.quota.timezone))
        return await self.ctl.store.used_on(pid, day)

    async def record(self, pid: str, sim: NasSimulator, s: SimSession) -> dict[str, str]:
        assert self.ctl.store is not None
        return await self.ctl.store.session(
            pid, keys.session_id(sim.nas_identifier, s.acct_session_id)
        )


@contextlib.asynccontextmanager
async def city(
    tmp_path: Path,
    redis: RedisProcess | Cluster,
    nas: Sequence[NasSpec] = (NAS_A, NAS_B),
    *,
    daily: int = DAILY,
    controllers: int = 1,
    quota_extra: str = "",
    enforcer_extra: str = "",
    tables: str = "",
    speed: float = SPEED,
) -> AsyncIterator[City]:
    clock = SimClock(speed)
    sims = [
        NasSimulator(
            f"{spec.id}-secret".encode(),
            bind=spec.address,
            nas_identifier=spec.id,
            clock=clock,
            vendor=spec.vendor,
            dae_mode=spec.dae_mode,
            honour_session_timeout=spec.honour_session_timeout,
            report_every=spec.report_every,
            request_timeout=0.5,
            request_retries=4,
        )
        for spec in nas
    ]
    for sim in sims:
        await sim.start()
    clients = "".join(
        f"""
        [[clients]]
        id = "{spec.id}"
        address = "{spec.address}"
        secret = "{spec.id}-secret"
        venue = "station"
        vendor = "{spec.vendor}"
        coa_port = {sim.dae_port}
        """
        for spec, sim in zip(nas, sims, strict=True)
    )
    extra = f"""
        [enforcer]
        disconnect_timeout = {DISCONNECT_TIMEOUT}
        disconnect_retries = {RETRIES}
        lease = 5
        sweep_interval = 0.2
        {textwrap.dedent(enforcer_extra)}
        {clients}
        {textwrap.dedent(tables)}
        """
    config = load_config(
        write_config(
            tmp_path,
            redis.url,
            daily_seconds=str(daily),
            interim_interval=str(INTERIM),
            quota=f"idle_timeout = 0\n{quota_extra}",
            extra=extra,
        )
    )
    ctls = [Controller(config, clock=clock) for _ in range(controllers)]
    try:
        for ctl in ctls:
            await ctl.start()
        for i, sim in enumerate(sims):
            ctl = ctls[i % len(ctls)]
            sim.attach(("127.0.0.1", ctl.auth_port), ("127.0.0.1", ctl.acct_port))
        yield City(config, clock, sims, ctls)
    finally:
        for sim in sims:
            await sim.stop()
        for ctl in ctls:
            await ctl.stop()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def ended(c: City, *sessions: SimSession, sim_seconds: float) -> None:
    await asyncio.wait_for(
        asyncio.gather(*(s.done.wait() for s in sessions)), c.real(sim_seconds) + 5
    )


async def test_two_devices_on_two_nas_are_both_cut_with_a_bounded_overshoot(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(tmp_path, redis_proc) as c:
        a, b = c.sims
        pid, phone = await c.login(a, "+8613800138001", "02-00-00-00-0A-01")
        await asyncio.sleep(c.real(10))  # simulated time passing, not a wait for an event
        pid_b, laptop = await c.login(b, "+8613800138001", "02-00-00-00-0B-01")
        assert pid_b == pid
        # one allowance, two devices: together they get DAILY seconds (~65 s from login)
        await ended(c, phone, laptop, sim_seconds=DAILY)
        used = await c.used(pid)
        overshoot = used - DAILY  # as counted from the NASes' Acct-Session-Time
        online = sum((s.stopped_at or 0) - s.start for s in (phone, laptop))
        print(
            f"\novershoot: counted {overshoot:+d} s, actually online {online - DAILY:+.2f} s "
            f"beyond the {DAILY} s allowance over 2 devices (phone {phone.reported} s, "
            f"laptop {laptop.reported} s; interim {INTERIM} s, speed x{SPEED:g})"
        )
        assert online - DAILY <= 2 * 0.15 * SPEED + 2
        for sim, s in ((a, phone), (b, laptop)):
            assert s.cause == TerminateCause.ADMIN_RESET, s.cause  # cut by Disconnect-Request
            assert s.disconnect_requests == 1
            record = await c.record(pid, sim, s)
            assert record["closed"] and record["cause"] == str(int(TerminateCause.ADMIN_RESET))
        # bound: per device 1 s of rounding plus the enforcement latency (timer, lease,
        # DAE round trip; <0.15 real s here) -- far inside one interim interval
        assert -2 <= overshoot <= 2 * (1 + 0.15 * SPEED), overshoot
        assert overshoot < INTERIM
        # a new login gets what the truncated Acct-Session-Times left, or is rejected when
        # that is less than the minimum grant
        _, again = await c.try_login(a, "+8613800138001", "02-00-00-00-0A-11")
        if used >= c.config.quota.used_up_seconds:
            assert again is None and "used up" in a.events[-1]["message"]
        else:
            assert again is not None and again.session_timeout == DAILY - used


async def test_nak_503_closes_a_session_the_nas_forgot(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(tmp_path, redis_proc, (LAX_B,), daily=2 * INTERIM) as c:
        (b,) = c.sims
        pid, s = await c.login(b, "+8613800138002", "02-00-00-00-0B-02")
        await until(lambda: s.interims >= 1, c.real(INTERIM) + 5, "the first interim")
        b.forget(s)  # no Stop, no more interims: the NAS lost it
        before = metric("citywifi_enforcer_disconnects_total", reason="quota", result="closed")
        # due at the last report (60 s) + 60 s left; the NAK 503 closes it long before
        # the stale grace (150 s) would
        await until(
            lambda: _closed(c, pid, b, s), c.real(INTERIM + 10) + 5, "the close after NAK 503"
        )
        record = await c.record(pid, b, s)
        assert record["cause"] == "3" and record["closed"] == record["last"]
        assert await c.used(pid) == INTERIM  # counted to the last report
        assert b.dae_requests == 1
        assert (
            metric("citywifi_enforcer_disconnects_total", reason="quota", result="closed")
            == before + 1
        )


async def test_no_answer_retries_with_backoff_gives_up_and_tries_again_later(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    silent = NasSpec("sim-b", "127.0.0.12", "generic", dae_mode="silent")  # ignores timeout
    async with city(tmp_path, redis_proc, (silent,), daily=40) as c:
        (b,) = c.sims
        before = metric("citywifi_dae_results_total", kind="disconnect", result="failed")
        pid, s = await c.login(b, "+8613800138003", "02-00-00-00-0B-03")
        await until(
            lambda: b.dae_datagrams >= RETRIES + 1,
            c.real(40) + 5,
            "the disconnect attempts",
        )
        await until(
            lambda: _true(
                metric("citywifi_dae_results_total", kind="disconnect", result="failed")
                >= before + 1
            ),
            5,
            "giving up",
        )
        assert b.dae_requests == 1 and b.dae_datagrams == RETRIES + 1  # one request, resent
        assert s.running and "closing" not in await c.record(pid, b, s)
        # the NAS answers again: the next attempt (one interim later) ends the session
        b.dae_mode = "ack"
        await ended(c, s, sim_seconds=2 * INTERIM)
        assert s.cause == TerminateCause.ADMIN_RESET and b.dae_requests == 2


async def test_a_bad_response_authenticator_is_ignored(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    forger = NasSpec("sim-b", "127.0.0.12", "generic", dae_mode="bad_authenticator")
    async with city(tmp_path, redis_proc, (forger,), daily=40) as c:
        (b,) = c.sims
        bad = metric("citywifi_dae_bad_replies_total", reason="bad_response_authenticator")
        failed = metric("citywifi_enforcer_disconnects_total", reason="quota", result="failed")
        pid, s = await c.login(b, "+8613800138004", "02-00-00-00-0B-04")
        await until(
            lambda: _true(
                metric("citywifi_enforcer_disconnects_total", reason="quota", result="failed")
                >= failed + 1
            ),
            c.real(40) + 5,
            "the failed disconnect",
        )
        # the NAS did end the session on the request, but its answers were not believed
        assert (
            metric("citywifi_dae_bad_replies_total", reason="bad_response_authenticator")
            >= bad + RETRIES + 1
        )
        assert "closing" not in await c.record(pid, b, s)


async def test_a_nas_that_is_gone_fails_then_its_session_goes_stale(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(
        tmp_path, redis_proc, (LAX_B,), daily=INTERIM + 15, quota_extra="stale_grace = 80"
    ) as c:
        (b,) = c.sims
        failed = metric("citywifi_enforcer_disconnects_total", reason="quota", result="failed")
        stale = metric("citywifi_enforcer_stale_closed_total")
        pid, s = await c.login(b, "+8613800138005", "02-00-00-00-0B-05")
        await until(lambda: s.interims >= 1, c.real(INTERIM) + 5, "the first interim")
        await b.stop()  # power cut: no Stop, DAE port closed
        await until(
            lambda: _true(
                metric("citywifi_enforcer_disconnects_total", reason="quota", result="failed")
                >= failed + 1
            ),
            c.real(30) + 5,
            "the failed disconnect",
        )
        await until(lambda: _closed(c, pid, b, s), c.real(100) + 5, "the stale close")
        record = await c.record(pid, b, s)
        assert record["cause"] == "3" and record["closed"] == record["last"]
        assert await c.used(pid) == INTERIM
        # the counter is incremented after the close is in Redis: poll, then check exactly once
        await until(
            lambda: _true(metric("citywifi_enforcer_stale_closed_total") >= stale + 1),
            5,
            "the stale-close counter",
        )
        assert metric("citywifi_enforcer_stale_closed_total") == stale + 1


async def test_stale_session_is_closed_after_the_grace_counted_to_its_last_report(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(
        tmp_path, redis_proc, (NAS_A,), daily=7200, quota_extra="stale_grace = 80"
    ) as c:
        (a,) = c.sims
        pid, s = await c.login(a, "+8613800138006", "02-00-00-00-0A-06")
        await until(lambda: s.interims >= 1, c.real(INTERIM) + 5, "an interim")
        a.forget(s)
        lost_at = c.clock()
        await until(lambda: _closed(c, pid, a, s), c.real(100) + 5, "the stale close")
        closed_after = c.clock() - lost_at
        record = await c.record(pid, a, s)
        assert record["cause"] == str(int(TerminateCause.LOST_SERVICE))
        assert record["closed"] == record["last"]
        assert await c.used(pid) == INTERIM  # nothing counted after the last report
        # closed once the grace after the last report has passed (plus one sweep)
        last = int(record["last"])
        assert lost_at - last <= INTERIM + 1
        assert closed_after <= 80 + 0.2 * SPEED + 2
        assert a.dae_requests == 0  # plenty of time left: nothing to disconnect


async def test_two_controllers_disconnect_each_due_session_exactly_once(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(tmp_path, redis_proc, controllers=2) as c:
        a, b = c.sims  # a talks to controller 1, b to controller 2
        sessions: list[SimSession] = []
        for i in range(3):
            phone = f"+86138001390{i:02d}"
            _, s1 = await c.login(a, phone, f"02-00-00-00-1A-{i:02X}")
            _, s2 = await c.login(b, phone, f"02-00-00-00-1B-{i:02X}")
            sessions += [s1, s2]
        await ended(c, *sessions, sim_seconds=DAILY)
        assert [s.disconnect_requests for s in sessions] == [1] * 6
        assert a.dae_requests + b.dae_requests == 6
        assert all(s.cause == TerminateCause.ADMIN_RESET for s in sessions)


async def test_a_restart_neither_storms_nor_forgets(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """A NAS that ACKs but keeps the session: after a controller restart nothing is re-sent
    until one interim after the ACK; then it is asked once more."""
    buggy = NasSpec("sim-b", "127.0.0.12", "generic", dae_mode="ack_only")
    async with city(tmp_path, redis_proc, (buggy,), daily=40) as c:
        (b,) = c.sims
        _pid, _s = await c.login(b, "+8613800138007", "02-00-00-00-0B-07")
        await until(lambda: b.dae_requests >= 1, c.real(40) + 5, "the first disconnect")
        acked_at = c.clock()
        store = c.controllers[0].store
        assert store is not None
        # stop only once the ACK is recorded: a stop cancels a Disconnect still in flight
        await until(lambda: _acked(store, _pid), 5, "the ACK to be recorded")
        await c.controllers[0].stop()
        ctl = Controller(c.config, clock=c.clock)
        await ctl.start()
        c.controllers[0] = ctl
        b.attach(("127.0.0.1", ctl.auth_port), ("127.0.0.1", ctl.acct_port))
        await asyncio.sleep(c.real(INTERIM / 2))  # a negative check: nothing may happen
        assert b.dae_requests == 1, "re-sent before the retry time"
        await until(lambda: b.dae_requests >= 2, c.real(INTERIM) + 5, "the second ask")
        assert c.clock() - acked_at >= INTERIM - 1
        assert b.dae_requests == 2


async def test_coa_on_a_new_session_shortens_every_session_timeout(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(
        tmp_path, redis_proc, daily=600, enforcer_extra="coa_on_new_session = true"
    ) as c:
        a, b = c.sims
        _, s1 = await c.login(a, "+8613800138008", "02-00-00-00-0A-08")
        assert s1.session_timeout == 600
        await asyncio.sleep(c.real(20))  # simulated time passing between the two logins
        _, s2 = await c.login(b, "+8613800138008", "02-00-00-00-0B-08")
        await until(lambda: s1.coa_requests >= 1 and s2.coa_requests >= 1, 5, "the CoA-Requests")
        assert s1.session_timeout is not None and s2.session_timeout is not None
        end1, end2 = s1.start + s1.session_timeout, s2.start + s2.session_timeout
        assert abs(end1 - end2) <= 2  # both end together, when the allowance is shared out
        assert s1.session_timeout < 600 - 20


async def test_accounting_on_closes_sessions_and_nothing_is_sent(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with city(tmp_path, redis_proc, (NAS_B,), daily=40) as c:
        (b,) = c.sims
        pid, _s = await c.login(b, "+8613800138009", "02-00-00-00-0B-09")
        assert await b.accounting_on()  # the NAS rebooted: every session of it is over
        assert c.ctl.store is not None
        assert await c.ctl.store.open_sessions(pid) == {}
        # the person's due entry goes when it comes up, without a Disconnect-Request
        await until(lambda: _gone_from_index(c, pid), c.real(40) + 5, "the due entry to be dropped")
        assert b.dae_requests == 0


async def _true(value: bool) -> bool:
    return value


async def _acked(store: Store, pid: str) -> bool:
    return bool(await store.redis.hlen(keys.closing(pid)))


async def _closed(c: City, pid: str, sim: NasSimulator, s: SimSession) -> bool:
    return bool((await c.record(pid, sim, s)).get("closed"))


async def _gone_from_index(c: City, pid: str) -> bool:
    assert c.ctl.store is not None
    return await c.ctl.store.redis.zscore(keys.DUE_INDEX, pid) is None


@pytest.mark.redis_topology
async def test_on_a_redis_cluster_two_controllers_cut_both_devices_once(tmp_path: Path) -> None:
    """Person keys on their slot, the due index on its own: the same on Redis Cluster."""
    cluster = Cluster(tmp_path / "cluster")
    await asyncio.to_thread(cluster.start)
    try:
        async with city(tmp_path, cluster, controllers=2) as c:
            a, b = c.sims
            pid, phone = await c.login(a, "+8613800138010", "02-00-00-00-0A-10")
            _, laptop = await c.login(b, "+8613800138010", "02-00-00-00-0B-10")
            await ended(c, phone, laptop, sim_seconds=DAILY)
            assert (phone.disconnect_requests, laptop.disconnect_requests) == (1, 1)
            assert phone.cause == laptop.cause == TerminateCause.ADMIN_RESET
            assert -2 <= await c.used(pid) - DAILY <= 2 * (1 + 0.15 * SPEED)
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_stop_is_not_lost_when_the_enforcer_is_woken_at_the_same_moment(
    config: Config,
) -> None:
    """Regression: a cancel that landed while the enforcer's tick awaited Redis was
    swallowed, the loop went back to sleep and stop() waited for it for ever (a hung
    shutdown, seen as hung test teardowns)."""
    for _ in range(3):
        ctl = Controller(config)
        await ctl.start()
        assert ctl.enforcer is not None
        await asyncio.sleep(0)  # the enforcer's loop is asleep, waiting for news
        ctl.enforcer._wake.set()  # news arrives in the same tick as the stop
        stopping = asyncio.ensure_future(ctl.stop())
        done, _ = await asyncio.wait([stopping], timeout=10)
        assert done, "stop() hung"
