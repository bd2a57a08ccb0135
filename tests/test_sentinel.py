"""A Sentinel-managed primary fails over during accounting traffic.

Real processes on loopback: a primary, one replica, three sentinels (quorum 2). An
in-process ``Controller`` reaches Redis through ``redis+sentinel://``; NAS-like tasks
send Interim-Updates and retransmit until answered. After ``SENTINEL FAILOVER`` the
server answers again without a restart. What an acknowledged record can lose depends on
the replication setting, and both settings are pinned down here:

- ``wait_replicas=1``: nothing acknowledged is lost (each write is on the replica
  before the NAS is answered); the price is no answers while the new primary has no
  replica (here: until sentinel turns the old primary into one, ~10 s).
- default (asynchronous replication): answers resume within about a second, but writes
  acknowledged in the failover window can be lost; cumulative Acct-Session-Time makes
  the usage counters whole again with each session's next report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from controller.cli.serve import Controller
from controller.config import load_config
from controller.services.logins import IssuedLogin
from controller.storage import keys
from controller.storage.redis_conn import ManagedRedis
from radius.attrs import Code
from tests.conftest import write_config
from tests.support.portal_kit import running_portal
from tests.support.redis_proc import until, wait_until
from tests.support.redis_topologies import Node, SentinelSet
from tests.test_portal_ratelimit import admit_like_the_model
from tests.test_radius_integration import client, login

pytestmark = pytest.mark.redis_topology

SESSIONS = 6
STEP = 1  # second of Acct-Session-Time per report: stays far below the daily allowance
PACE = 0.005  # seconds between a NAS's reports


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    s = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    try:
        s.start()
        yield s
    finally:
        s.stop()


@dataclass
class Nas:
    """One session's NAS: reports a growing Acct-Session-Time, retransmits until answered."""

    issued: IssuedLogin
    sid: str
    acked: int = 0  # highest Acct-Session-Time that got an Accounting-Response
    acked_at: list[float] = field(default_factory=list)
    unanswered: int = 0

    async def run(self, ctl: Controller, stop: asyncio.Event) -> None:
        sending = STEP
        while not stop.is_set():
            async with client(ctl, acct=True) as c:
                req = c.acct_request(
                    Acct_Status_Type="Interim-Update",
                    Acct_Session_Id=self.sid,
                    Acct_Session_Time=sending,
                    User_Name=self.issued.username,
                )
                reply = await c.request(req, timeout=0.7)
            if reply is not None and reply.code == Code.ACCOUNTING_RESPONSE:
                self.acked = sending
                self.acked_at.append(time.monotonic())
                sending += STEP
                await asyncio.sleep(PACE)
            else:
                self.unanswered += 1


def stored_used(node: Node, nas: Nas) -> int:
    """The person's usage today as held by ``node`` (one session per person here)."""
    day = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    with node.client() as c:
        return int(c.get(keys.day_usage(nas.issued.person, day)) or 0)


def stored_seen(node: Node, nas: Nas) -> int:
    """The session's highest Acct-Session-Time as held by ``node`` (read directly)."""
    with node.client() as c:
        value = c.hget(keys.session(nas.issued.person, f"nas-local/{nas.sid}"), "seen")
    return int(value or 0)


@asynccontextmanager
async def traffic(sentinels: SentinelSet, tmp_path: Path, query: str) -> AsyncIterator[Run]:
    """A controller on the sentinel set and NASes reporting to it, stopped however it ends."""
    await asyncio.to_thread(wait_until, sentinels.healthy, 30, 0.1, "a healthy sentinel set")
    ctl = Controller(load_config(write_config(tmp_path, sentinels.url(query))))
    await ctl.start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        assert ctl.store is not None and isinstance(ctl.store.redis, ManagedRedis)
        nases = [
            Nas(await login(ctl, phone=f"+86139{len(query):02d}{i:04d}"), f"fo{i}")
            for i in range(SESSIONS)
        ]
        tasks = [asyncio.ensure_future(n.run(ctl, stop)) for n in nases]
        run = Run(ctl, ctl.store.redis, nases)
        await run.answered_after(time.monotonic(), 3)  # traffic flows before the failover
        yield run
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctl.stop()


@dataclass
class Run:
    ctl: Controller
    client: ManagedRedis
    nases: list[Nas]

    async def answered_after(self, since: float, count: int, timeout: float = 40) -> float:
        """Wait until every NAS got ``count`` answers after ``since``; return the first's delay."""
        await until(
            lambda: all(sum(t > since for t in n.acked_at) >= count for n in self.nases),
            timeout,
            "answers from every NAS",
        )
        return min(min(t for t in n.acked_at if t > since) for n in self.nases) - since

    def acked(self) -> dict[str, int]:
        return {n.sid: n.acked for n in self.nases}


async def test_failover_with_wait_replicas_loses_no_acknowledged_record(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    async with traffic(sentinels, tmp_path, "wait_replicas=1&wait_timeout_ms=300") as run:
        new = await asyncio.to_thread(sentinels.failover)
        switched = time.monotonic()
        acked = run.acked()
        # read the promoted node directly: it has everything acknowledged so far
        for nas in run.nases:
            assert stored_seen(new, nas) >= acked[nas.sid], nas.sid
        resumed = await run.answered_after(switched, 2)
        assert resumed < 30, f"answers resumed only {resumed:.1f}s after the switch"
    for nas in run.nases:  # and everything acknowledged until the end
        assert stored_seen(new, nas) == stored_used(new, nas) == nas.acked
    assert all(n.unanswered > 0 for n in run.nases)  # the price: a pause in answers


async def test_failover_with_async_replication_answers_again_and_usage_heals(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    async with traffic(sentinels, tmp_path, "") as run:
        new = await asyncio.to_thread(sentinels.failover)
        # the client follows the sentinels within a poll interval (not at its next connect)
        await asyncio.to_thread(
            wait_until,
            lambda: run.client.connection_pool.master_address == ("127.0.0.1", new.port),  # type: ignore[attr-defined]
            5,
            0.02,
            "the client to follow the new primary",
        )
        followed = time.monotonic()
        await run.answered_after(followed, 2, timeout=10)
    for nas in run.nases:  # whatever the window lost, the next reports made it whole
        assert stored_seen(new, nas) == stored_used(new, nas) == nas.acked


async def test_portal_login_through_sentinel(tmp_path: Path, sentinels: SentinelSet) -> None:
    """The portal's calls through Sentinel's primary (the batched link's PipelineLink):
    every rate limit of a request in one script call, the code, the credential and the
    device token, as on one Redis."""
    async with running_portal(tmp_path, sentinels.url()) as rig:
        assert rig.ctl.store is not None
        assert await admit_like_the_model(rig.ctl.store, 6614) > 20
        body = {"phone": "13800138093", "nas_id": "nas-local", "mac": "AA-BB-CC-00-93-01"}
        assert (await rig.post_json("/api/v1/otp", body))[0] == 202
        code = rig.code("+8613800138093")
        status, answer, headers = await rig.post_json("/api/v1/login", {**body, "code": code})
        assert status == 200 and answer["username"]
        assert any(c.startswith("cw_dev=") for c in headers.getall("Set-Cookie", []))
