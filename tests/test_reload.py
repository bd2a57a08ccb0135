"""SIGHUP on a real ``citywifi serve`` (one process, and a supervisor with two workers).

A bad file (a TOML syntax error; a client naming a venue that does not exist) is refused
with the problems check-config reports, and the running config keeps answering. A good
file that adds a venue, an access point, a RADIUS client and an API token and rotates a
secret works at once: the new client is answered, its accounting lands on the new venue,
the old secret stops working, a session opened before the reload is accounted after it
on the same record. The log says what changed by id and count, never a secret or token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from controller.config import check_config, load_config
from controller.config.reload import adopt, changes, restart_needed
from controller.services.radius_service import anonymous_person
from controller.storage import keys
from radius.attrs import Code
from tests.conftest import SECRET, write_config
from tests.support.pyrad_client import RadiusClient
from tests.support.redis_proc import RedisProcess
from tests.test_metrics import Scrape
from tests.test_workers import Served

pytestmark = pytest.mark.multiprocess

ROTATED = "rotated-secret-1"
NEW_SECRET = "new-secret-3"
NEW_TOKEN = "ops-new-token-0123456789"
AP = "66-77-88-99-AA-BB"

GOOD_ADDITIONS = f"""
[[venues]]
id = "library"
name = {{ zh = "省图书馆", en = "Provincial Library" }}
type = "community"
district = "长安区"
operator = "op-telecom"

[[clients]]
id = "nas-new"
address = "127.0.0.3"
secret = "{NEW_SECRET}"
venue = "hospital"
vendor = "generic"

[[access_points]]
match = "{AP}"
venue = "library"

[[api_tokens]]
name = "ops-new"
sha256 = "{hashlib.sha256(NEW_TOKEN.encode()).hexdigest()}"
roles = ["admin"]
"""


class City:
    def __init__(self, path: Path, served: Served, workers: int, r: redis.Redis) -> None:
        self.path = path
        self.served = served
        self.workers = workers
        self.redis = r
        ready = served.find("supervisor.ready" if workers > 1 else "serve.ready")[0]
        self.auth = int(ready["auth_port"])
        self.acct = int(ready["acct_port"])
        self.http = int(ready["http_port"])

    def hup(self, text: str) -> None:
        self.path.write_text(text)
        self.served.proc.send_signal(signal.SIGHUP)

    def scrape(self) -> Scrape:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            return Scrape(r.read().decode())

    def session(self, client: str, user: str, sid: str) -> dict[str, str]:
        pid = anonymous_person(client, user)
        raw: Any = self.redis.hgetall(keys.session(pid, keys.session_id(client, sid)))
        return {k.decode(): v.decode() for k, v in raw.items()}


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def city(
    request: pytest.FixtureRequest, tmp_path: Path, redis_proc: RedisProcess
) -> Iterator[City]:
    path = write_config(tmp_path, redis_proc.url)
    path.write_text(path.read_text().replace('level = "warning"', 'level = "info"'))
    served = Served(path, workers=request.param)
    r = redis.Redis(host="127.0.0.1", port=redis_proc.port)
    try:
        served.wait_for("supervisor.ready" if request.param > 1 else "serve.ready")
        yield City(path, served, request.param, r)
    finally:
        r.close()
        served.stop()


async def acct(
    city: City,
    *,
    source: str = "127.0.0.1",
    secret: str = SECRET,
    status: str = "Start",
    sid: str,
    user: str,
    seconds: int = 0,
    called: str = "",
    timeout: float = 2.0,
) -> Any:
    async with RadiusClient(("127.0.0.1", city.acct), secret.encode(), local_addr=(source, 0)) as c:
        attrs: dict[str, Any] = {
            "Acct_Status_Type": status,
            "Acct_Session_Id": sid,
            "Acct_Session_Time": seconds,
            "User_Name": user,
        }
        if called:
            attrs["Called_Station_Id"] = called
        return await c.request(c.acct_request(**attrs), timeout=timeout, retries=1)


async def access(city: City, source: str, secret: str, timeout: float = 2.0) -> Any:
    async with RadiusClient(("127.0.0.1", city.auth), secret.encode(), local_addr=(source, 0)) as c:
        req = c.auth_request(User_Name="nobody-here", password="x")
        return await c.request(req, timeout=timeout, retries=1)


def answered(reply: Any, code: int = Code.ACCOUNTING_RESPONSE) -> bool:
    return reply is not None and reply.code == code


async def test_an_invalid_file_is_refused_and_the_old_config_keeps_working(city: City) -> None:
    good = city.path.read_text()
    assert answered(await acct(city, sid="before", user="walk-0"))

    # 1. TOML syntax error
    broken = good + "\n[[venues]\nid = 1\n"
    city.hup(broken)
    expected = [str(p) for p in check_config(city.path)]
    assert len(expected) == 1 and f"{city.path}:" in expected[0]
    city.served.wait_for("config.reload_refused", count=city.workers, problem=expected[0])

    # 2. a client naming a venue that does not exist (and a second problem in the file)
    wrong = good + textwrap.dedent(
        """
        [[clients]]
        id = "nas-ghost"
        address = "127.0.0.7"
        secret = "ghost-secret"
        venue = "nowhere"
        vendor = "generic"

        [[access_points]]
        match = "00-00-00-00-00-99"
        venue = "nowhere-either"
        """
    )
    city.hup(wrong)
    expected = [str(p) for p in check_config(city.path)]
    assert len(expected) >= 2 and any("nowhere" in p for p in expected), expected
    for problem in expected:
        city.served.wait_for("config.reload_refused", count=city.workers, problem=problem)
        assert f"{city.path}:" in problem  # file:line: key: reason
    assert not city.served.find("config.reloaded")

    # the running config still answers, attributes, and knows nothing of the refused one
    assert answered(await acct(city, sid="after", user="walk-0"))
    assert city.session("nas-local", "walk-0", "after")["venue"] == "station"
    assert await access(city, "127.0.0.7", "ghost-secret", timeout=0.5) is None
    metrics = city.scrape()
    assert metrics.value("citywifi_config_reloads_total", result="refused") == 2 * city.workers
    assert "ghost-secret" not in "".join(city.served.lines)


async def test_a_good_file_takes_effect_at_once_and_sessions_survive(city: City) -> None:
    original = city.path.read_text()
    assert answered(await acct(city, sid="keep-1", user="walk-1"))  # opened before
    assert await access(city, "127.0.0.3", NEW_SECRET, timeout=0.5) is None  # unknown yet

    assert original.count(f'secret = "{SECRET}"\n') == 1
    text = original.replace(f'secret = "{SECRET}"\n', f'secret = "{ROTATED}"\n')
    text = text.replace("acct_port = 0\n", "acct_port = 0\ndedup_window = 10\n", 1)
    city.hup(text + GOOD_ADDITIONS)
    city.served.wait_for("config.reloaded", count=city.workers)

    # 4. the log: counts and ids of what changed; a key that needs a restart, by name
    for event in city.served.find("config.reloaded"):
        assert (event["venues"], event["clients"], event["access_points"]) == (3, 3, 2)
        assert event["api_tokens"] == 1
        assert event["changes"] == {
            "venues": {"added": ["library"]},
            "access_points": {"added": [AP]},
            "clients": {"added": ["nas-new"], "changed": {"nas-local": ["secret"]}},
            "api_tokens": {"added": ["ops-new"]},
        }
    city.served.wait_for("config.restart_needed", count=city.workers)
    assert all(
        e["keys"] == ["radius.dedup_window"] for e in city.served.find("config.restart_needed")
    )

    # 2. the new client is answered at once, from any source port (any worker)
    for _ in range(6):
        assert answered(await access(city, "127.0.0.3", NEW_SECRET), Code.ACCESS_REJECT)
    reply = await acct(city, source="127.0.0.3", secret=NEW_SECRET, sid="new-1", user="walk-2")
    assert answered(reply)
    record = city.session("nas-new", "walk-2", "new-1")
    assert (record["venue"], record["venue_type"]) == ("hospital", "hospital")  # its default
    reply = await acct(
        city, source="127.0.0.3", secret=NEW_SECRET, sid="new-2", user="walk-3", called=AP
    )
    assert answered(reply)
    record = city.session("nas-new", "walk-3", "new-2")
    assert (record["venue"], record["venue_type"]) == ("library", "community")  # the new AP

    # the rotated secret: the old one is refused, the new one answered
    assert await acct(city, sid="keep-1", user="walk-1", timeout=0.5) is None
    # 3. the session opened before the reload goes on, on the same record
    reply = await acct(
        city, secret=ROTATED, status="Interim-Update", sid="keep-1", user="walk-1", seconds=120
    )
    assert answered(reply)
    record = city.session("nas-local", "walk-1", "keep-1")
    assert (record["seen"], record["venue"]) == ("120", "station")
    pid = anonymous_person("nas-local", "walk-1")
    assert city.redis.hexists(keys.open_sessions(pid), keys.session_id("nas-local", "keep-1"))

    metrics = city.scrape()
    assert metrics.value("citywifi_config_reloads_total", result="ok") == city.workers
    # gauges in multiprocess mode: one city-wide value, no per-process series
    for name in ("citywifi_outbox_backlog", "citywifi_persons_online", "citywifi_sessions_open"):
        labelsets = metrics.labelsets(name)
        assert labelsets and all("pid" not in labels for labels in labelsets), (name, labelsets)
    assert len(metrics.labelsets("citywifi_outbox_backlog")) == 1

    # never a secret or a token in the log
    log = "".join(city.served.lines)
    digest = hashlib.sha256(NEW_TOKEN.encode()).hexdigest()
    for secret in (ROTATED, NEW_SECRET, SECRET, NEW_TOKEN, digest):
        assert secret not in log
    assert city.served.proc.poll() is None


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_a_sighup_while_starting_is_applied_once_serving(tmp_path: Path, workers: int) -> None:
    """SIGHUP's default action ends a process: one arriving while the controller waits for
    Redis (or a `systemctl reload` right after start) must not kill it, and the file read
    then is applied once it serves."""
    redis_proc = RedisProcess(tmp_path / "redis")  # its port is chosen; not started yet
    path = write_config(tmp_path, redis_proc.url)
    path.write_text(path.read_text().replace('level = "warning"', 'level = "info"'))
    served = Served(path, workers=workers)
    try:
        served.wait_for("redis.waiting", count=workers)
        if workers > 1:
            for index in range(workers):  # every worker is past its imports, waiting
                served.wait_for("redis.waiting", worker=index)
        path.write_text(path.read_text() + GOOD_ADDITIONS)
        served.proc.send_signal(signal.SIGHUP)
        redis_proc.start()
        served.wait_for("config.reloaded", count=workers)
        served.wait_for("supervisor.ready" if workers > 1 else "serve.ready")
        assert served.proc.poll() is None
        assert not served.find("worker.exited")
        event = served.find("config.reloaded")[0]
        assert event["changes"]["clients"] == {"added": ["nas-new"]}
    finally:
        served.stop()
        redis_proc.stop()


def test_what_waits_for_a_restart_is_kept_and_named(tmp_path: Path) -> None:
    """Pure: sockets, SMS, keys stay as running (named, never valued); the rest applies.
    A port of 0 in the file is satisfied by whatever port is bound."""
    path = write_config(tmp_path, "redis://127.0.0.1:1/0")
    running = load_config(path)
    running = dataclasses.replace(  # as a worker runs it: the supervisor's concrete ports
        running, radius=dataclasses.replace(running.radius, auth_port=41812, acct_port=41813)
    )
    text = path.read_text().replace("daily_seconds = 7200", "daily_seconds = 3600")
    text += '\n[sms]\nbackend = "file"\npath = "elsewhere.jsonl"\n'
    text += '\n[portal]\ncookie_key = "another-cookie-key-0123456789"\n'
    path.write_text(text)
    loaded = load_config(path)
    assert restart_needed(running, loaded) == ["sms.path", "portal.cookie_key"]
    new = adopt(running, loaded)
    assert new.sms == running.sms and new.radius == running.radius
    assert new.portal.cookie_key == running.portal.cookie_key
    assert new.quota.daily_seconds == 3600
    assert changes(running, new) == {"settings": ["quota"]}
