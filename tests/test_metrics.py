"""Every metric family of issue 7 in a real ``/metrics`` scrape, moved by real traffic.

An in-process Controller with a real redis-server: the portal API over HTTP (SMS code,
login, refusals, a rate limit, an SMS failure), RADIUS over UDP with pyrad (accept,
reject, accounting, a retransmission, drops of every kind), an RFC 5176 NAS answering a
Disconnect, a stale session closed, the subsidy report exported, Redis stopped under
load. Each check reads the scrape before and after: the family is there, with the
labels operators query, and it moved. Health and readiness follow Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyrad.packet import CoAPacket

from controller.domain.venue_types import VENUE_TYPES
from controller.services.logins import issue_login
from controller.services.metrics import OnlineStats
from radius.attrs import Code, ErrorCause
from tests.support.clocks import local_hour
from tests.support.portal_kit import NAS, Clock, Rig, accepted, radius_pap, running_portal
from tests.support.pyrad_client import RadiusClient, load_dictionary
from tests.support.redis_proc import RedisProcess, free_port, until

SH = ZoneInfo("Asia/Shanghai")
TOKEN = "metrics-test-token-0123"
DAE_NAS = {"id": "nas-dae", "address": "127.0.0.6", "secret": "dae-secret-6"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """One ``GET /metrics``: families by name and samples by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, Any] = {}
        self.samples: Samples = {}
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def labelsets(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for n, labels in self.samples if n == name]


async def scrape(rig: Rig) -> Scrape:
    async with rig.http.get(rig.base + "/metrics") as r:
        assert r.status == 200
        return Scrape(await r.text())


async def moved(rig: Rig, before: Scrape, name: str, **labels: str) -> float:
    """How much a sample grew since ``before``, polling (packets dropped leave no reply to
    wait for) until it did, for at most 5 s."""
    seen: list[Scrape] = []

    async def grew() -> bool:
        seen[:] = [await scrape(rig)]
        return seen[0].value(name, **labels) > before.value(name, **labels)

    with contextlib.suppress(AssertionError):  # timed out: the assertion below says why
        await until(grew, 5, f"{name}{labels} to move", interval=0.02)
    after = seen[0]
    delta = after.value(name, **labels) - before.value(name, **labels)
    assert delta > 0, f"{name}{labels} did not move: {after.labelsets(name)}"
    return delta


class DaeNas(asyncio.DatagramProtocol):
    """A NAS's RFC 5176 port: ACKs a Disconnect-Request, or NAKs it when ``nak``."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.nak = False
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = CoAPacket(packet=data, secret=self.secret, dict=load_dictionary())
        if packet.code != Code.DISCONNECT_REQUEST or not packet.VerifyCoARequest():
            return
        reply = packet.CreateReply()
        if self.nak:
            reply.code = Code.DISCONNECT_NAK
            reply["Error-Cause"] = int(ErrorCause.ADMINISTRATIVELY_PROHIBITED)
        reply.add_message_authenticator()
        assert self.transport is not None
        self.transport.sendto(reply.ReplyPacket(), addr)


def extra_tables(coa_port: int) -> str:
    return f"""
[[clients]]
id = "{DAE_NAS["id"]}"
address = "{DAE_NAS["address"]}"
secret = "{DAE_NAS["secret"]}"
venue = "hospital"
vendor = "generic"
coa_port = {coa_port}

[[api_tokens]]
name = "metrics-reader"
sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
roles = ["reports"]

[enforcer]
enabled = false
disconnect_timeout = 0.3
disconnect_retries = 1
"""


@pytest.fixture
async def dae() -> AsyncIterator[tuple[DaeNas, int]]:
    loop = asyncio.get_running_loop()
    port = free_port(socket.SOCK_DGRAM)
    transport, nas = await loop.create_datagram_endpoint(
        lambda: DaeNas(DAE_NAS["secret"].encode()), local_addr=(DAE_NAS["address"], port)
    )
    try:
        yield nas, port
    finally:
        transport.close()


@pytest.fixture
async def city(
    tmp_path: Path, redis_proc: RedisProcess, dae: tuple[DaeNas, int]
) -> AsyncIterator[tuple[Rig, Clock]]:
    clock = Clock(local_hour(SH))
    async with running_portal(
        tmp_path, redis_proc.url, clients=extra_tables(dae[1]), clock=clock
    ) as rig:
        yield rig, clock


async def acct(
    port: int,
    nas: dict[str, str],
    *,
    status: str,
    sid: str,
    user: str,
    seconds: int = 0,
    cls: bytes | None = None,
    secret: str | None = None,
) -> Any:
    async with RadiusClient(
        ("127.0.0.1", port), (secret or nas["secret"]).encode(), local_addr=(nas["address"], 0)
    ) as c:
        req = c.acct_request(
            Acct_Status_Type=status, Acct_Session_Id=sid, Acct_Session_Time=seconds, User_Name=user
        )
        if cls is not None:
            req[25] = [cls]
        return await c.request(req, timeout=2.0, retries=1)


def send_raw(port: int, data: bytes, source: str = "127.0.0.1") -> None:
    """A datagram that gets no answer (dropped): sent, not waited for."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.sendto(data, ("127.0.0.1", port))


async def test_every_required_family_is_scraped_and_moves(
    city: tuple[Rig, Clock], dae: tuple[DaeNas, int], redis_proc: RedisProcess, tmp_path: Path
) -> None:
    rig, clock = city
    ctl = rig.ctl
    t0 = await scrape(rig)
    phone, mac = "13800138070", "AA-BB-CC-00-70-01"

    # -- portal: a code sent, a wrong code, a login, a rate limit ------------------------
    status, body, _ = await rig.post_json(
        "/api/v1/otp", {"phone": phone, "nas_id": "nas-local", "mac": mac}
    )
    assert status == 202, body
    await moved(rig, t0, "citywifi_portal_code_requests_total", result="sent")
    await moved(rig, t0, "citywifi_portal_sms_total", backend="file", result="ok")
    status, body, _ = await rig.post_json("/api/v1/otp", {"phone": phone, "nas_id": "nas-local"})
    assert (status, body["error"]) == (429, "rate_limited")
    await moved(rig, t0, "citywifi_portal_code_requests_total", result="rate_limited")
    code = rig.code("+86" + phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    status, body, _ = await rig.post_json(
        "/api/v1/login", {"phone": phone, "code": wrong, "nas_id": "nas-local", "mac": mac}
    )
    assert status == 401, body
    await moved(rig, t0, "citywifi_portal_refused_total", reason="code_wrong")
    status, login, _ = await rig.post_json(
        "/api/v1/login", {"phone": phone, "code": code, "nas_id": "nas-local", "mac": mac}
    )
    assert status == 200, login
    await moved(rig, t0, "citywifi_portal_logins_total", vendor="generic", method="code")

    # -- RADIUS: accept, accounting, a retransmission answered from the cache ------------
    reply = await radius_pap(
        ctl.auth_port, NAS["generic"], login["username"], login["password"].encode(), mac
    )
    assert accepted(reply)
    cls = reply["Class"][0]
    await moved(
        rig, t0, "citywifi_radius_requests_total", port="auth", type="auth", result="accept"
    )
    await moved(
        rig,
        t0,
        "citywifi_radius_client_requests_total",
        client="nas-local",
        port="auth",
        result="accept",
    )
    await moved(rig, t0, "citywifi_radius_request_seconds_count", port="auth")
    start = await acct(ctl.acct_port, NAS["generic"], status="Start", sid="m-1", user=mac, cls=cls)
    assert start is not None and start.code == Code.ACCOUNTING_RESPONSE
    async with RadiusClient(("127.0.0.1", ctl.acct_port), NAS["generic"]["secret"].encode()) as c:
        req = c.acct_request(
            Acct_Status_Type="Interim-Update",
            Acct_Session_Id="m-1",
            Acct_Session_Time=7200,  # the whole day's allowance
            User_Name=login["username"],
        )
        req[25] = [cls]
        req.id = 77
        data = req.RequestPacket()
        first = await c.request_raw(data, timeout=2.0, retries=1)
        again = await c.request_raw(data, timeout=2.0, retries=1)  # the NAS retransmits
    assert first is not None and again == first
    await moved(rig, t0, "citywifi_radius_requests_total", port="acct", type="acct", result="ok")
    await moved(
        rig, t0, "citywifi_radius_requests_total", port="acct", type="duplicate", result="cached"
    )
    await moved(rig, t0, "citywifi_radius_request_seconds_count", port="acct")
    await moved(rig, t0, "citywifi_redis_seconds_count", op="account")
    await moved(rig, t0, "citywifi_redis_seconds_count", op="auth_state")

    # -- drops: unknown client, malformed, bad authenticator -----------------------------
    send_raw(ctl.auth_port, bytes(20), source="127.0.0.9")
    await moved(rig, t0, "citywifi_radius_dropped_total", port="auth", reason="unknown_client")
    send_raw(ctl.auth_port, b"\x01\x02\x00")
    await moved(rig, t0, "citywifi_radius_dropped_total", port="auth", reason="malformed")
    assert (
        await acct(ctl.acct_port, NAS["generic"], status="Start", sid="x", user="x", secret="wrong")
        is None
    )
    await moved(
        rig, t0, "citywifi_radius_dropped_total", port="acct", reason="bad_request_authenticator"
    )

    # -- the allowance is used up: the portal refuses, RADIUS rejects the device ---------
    status, body, _ = await rig.post_json("/api/v1/login", {"nas_id": "nas-local", "mac": mac})
    assert (status, body["error"]) == (403, "allowance_used_up"), body
    await moved(rig, t0, "citywifi_portal_refused_total", reason="exhausted")
    async with RadiusClient(("127.0.0.1", ctl.auth_port), NAS["generic"]["secret"].encode()) as c:
        rejected = await c.request(
            c.auth_request(User_Name=mac, Calling_Station_Id=mac), timeout=2.0, retries=1
        )
    assert rejected is not None and rejected.code == Code.ACCESS_REJECT
    await moved(
        rig, t0, "citywifi_radius_requests_total", port="auth", type="auth", result="reject"
    )

    # -- a second person at the hospital; the city's online gauges -----------------------
    assert ctl.store is not None and ctl.enforcer is not None and ctl.online is not None
    issued = await issue_login(
        ctl.store,
        phone_e164="+8613800138071",
        mac="",
        client_id=DAE_NAS["id"],
        person_key=ctl.person_key,
        ttl=300,
        now=int(clock()),
    )
    reply = await radius_pap(
        ctl.auth_port, DAE_NAS, issued.username, issued.password.encode(), "AA-BB-CC-00-71-01"
    )
    assert accepted(reply)
    started = await acct(
        ctl.acct_port, DAE_NAS, status="Start", sid="h-1", user=issued.username,
        cls=reply["Class"][0],
    )  # fmt: skip
    assert started is not None
    summary = await ctl.online.refresh(lead=True)
    assert summary is not None and summary["persons"] == 2
    t1 = await scrape(rig)
    assert t1.value("citywifi_sessions_open", venue_type="transport_hub") == 1
    assert t1.value("citywifi_sessions_open", venue_type="hospital") == 1
    assert t1.value("citywifi_persons_online") == 2
    assert {d["venue_type"] for d in t1.labelsets("citywifi_sessions_open")} == {
        *VENUE_TYPES,
        "unknown",
    }
    assert t1.value("citywifi_online_counted_timestamp_seconds") == int(clock())

    # -- disconnects: acked, then naked; sent counted by the DAE client ------------------
    outcomes = await ctl.enforcer.disconnect_now(issued.person)
    assert [o.result for o in outcomes] == ["acked"]
    await moved(rig, t0, "citywifi_enforcer_disconnects_total", reason="admin", result="acked")
    await moved(rig, t0, "citywifi_dae_requests_total", kind="disconnect")
    dae[0].nak = True
    outcomes = await ctl.enforcer.disconnect_now(issued.person)
    assert [o.result for o in outcomes] == ["naked"]
    await moved(rig, t0, "citywifi_enforcer_disconnects_total", reason="admin", result="naked")

    # -- stale: nothing heard for longer than the grace; both sessions closed ------------
    clock.advance(ctl.config.quota.stale_grace + 60)
    await ctl.enforcer.sweep_stale(int(clock()))
    assert await moved(rig, t1, "citywifi_enforcer_stale_closed_total") == 2
    await ctl.online.refresh(lead=True)
    t2 = await scrape(rig)
    assert t2.value("citywifi_persons_online") == 0
    assert sum(t2.value("citywifi_sessions_open", venue_type=v) for v in VENUE_TYPES) == 0

    # -- a report exported, a bad request counted ----------------------------------------
    day = datetime.fromtimestamp(clock(), SH).date().isoformat()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = rig.base + "/api/v1/reports/subsidy"
    async with rig.http.get(url, params={"from": day, "to": day}, headers=auth) as r:
        assert r.status == 200, await r.text()
    await moved(rig, t0, "citywifi_report_exports_total", format="csv", result="ok")
    async with rig.http.get(url, params={"from": day, "to": "x"}, headers=auth) as r:
        assert r.status == 400
    await moved(rig, t0, "citywifi_report_exports_total", format="none", result="bad_request")

    # -- an SMS the backend cannot take --------------------------------------------------
    rig.sms_path.unlink()
    rig.sms_path.mkdir()  # the file backend cannot append to a directory
    status, body, _ = await rig.post_json(
        "/api/v1/otp", {"phone": "13800138072", "nas_id": "nas-local"}
    )
    assert (status, body["error"]) == (503, "sms_failed")
    await moved(rig, t0, "citywifi_portal_sms_total", backend="file", result="failed")
    await moved(rig, t0, "citywifi_portal_code_requests_total", result="sms_failed")

    # -- Redis gone: the request is not answered; the error is counted -------------------
    redis_proc.stop()
    try:
        lost = await acct(
            ctl.acct_port, NAS["generic"], status="Interim-Update", sid="m-2", user=mac,
            seconds=60, cls=cls,
        )  # fmt: skip
        assert lost is None
        await moved(rig, t0, "citywifi_redis_errors_total", op="account", error="ConnectionError")
        await moved(rig, t0, "citywifi_radius_dropped_total", port="acct", reason="not_recorded")
    finally:
        redis_proc.start()

    # -- label sets stay bounded: no person, phone, MAC or user name in any label --------
    final = await scrape(rig)
    secrets_ = (phone, mac, login["username"], issued.person, issued.username, TOKEN)
    for (_, labels), _value in final.samples.items():
        for _key, value in labels:
            assert not any(s in value for s in secrets_), (labels, value)


async def test_allowance_exhausted_rejects_are_counted(city: tuple[Rig, Clock]) -> None:
    """The allowance-used-up Access-Reject is counted by reason (radius_service)."""
    rig, clock = city
    ctl = rig.ctl
    assert ctl.store is not None
    t0 = await scrape(rig)
    issued = await issue_login(
        ctl.store,
        phone_e164="+8613800138073",
        mac="",
        client_id=NAS["generic"]["id"],
        person_key=ctl.person_key,
        ttl=300,
        now=int(clock()),
    )
    reply = await radius_pap(
        ctl.auth_port, NAS["generic"], issued.username, issued.password.encode(), "AA-73"
    )
    assert accepted(reply)
    used = await acct(
        ctl.acct_port, NAS["generic"], status="Interim-Update", sid="e-1",
        user=issued.username, seconds=7200, cls=reply["Class"][0],
    )  # fmt: skip
    assert used is not None
    again = await issue_login(
        ctl.store,
        phone_e164="+8613800138073",
        mac="",
        client_id=NAS["generic"]["id"],
        person_key=ctl.person_key,
        ttl=300,
        now=int(clock()),
    )
    rejected = await radius_pap(
        ctl.auth_port, NAS["generic"], again.username, again.password.encode(), "AA-73"
    )
    assert rejected is not None and rejected.code == Code.ACCESS_REJECT
    await moved(rig, t0, "citywifi_radius_rejects_total", reason="exhausted")


async def test_online_count_is_shared_and_reads_only_new_sessions(
    city: tuple[Rig, Clock],
) -> None:
    """Two counters on one Redis: one leads; the other only reads the summary. A second
    count looks up no venue it has seen (steady state: one HGET per new session)."""
    rig, clock = city
    ctl = rig.ctl
    assert ctl.online is not None and ctl.store is not None
    for i in range(3):
        r = await acct(ctl.acct_port, NAS["generic"], status="Start", sid=f"o-{i}", user=f"w{i}")
        assert r is not None
    other = OnlineStats(ctl.online.store, clock=clock)
    lead = await ctl.online.refresh()  # takes (or keeps) the lead: it started first
    follower = await other.refresh()
    assert lead is not None and follower == lead
    assert lead["sessions"] == {"transport_hub": 3} and lead["persons"] == 3

    looked_up: list[int] = []
    real = ctl.online.store.venue_types

    async def counting(refs: Any) -> list[str | None]:
        looked_up.append(len(refs))
        return await real(refs)

    ctl.online.store.venue_types = counting  # type: ignore[method-assign]
    try:
        r = await acct(ctl.acct_port, NAS["generic"], status="Start", sid="o-3", user="w3")
        assert r is not None
        summary = await ctl.online.refresh(lead=True)
    finally:
        del ctl.online.store.venue_types
    assert summary is not None and summary["sessions"] == {"transport_hub": 4}
    assert looked_up == [1]
    await other.stop()


async def test_health_and_readiness_follow_redis(
    city: tuple[Rig, Clock], redis_proc: RedisProcess
) -> None:
    rig, _ = city
    status, body, _ = await rig.get_json("/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body, _ = await rig.get_json("/readyz")
    assert status == 200, body
    assert body == {
        "status": "ready",
        "checks": {"redis": True, "scripts": True, "radius": True},
    }
    redis_proc.stop()
    try:
        status, body, _ = await rig.get_json("/readyz")
        assert status == 503
        assert body["status"] == "not ready" and body["failing"] == ["redis"]
        assert body["checks"]["redis"] is False and body["checks"]["radius"] is True
        status, _, _ = await rig.get_json("/healthz")
        assert status == 200  # alive: a restart would not bring Redis back
    finally:
        redis_proc.start()

    async def ready() -> bool:
        return (await rig.get_json("/readyz"))[0] == 200

    await until(ready, 10, "ready again after Redis came back", interval=0.05)
