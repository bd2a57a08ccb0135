"""NAS health (issue 17): the per-process tally, how a flush becomes Redis increments,
and, against a live in-process ``serve`` (real Redis, real RADIUS and HTTP sockets): the
counters a NAS's traffic leaves, the console's NAS page and drill-down, a silent NAS
shown as silent, ``/metrics`` and the console JSON agreeing, operator scope. The restart
of a real ``citywifi serve`` process is ``test_counters_survive_a_restart_of_serve``."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from redis.crc import key_slot

from controller.cli.serve import Controller
from controller.config import Config
from controller.domain.nas_health import (
    CITY,
    SILENT_AFTER,
    StatsDelta,
    by_minute,
    day_bins,
    delta_of,
    health,
    minute_fields,
    series_of,
    silence,
)
from controller.storage import keys
from controller.storage.nas_stats import NasStatsStore
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from radius.attrs import Code
from radius.tally import Tally
from tests.support.console_kit import (
    ACCOUNTS,
    Browser,
    base_url,
    hospital_city,
    running,
)
from tests.support.pyrad_client import set_pap
from tests.support.radclient import radclient
from tests.support.redis_proc import RedisProcess, free_port, wait_until
from tests.support.redis_topologies import Cluster
from tests.test_radius_integration import MAC, acct, auth, client, login
from tests.test_serve_cli import SECRET, Serve, example_copy, issue_login
from tests.test_workers import Served, per_worker, send_accounting, workers_config

# -- the tally and the rules, without sockets -------------------------------------------


def test_the_tally_counts_in_dicts_and_starts_again_after_take() -> None:
    t = Tally()
    t.sent("nas-1", "auth", int(Code.ACCESS_ACCEPT), "accept")
    t.sent("nas-1", "auth", int(Code.ACCESS_REJECT), "bad_password")
    t.sent("nas-1", "acct", int(Code.ACCOUNTING_RESPONSE), "ok")
    t.dropped("nas-2", "invalid_attribute")
    t.dropped(None, "unknown_client")
    t.dae("nas-1", "dis", "ack")
    t.city("sms:ok")
    got = t.take()
    assert got.counts == {
        ("nas-1", "auth:accept"): 1,
        ("nas-1", "auth:reject"): 1,
        ("nas-1", "reject:bad_password"): 1,
        ("nas-1", "acct:ok"): 1,
        ("nas-2", "drop:invalid_attribute"): 1,
        (None, "drop:unknown_client"): 1,
        ("nas-1", "dis:ack"): 1,
        (None, "sms:ok"): 1,
    }
    assert got.heard == {"nas-1", "nas-2"}  # a dropped packet is a request seen too
    assert not t.take()
    t.sent("nas-1", "acct", int(Code.ACCOUNTING_RESPONSE))
    t.sent("nas-1", "auth", int(Code.ACCESS_REJECT), "accept")  # an Accept sent shrunk
    t.give_back(got)  # a failed write: counted again with the next batch
    again = t.take()
    assert again.counts[("nas-1", "acct:ok")] == 2 and again.heard == {"nas-1", "nas-2"}
    assert again.counts[("nas-1", "reject:reply_too_long")] == 1


def test_a_flush_counts_per_client_operator_and_city_and_only_configured_clients() -> None:
    counts = {
        ("nas-a", "auth:accept"): 3,
        ("nas-b", "auth:accept"): 2,
        ("gone", "acct:ok"): 5,  # removed from the config since: the city only
        (None, "sms:failed"): 1,
    }
    d = delta_of(counts, {"nas-a", "gone"}, {"nas-a": "op-1", "nas-b": ""}, 6_000_030)
    assert d.minute == 100_000
    assert d.clients == {"nas-a": {"auth:accept": 3}, "nas-b": {"auth:accept": 2}}
    assert d.scopes == {
        CITY: {"auth:accept": 5, "acct:ok": 5, "sms:failed": 1},
        "op:op-1": {"auth:accept": 3},
    }
    assert d.heard == {"nas-a": 6_000_030}
    ring = minute_fields({"auth:reject": 2, "acct:ok": 1, "dis:timeout": 1}, 7)
    assert ring == {"7|req": 3, "7|reject": 2, "7|dis_fail": 1}
    assert by_minute(ring | {"junk": 1}) == {7: {"req": 3, "reject": 2, "dis_fail": 1}}
    assert series_of("auth:accept") == ("req", "accept") and series_of("coa:ack") == ()


def test_silent_after_fifteen_minutes_or_never_heard_from() -> None:
    now = 1_000_000
    assert silence(None, now) == 0  # never: silent
    assert silence(now - SILENT_AFTER, now) is None
    assert silence(now - 1200, now) == 1200
    h = health("n", "v", "op", {"dis:ack": 3, "dis:timeout": 1, "auth:accept": 9}, {"req": 90},
               now - 10, 2, now)  # fmt: skip
    assert h.disconnect_ratio == 0.75 and h.per_second == 1.5 and h.silent_for is None
    assert h.requests == {"auth:accept": 9} and h.disconnects == {"ack": 3, "timeout": 1}
    b = now // 60 // 30
    bins = day_bins({b: {"req": 4}, b - 47: {"req": 1}, b - 48: {"req": 9}}, now, "req")
    assert len(bins) == 48 and bins[-1] == (b * 30, 4) and bins[0] == ((b - 47) * 30, 1)


async def test_a_flush_is_one_script_call_per_target_on_one_slot_each(
    redis_proc: RedisProcess,
) -> None:
    store = Store(client_from_url(redis_proc.url))
    try:
        await store.load_scripts()
        now = 1_800_000_000
        counts = {("nas-a", "auth:accept"): 2, ("nas-a", "drop:overload"): 1}
        delta = delta_of(counts, {"nas-a"}, {"nas-a": "op-1"}, now)
        await NasStatsStore(store).write(delta)
        await NasStatsStore(store).write(delta)  # a second flush adds
        r = store.redis
        assert await r.hgetall(keys.nas_totals("nas-a")) == {
            b"auth:accept": b"4",
            b"drop:overload": b"2",
        }
        minute, hour, day = now // 60, now // 3600, now // 86400
        ring = await r.hgetall(keys.nas_minutes("nas-a", hour))
        assert ring == {f"{minute}|{s}".encode(): v for s, v in
                        (("req", b"4"), ("accept", b"4"), ("drop", b"2"))}  # fmt: skip
        assert await r.hget(keys.scope_bins("op:op-1", day), f"{minute // 30}|accept") == b"4"
        assert await r.ttl(keys.nas_totals("nas-a")) == -1  # totals are kept
        assert 0 < await r.ttl(keys.nas_minutes("nas-a", hour)) <= 3 * 3600
        assert 86400 < await r.ttl(keys.nas_bins("nas-a", day)) <= 2 * 86400
        assert await r.zscore(keys.NAS_HEARD, "nas-a") == now
        for totals, minutes, bins in (
            (keys.nas_totals("x"), keys.nas_minutes("x", hour), keys.nas_bins("x", day)),
            (keys.scope_totals("city"), keys.scope_minutes("city", 1), keys.scope_bins("city", 2)),
        ):
            assert (
                key_slot(totals.encode()) == key_slot(minutes.encode()) == key_slot(bins.encode())
            )
        read = await NasStatsStore(store).recent("nas-a", [minute, minute - 1], client=True)
        assert read == {minute: {"req": 4, "accept": 4, "drop": 2}}
    finally:
        await store.close()


# -- a live in-process serve ------------------------------------------------------------


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return hospital_city(tmp_path, redis_proc.url)


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    # what earlier tests in this process counted is not this city's
    async with running(city, ACCOUNTS, fresh_tally=True) as controller:
        yield controller


def _metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


async def _traffic(ctl: Controller) -> None:
    issued = await login(ctl, MAC, phone="+8613800138011")
    assert (await auth(ctl, issued.username, issued.password)).code == Code.ACCESS_ACCEPT
    wrong = await auth(ctl, issued.username, "not-the-password")
    assert wrong is not None and wrong.code == Code.ACCESS_REJECT
    reply = await acct(ctl, "Start", "nas-health-1", 0, user=issued.username)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    async with client(ctl, secret="a-wrong-secret-0123456789") as c:  # dropped, unanswered
        req = c.auth_request(User_Name=issued.username, Calling_Station_Id=MAC)
        set_pap(req, issued.password)
        assert await c.request(req, timeout=0.3) is None


async def test_traffic_shows_on_the_nas_page_and_metrics_agree(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.nas_stats is not None
    await _traffic(ctl)
    await ctl.nas_stats.flush()
    await ctl.nas_stats.refresh()
    ops = Browser(base_url(ctl), http)
    assert await ops.sign_in("ops") == 303
    status, body, _ = await ops.request("GET", "/console/api/nas")
    assert status == 200
    rows = {r["client"]: r for r in json.loads(body)["nas"]}
    local = rows["nas-local"]
    assert local["requests"] == {"acct:ok": 1, "auth:accept": 1, "auth:reject": 1}
    assert local["drops"] and sum(local["drops"].values()) == 1
    assert local["open_sessions"] == 1 and not local["silent"] and local["state"] == "talking"
    assert rows["nas-hospital"]["silent"] and rows["nas-hospital"]["last_request"] == "never"
    async with http.get(f"{base_url(ctl)}/metrics") as r:
        metrics = await r.text()
    for name, n in local["requests"].items():  # the same figures, the same moment
        port, result = name.split(":")
        labels = {"client": "nas-local", "port": port, "result": result}
        assert _metric(metrics, "citywifi_nas_requests_total", **labels) == n
    for reason, n in local["drops"].items():
        labels = {"client": "nas-local", "reason": reason}
        assert _metric(metrics, "citywifi_nas_dropped_total", **labels) == n
    seen = _metric(metrics, "citywifi_nas_last_request_timestamp_seconds", client="nas-local")
    assert seen == local["last_request_at"]
    assert _metric(metrics, "citywifi_nas_rejects_total", client="nas-local",
                   reason="bad_password") == 1  # fmt: skip
    assert "nas-hospital" not in re.findall(
        r'citywifi_nas_requests_total\{client="([^"]+)"', metrics
    )

    o = json.loads((await ops.request("GET", "/console/api/overview"))[1])
    assert dict(o["rejects"]) == {"bad_password": 1}
    assert o["disconnects"] == {"ack": 0, "nak": 0, "timeout": 0}
    assert o["sms"] == {"ok": 0, "failed": 0} and "<svg" in o["chart"]

    status, page, _ = await ops.request("GET", "/console/nas")
    assert status == 200 and 'data-client="nas-local"' in page
    assert "silent: never heard from" in page  # nas-hospital
    assert "http://" not in page and "https://" not in page
    status, page, _ = await ops.request("GET", "/console/nas/nas-local")
    assert status == 200 and "auth:reject" in page and "<svg" in page
    assert "nas-local/nas-health-1" in page  # its open session
    d = json.loads((await ops.request("GET", "/console/api/nas/nas-local"))[1])
    assert d["totals"]["reject:bad_password"] == 1 and d["sessions"][0]["ref"].endswith(
        "|nas-local/nas-health-1"
    )
    assert sum(m["req"] for m in d["recent"]) == 3
    assert (await ops.request("GET", "/console/api/nas/no-such-nas"))[0] == 404
    assert (await ops.request("GET", "/console/nas/no-such-nas"))[0] == 404


async def test_a_nas_quiet_for_twenty_minutes_is_silent(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.store is not None
    now = int(time.time())
    await NasStatsStore(ctl.store).write(StatsDelta(now // 60, heard={"nas-local": now - 1200}))
    ops = Browser(base_url(ctl), http)
    assert await ops.sign_in("ops") == 303
    rows = {
        r["client"]: r for r in json.loads((await ops.request("GET", "/console/api/nas"))[1])["nas"]
    }
    assert rows["nas-local"]["silent"] and rows["nas-local"]["state"] == "silent for 20 min"
    page = (await ops.request("GET", "/console/nas"))[1]
    assert '<td class="silent">silent for 20 min</td>' in page


async def test_an_operator_sees_only_its_own_nas_health(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.nas_stats is not None
    await _traffic(ctl)  # at nas-local: op-telecom's
    await ctl.nas_stats.flush()
    tel, uni = Browser(base_url(ctl), http), Browser(base_url(ctl), http)
    assert await tel.sign_in("tel") == 303 and await uni.sign_in("uni") == 303
    n = json.loads((await tel.request("GET", "/console/api/nas"))[1])
    assert n["scope"] == ["op-telecom"] and [r["client"] for r in n["nas"]] == ["nas-local"]
    n = json.loads((await uni.request("GET", "/console/api/nas"))[1])
    assert [r["client"] for r in n["nas"]] == ["nas-hospital"]
    assert (await uni.request("GET", "/console/api/nas/nas-local"))[0] == 403
    status, page, _ = await uni.request("GET", "/console/nas/nas-local")
    assert status == 403 and "not at your operator" in page
    assert (await tel.request("GET", "/console/api/nas/nas-local"))[0] == 200
    o = json.loads((await tel.request("GET", "/console/api/overview"))[1])  # its own figures
    assert dict(o["rejects"]) == {"bad_password": 1} and o["sms"] == "—"
    o = json.loads((await uni.request("GET", "/console/api/overview"))[1])
    assert o["rejects"] == [] and o["disconnects"] == {"ack": 0, "nak": 0, "timeout": 0}


# -- a real `citywifi serve`, restarted ---------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    yield example_copy(tmp_path)


def _auth(ports: dict[str, int], login: dict[str, object]) -> str:
    attrs = {"User-Name": str(login["username"]), "User-Password": str(login["password"])}
    return radclient(ports["auth"], "auth", SECRET, attrs).code


def _counted(sock: Path) -> dict[str, int]:
    r = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    try:
        return {k: int(v) for k, v in r.hgetall(keys.nas_totals("localhost")).items()}
    finally:
        r.close()


def test_counters_survive_a_restart_of_serve(example: tuple[Path, dict[str, int]]) -> None:
    """Real ``citywifi serve`` (embedded Redis), radclient traffic, SIGTERM, serve again:
    the counts go on from where they were, and /metrics exports them."""
    config, ports = example
    sock = config.parent / "var" / "redis" / "redis.sock"
    for rounds in (1, 2):
        serve = Serve(config)
        try:
            assert serve.ready.wait(30), "serve did not get ready:\n" + "".join(serve.lines)
            assert _auth(ports, issue_login(config, phone="13800138021")) == "Access-Accept"
            assert _auth(ports, {"username": "nobody", "password": "x"}) == "Access-Reject"

            def flushed(n: int = rounds) -> bool:
                counted = _counted(sock)
                return (counted.get("auth:accept"), counted.get("auth:reject")) == (n, n)

            wait_until(flushed, 10, what=f"round {rounds}: the flush to Redis")
            url = f"http://127.0.0.1:{ports['http']}/metrics"
            labels = 'client="localhost",port="auth",result="accept"'
            line = f"citywifi_nas_requests_total{{{labels}}} {float(rounds)}"

            def exported(url: str = url, line: str = line) -> bool:
                with urllib.request.urlopen(url, timeout=10) as r:
                    return line in r.read().decode()

            wait_until(exported, 15, what=f"round {rounds}: /metrics from Redis")
        finally:
            if serve.proc.poll() is None:
                serve.proc.send_signal(signal.SIGTERM)
            assert serve.proc.wait(20) == 0
        wait_until(lambda: not sock.exists(), 10, what="embedded redis stopped")


# -- `serve --workers 2`: both workers add to the same figures ----------------------------


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[Served, dict[str, int]]]:
    ports = {
        "auth": free_port(socket.SOCK_DGRAM),
        "acct": free_port(socket.SOCK_DGRAM),
        "http": free_port(),
    }
    serve = Served(workers_config(tmp_path, ports), workers=2)
    try:
        serve.wait_for("supervisor.ready")
        yield serve, ports
    finally:
        serve.stop()


@pytest.mark.multiprocess
async def test_every_worker_adds_to_the_same_figures(
    two_workers: tuple[Served, dict[str, int]], tmp_path: Path
) -> None:
    served, ports = two_workers
    assert await send_accounting(ports["acct"], 40, "w") == 40
    sock = tmp_path / "var" / "redis" / "redis.sock"
    r = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    try:
        wait_until(lambda: r.hget(keys.nas_totals("nas-local"), "acct:ok") == "40", 10,
                   what="both workers' flushes")  # fmt: skip
    finally:
        r.close()
    labels = 'client="nas-local",port="acct",result="ok"'

    def exported() -> bool:  # whichever worker answers the scrape says the same
        url = f"http://127.0.0.1:{ports['http']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return f"citywifi_nas_requests_total{{{labels}}} 40.0" in resp.read().decode()

    wait_until(exported, 15, what="/metrics from Redis")
    counts = per_worker(tmp_path / "var" / "metrics")
    assert sum(v > 0 for v in counts.values()) == 2, counts  # both workers answered some
    assert len(served.find("serve.ready")) == 2


# -- on a Redis Cluster: each target's script on its own slot -----------------------------


@pytest.mark.redis_topology
async def test_a_flush_and_the_reads_on_a_redis_cluster(cluster: Cluster) -> None:
    cluster.flush()
    store = Store(client_from_url(cluster.url))
    try:
        await store.load_scripts()
        now = int(time.time())
        ops = {f"nas-{i}": f"op-{i % 3}" for i in range(30)}  # spread over every primary
        counts = {(c, "auth:accept"): 1 for c in ops} | {(None, "sms:ok"): 2}
        db = NasStatsStore(store)
        await db.write(delta_of(counts, set(ops), ops, now))
        rows = await db.clients(sorted(ops), now // 60)
        assert [totals for totals, _, _, _ in rows] == [{"auth:accept": 1}] * 30
        assert [minute for _, minute, _, _ in rows] == [{"req": 1, "accept": 1}] * 30
        assert all(heard == now for _, _, heard, _ in rows)
        assert await db.totals(["city", "op:op-0"]) == [
            {"auth:accept": 30, "sms:ok": 2},
            {"auth:accept": 10},
        ]
        bins = await db.bins("city", now, client=False)
        assert bins[now // 60 // 30]["accept"] == 30
    finally:
        await store.close()
