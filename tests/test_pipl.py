"""PIPL controls (issue 18 item 6), on a simulated clock, with a real Redis and archive:

- ``person erase`` deletes the number binding, credentials, remembered devices, MAC
  memory, SMS codes, rate-limit logs, portal memory and EAP credentials of one person;
  a listing of EVERY Redis key and value afterwards finds neither the number nor the
  person id outside the anonymous usage families, which stay (with an expiry), like the
  ledger rows; another person keeps everything; the erasure is in the export log.
- After the retentions (audit log, phone profile, ledger rows, export log) every archive
  file and every row is listed: no number, no person id of the erased or the expired
  person is left; the per-venue figures are.
- ``person export`` returns the person's own records (round trip through JSON), never an
  EAP secret hash; the command line does both.
- The privacy page shows the configured handler, contact and retention, zh and en.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.cli.serve import Controller
from controller.config import Config, load_config
from controller.domain.eap_credentials import EapCredential
from controller.services import persons
from controller.services.reports.query import LedgerReader
from controller.storage import keys
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.store import Store
from radius.attrs import Code
from tests.support.redis_proc import RedisProcess, until
from tests.test_radius_integration import acct, auth, login
from tests.test_reports_helpers import AP, PHONES, SH, TOKENS, Clock, city_config, drain, use

PRIVACY = """
[privacy]
handler = { zh = "石家庄市大数据局", en = "Shijiazhuang Big Data Bureau" }
contact_email = "privacy@wifi.sjz.gov.cn"
contact_phone = "0311-12345678"
contact_address = { zh = "石家庄市长安区中山东路 1 号", en = "1 Zhongshan East Road, Chang'an" }
usage_retention_days = 400
"""

ANONYMOUS_INDEXES = {keys.OPEN_INDEX, keys.DUE_INDEX}  # sessions and the enforcer's schedule


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return load_config(city_config(tmp_path, redis_proc.url, PRIVACY))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 11, 10, 12, 0, tzinfo=SH))


@pytest.fixture
async def ctl(city: Config, clock: Clock) -> Any:
    controller = Controller(city, clock=clock)
    await controller.start()
    yield controller
    await controller.stop()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def every_key(store: Store) -> dict[str, tuple[str, int]]:
    """Every key in Redis (SCAN) -> (its whole content as text, its TTL)."""
    redis = store.redis
    out: dict[str, tuple[str, int]] = {}
    async for raw in redis.scan_iter(match="*", count=1000):
        key = _text(raw)
        kind = _text(await redis.type(key))
        content: Any
        if kind == "string":
            content = await redis.get(key)
        elif kind == "hash":
            content = await redis.hgetall(key)
        elif kind == "set":
            content = sorted(await redis.smembers(key))
        elif kind == "zset":
            content = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            content = await redis.lrange(key, 0, -1)
        elif kind == "stream":
            content = await redis.xrange(key)
        else:
            continue  # gone between SCAN and TYPE
        out[key] = (_text(content), int(await redis.ttl(key)))
    return out


def traces(listing: dict[str, tuple[str, int]], *needles: str) -> dict[str, tuple[str, int]]:
    """The keys whose name or content holds one of ``needles``."""
    return {k: v for k, v in listing.items() if any(n in k or n in v[0] for n in needles if n)}


def usage_only(found: dict[str, tuple[str, int]], pid: str) -> list[str]:
    """The keys among ``found`` that are NOT anonymous usage of the person."""
    bad = []
    for key in found:
        family = keys.person_family(key, pid)
        if family in keys.USAGE_FAMILIES or key in ANONYMOUS_INDEXES:
            continue
        if family == "c" and "used_at" in found[key][0]:  # a consumed one: the session's
            continue
        if key.startswith(keys.nas_sessions("")):  # the NAS's open-session set: "pid|sid"
            continue
        bad.append(key)
    return bad


async def personal_state(ctl: Controller, person: str, mac: str) -> str:
    return (await personal_state_with_login(ctl, person, mac))[0]


async def personal_state_with_login(ctl: Controller, person: str, mac: str) -> tuple[str, str]:
    """One person with everything a person leaves: a closed session (ledger, audit row),
    an Access-Accept (MAC memory, login record), a remembered-device cookie, an SMS code,
    rate-limit logs, portal memory, an EAP credential. Returns the person id and the
    username of the accepted login."""
    assert ctl.store is not None
    store = ctl.store
    pid = await use(ctl, person, "station", 600, f"s-{person}", mac=mac)
    issued = await login(ctl, mac=mac, phone=PHONES[person])
    reply = await auth(ctl, issued.username, issued.password, mac=mac)
    assert reply.code == 2  # Access-Accept: the device is remembered for MAC re-auth
    assert await store.mac_owner(mac) == pid
    real = int(time.time())  # what Redis expires by (EXPIREAT): the real clock
    await store.device_token_put(pid, f"tok-{person}", real + 86400, real, 5)
    await store.otp_put(f"{pid}:dev-{person}", "digest", 300, int(ctl.clock()))
    rules = [(5, 3_600_000)]
    checks = [("phone", pid, rules), ("verify_device", f"{pid}:dev-{person}", rules)]
    await store.rate_hit(checks, int(ctl.clock() * 1000), "m1", record=True)
    await store.remember_client(f"10.9.0.{ord(person)}", {"pid": pid, "nas": "nas-local"}, 600)
    credential = EapCredential(
        username=f"u{person.lower()}@wifi.example.cn",
        person_id=pid,
        secret_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
        issued_at=real,
        expires_at=real + 30 * 86400,
        label="phone",
    )
    await EapCredentialStore(store.redis).save(credential)
    return pid, issued.username


def archive_listing(ctl: Controller) -> dict[str, str]:
    """Every file under the archive root -> its content as text (Parquet: every row)."""
    out: dict[str, str] = {}
    for path in sorted(ctl.archive.root.rglob("*")):
        if not path.is_file():
            continue
        name = str(path.relative_to(ctl.archive.root))
        if path.suffix == ".parquet" and "quarantine" not in path.parts:
            quoted = str(path).replace("'", "''")
            rows = ctl.archive.query(f"SELECT * FROM read_parquet('{quoted}')")
            out[name] = repr(rows)
        else:
            out[name] = path.read_text(errors="replace")
    return out


async def test_erase_then_retention_leaves_no_personal_record(
    ctl: Controller, clock: Clock
) -> None:
    assert ctl.store is not None and ctl.archiver is not None
    store, phone_a, phone_b = ctl.store, PHONES["A"], PHONES["B"]
    a, username = await personal_state_with_login(ctl, "A", "AA-BB-CC-00-00-0A")
    b = await personal_state(ctl, "B", "AA-BB-CC-00-00-0B")
    await drain(ctl)
    before = await every_key(store)
    assert usage_only(traces(before, a, phone_a), a)  # personal records are there to erase
    used_before = await store.used_on(a, "20251110")
    assert used_before == 600

    answer = await persons.erase(store, ctl.archive, ctl.config, a, who="test", now=clock())
    assert answer["person"] == a
    erased = answer["erased"]
    for family in ("p", "c", "dev", "otp", "rl", "mac", "pc", "eap_credentials"):
        assert erased.get(family, 0) >= 1, (family, erased)
    # nothing is disconnected: the accepted login's session goes on being accounted
    reply = await acct(ctl, "Start", "s-A-on", 0, user=username, mac="AA-BB-CC-00-00-0A")
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    args = {"Called_Station_Id": f"{AP['station']}:i-Test"}
    await acct(ctl, "Interim-Update", "s-A-on", 300, user=username, mac="AA-BB-CC-00-00-0A", **args)
    assert await store.used_on(a, "20251110") == used_before + 300
    stop = {**args, "Acct_Terminate_Cause": "User-Request"}
    await acct(ctl, "Stop", "s-A-on", 300, user=username, mac="AA-BB-CC-00-00-0A", **stop)
    # ... but no way back in: the credential is used, the MAC and the devices forgotten
    again = await auth(ctl, f"{a}.zzzzzzzz", "wrong", mac="AA-BB-CC-00-00-0A")
    assert again.code == Code.ACCESS_REJECT
    mac_login = await auth(ctl, "AA-BB-CC-00-00-0A", None, mac="AA-BB-CC-00-00-0A")
    assert mac_login.code == Code.ACCESS_REJECT
    await drain(ctl)

    after = await every_key(store)
    left = traces(after, a, phone_a, phone_a.removeprefix("+86"))
    assert usage_only(left, a) == [], left  # only anonymous usage names the person now
    assert not traces(after, phone_a, phone_a.removeprefix("+86"))  # the number: nowhere
    expiring = {k: t for k, (_, t) in left.items() if keys.person_family(k, a) is not None}
    assert expiring and all(t > 0 for t in expiring.values()), expiring  # the usage expires
    # (the global session indexes name the open session until it closes or goes stale)
    assert await store.used_on(a, "20251110") == used_before + 300  # the usage adds up
    assert await store.mac_owner("AA-BB-CC-00-00-0A") is None  # no MAC re-auth any more
    assert await store.person_phone(a) is None
    # the other person keeps everything
    assert await store.person_phone(b) == phone_b
    assert await store.mac_owner("AA-BB-CC-00-00-0B") == b
    assert await store.device_token_valid(b, "tok-B", int(time.time()))
    assert [c.username for c in await EapCredentialStore(store.redis).for_person(b)] == [
        "ub@wifi.example.cn"
    ]
    log = ctl.archive.export_log()
    erasure = [e for e in log if e.get("query") == "erase"]
    assert erasure and erasure[-1]["person_ids"] == [a] and erasure[-1]["who"] == "test"
    assert phone_a not in json.dumps(log) and phone_a[3:] not in json.dumps(log)

    # the ledger keeps the anonymous usage of the erased person until its own retention
    report = LedgerReader(ctl.archive, ctl.config, clock())
    assert report.persons(datetime(2025, 11, 10).date(), datetime(2025, 11, 10).date(), "venue")

    # ... and the retentions end: audit log (60 d), profiles (180 d), ledger rows (400 d),
    # export log (1095 d). Day by day the archive upkeep runs on the simulated clock.
    aside = ctl.archive.root / "quarantine" / "audit" / "2025-11-10" / "part-1-bad.parquet"
    aside.parent.mkdir(parents=True)
    aside.write_text(f"unreadable, but it holds {phone_a} and {a}")  # set aside by a read
    for moment in (
        datetime(2025, 11, 12, 12, 0, tzinfo=SH),  # seal the days
        datetime(2029, 1, 1, 12, 0, tzinfo=SH),  # past every retention
    ):
        clock.set(moment)
        await asyncio.to_thread(ctl.archiver.maintain, clock(), wait=True)
        ctl.archiver._last_purge = float("-inf")
        await ctl.archiver.purge_if_due()

    files = archive_listing(ctl)
    assert any(name.endswith("figures-2.parquet") for name in files)  # the figures stay
    for pid, phone in ((a, phone_a), (b, phone_b)):  # erased, and expired
        for name, content in files.items():
            for needle in (pid, phone, phone.removeprefix("+86")):
                assert needle not in content, (name, needle)
    assert not list((ctl.archive.root / "audit").iterdir())  # the audit days: gone
    assert "audit-exports.jsonl" in files  # the log itself stays, without old entries
    figures = LedgerReader(ctl.archive, ctl.config, clock()).day_venues(
        datetime(2025, 11, 10).date()
    )
    assert sum(v.seconds for v in figures) == 1500  # 600 + 300 + 600 s: they add up still

    # Redis: the enforcer's schedule forgets persons with nothing left to do ...
    assert ctl.enforcer is not None
    enforcer = ctl.enforcer

    async def forgotten() -> bool:
        if await store.redis.zscore(keys.DUE_INDEX, a) is None:
            return True
        await enforcer.tick()
        return False

    await until(forgotten, 10, "the enforcer to forget the person kept due", interval=0.05)
    # ... the expired person's profile is purged; what remains of either expires
    listing = await every_key(store)
    assert not traces(listing, phone_a, phone_b, phone_a[3:], phone_b[3:])
    assert await store.person_phone(b) is None
    for pid in (a, b):
        assert all(ttl > 0 for _, ttl in traces(listing, pid).values()), traces(listing, pid)


async def test_export_round_trip(ctl: Controller, clock: Clock) -> None:
    assert ctl.store is not None
    a = await personal_state(ctl, "A", "AA-BB-CC-00-00-0A")
    await drain(ctl)
    text = json.dumps(
        await persons.export(
            ctl.store, ctl.archive, ctl.config, PHONES["A"], a, who="test", now=clock()
        ),
        ensure_ascii=False,
    )
    doc = json.loads(text)
    assert doc["format"] == persons.EXPORT_FORMAT
    assert doc["phone"] == PHONES["A"] and doc["person_id"] == a
    assert doc["profile"]["phone"] == PHONES["A"]
    assert doc["profile"]["last_login"].startswith("2025-11-10T12:00:00")
    assert len(doc["remembered_devices"]["cookies"]) == 1
    assert [m["mac"] for m in doc["remembered_devices"]["macs"]] == ["AA-BB-CC-00-00-0A"]
    assert doc["today"] == {"day": "2025-11-10", "used_seconds": 600, "daily_seconds": 7200}
    assert [c["username"] for c in doc["eap_credentials"]] == ["ua@wifi.example.cn"]
    assert "argon2" not in text and "hash" not in json.dumps(doc["eap_credentials"])
    kinds = sorted({r["result"] for r in doc["records"]})
    assert "closed" in kinds  # the archived session, from the audit log
    assert all(r["person_id"] == a for r in doc["records"])
    assert doc["retention_days"]["audit_log"] == 60
    entry = ctl.archive.export_log()[-1]
    assert entry["query"] == "person-export" and entry["person_ids"] == [a]
    assert PHONES["A"] not in json.dumps(entry)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        check=False,
    )


async def test_the_command_line_exports_and_erases(ctl: Controller, tmp_path: Path) -> None:
    assert ctl.store is not None
    a = await personal_state(ctl, "A", "AA-BB-CC-00-00-0A")
    config = ctl.config.source
    out = tmp_path / "mine.json"
    done = await asyncio.to_thread(
        _cli, config, "person", "export", "--phone", "13800138001", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    doc = json.loads(out.read_text())
    assert doc["person_id"] == a and doc["profile"]["phone"] == PHONES["A"]

    done = await asyncio.to_thread(_cli, config, "person", "erase", "--phone", "138 0013 8001")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["person"] == a and answer["erased"]["p"] == 1
    assert PHONES["A"] not in done.stdout and "13800138001" not in done.stdout + done.stderr
    assert await ctl.store.person_phone(a) is None

    done = await asyncio.to_thread(_cli, config, "person", "export", "--phone", PHONES["A"])
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["profile"] is None and again["eap_credentials"] == []
    assert again["remembered_devices"] == {"cookies": [], "macs": []}

    bad = await asyncio.to_thread(_cli, config, "person", "erase", "--phone", "12")
    assert bad.returncode == 2 and "phone" in bad.stderr


async def test_the_privacy_page_names_the_handler_contact_and_retention(ctl: Controller) -> None:
    base = f"http://127.0.0.1:{ctl.http_port}/portal/privacy"
    async with aiohttp.ClientSession() as http:
        async with http.get(base, params={"lang": "en"}) as r:
            assert r.status == 200
            en = await r.text()
        async with http.get(base, params={"lang": "zh-CN"}) as r:
            assert r.status == 200
            zh = await r.text()
    assert "Shijiazhuang Big Data Bureau" in en
    assert "privacy@wifi.sjz.gov.cn" in en and "0311-12345678" in en
    assert "1 Zhongshan East Road" in en
    assert "login records 60 days" in en and "180 days after your last login" in en
    assert "石家庄市大数据局" in zh and "privacy@wifi.sjz.gov.cn" in zh
    assert "石家庄市长安区中山东路 1 号" in zh and "上网记录 60 日" in zh


def test_which_keys_an_erasure_deletes() -> None:
    pid, other = "a" * 20, "b" * 20
    erased = {
        keys.profile(pid): "p",
        keys.credential(pid, f"{pid}.abcdefgh"): "c",
        keys.device_tokens(pid): "dev",
        keys.eap_credentials(pid): "eap",
        keys.otp(f"{pid}:device"): "otp",
        keys.rate("phone", pid): "rl",
        keys.rate("phone_device", f"{pid}:device"): "rl",
        keys.rate("verify_phone", pid): "rl",
        keys.mac_owner("AA-BB-CC-00-00-01"): "mac",
        keys.portal_client("10.0.0.1"): "pc",
    }
    for key, family in erased.items():
        assert keys.erase_family(key, pid) == family, key
    kept = [
        keys.day_usage(pid, "20251110"),
        keys.session(pid, "nas/1"),
        keys.open_sessions(pid),
        keys.archived_mark(pid, "nas/1"),
        keys.block(pid),
        keys.profile(other),
        keys.otp(f"{other}:device"),
        keys.rate("phone", other),
        keys.rate("ip", "10.0.0.1"),
        keys.rate("device", pid + "x"),  # a value that merely starts with the id
        keys.PROFILE_INDEX,
        keys.OUTBOX,
    ]
    for key in kept:
        assert keys.erase_family(key, pid) is None, key


async def test_the_admin_api_erases(ctl: Controller) -> None:
    assert ctl.store is not None
    a = await personal_state(ctl, "A", "AA-BB-CC-00-00-0A")
    url = f"http://127.0.0.1:{ctl.http_port}/api/v1/admin/erase"
    async with aiohttp.ClientSession() as http:

        async def post(token: str, body: Any) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(url, json=body, headers=headers) as r:
                return r.status, await r.json()

        assert (await post(TOKENS["reports"], {"phone": PHONES["A"]}))[0] == 403
        assert (await post(TOKENS["admin"], {"phone": "12"}))[1]["error"] == "bad_phone"
        assert (await post(TOKENS["admin"], {"phone": 13800138001}))[0] == 400
        assert (await post(TOKENS["admin"], [1]))[0] == 400
        status, answer = await post(TOKENS["admin"], {"phone": "13800138001"})
    assert status == 200 and answer["person"] == a and answer["erased"]["p"] == 1
    assert PHONES["A"] not in json.dumps(answer)
    assert await ctl.store.person_phone(a) is None
    assert ctl.archive.export_log()[-1]["who"] == "token:ops"


async def test_only_the_audit_role_sees_numbers(ctl: Controller, clock: Clock) -> None:
    """Every export of the other roles (the usage report in each format, the admin's
    answers) carries no number; the audit export does."""
    a = await use(ctl, "A", "station", 600, "s-A")
    await drain(ctl)
    clock.set(datetime(2025, 11, 20, 12, 0, tzinfo=SH))
    needles = (PHONES["A"].encode(), PHONES["A"][3:].encode())

    async def get(path: str, token: str, **params: str) -> bytes:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{ctl.http_port}{path}", params=params, headers=headers
            ) as r,
        ):
            assert r.status == 200, (path, r.status, await r.text())
            return await r.read()

    period = {"from": "2025-11-10", "to": "2025-11-11"}
    for fmt in ("json", "csv", "xlsx"):
        body = await get("/api/v1/reports/subsidy", TOKENS["reports"], format=fmt, **period)
        texts = [body]
        if fmt == "xlsx":
            with zipfile.ZipFile(io.BytesIO(body)) as book:
                texts = [book.read(name) for name in book.namelist()]
        assert not any(n in t for n in needles for t in texts), fmt
    answer = await get("/api/v1/admin/sessions", TOKENS["admin"], phone=PHONES["A"])
    assert a.encode() in answer and not any(n in answer for n in needles)
    audit_csv = await get("/api/v1/audit/export", TOKENS["audit"], **period)
    assert PHONES["A"].encode() in audit_csv  # the audit role's export: with the number
