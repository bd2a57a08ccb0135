"""The console's operations pieces (issue 17) against live servers:

- "disconnect all of this person's sessions": the simulated NAS receives one RFC 5176
  Disconnect-Request per open session of that person and no other; the page shows each
  NAS answer; admin only, CSRF, audited with the account;
- an operator account's persons online, counted at its own NAS;
- on a real ``citywifi serve`` (two workers): ``[[clients]] trace = true`` logs the
  decoded exchange with the password redacted from the first packet, no switch turned
  on; a SIGHUP with a changed registry is recorded in Redis and every worker's
  ``/console/registry`` shows the same diff; a refused file shows check-config's words;
  the reload turns the configured trace off;
- every console page rendered in zh-CN with no key left untranslated.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from bench.nas_sim import NasSimulator
from controller.cli.serve import Controller
from controller.config import Config
from controller.services.accounts import Accounts
from controller.services.audit import AuditQuery, query_records
from controller.services.registry_view import ClientRow, RegistryView, ReloadStatus, VenueRow
from controller.services.reload_status import ReloadRecord
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from controller.web.console import lang, pages
from controller.web.console.person import CredentialRow
from tests.conftest import SECRET
from tests.support.console_kit import (
    HOSPITAL_NAS,
    PASSWORD,
    RELOADED,
    SIM_NAS,
    Browser,
    hospital_city,
    running,
    sim_device,
    start_sim,
)
from tests.support.pyrad_client import RadiusClient
from tests.support.redis_proc import RedisProcess, wait_until
from tests.test_reports_helpers import city_config
from tests.test_workers import Served

OPS_ACCOUNTS = {  # name -> roles
    "boss": ["admin"],
    "ops": ["operations"],
    "tel": ["operator:op-telecom"],
    "uni": ["operator:op-unicom"],
    "mob": ["operator:op-mobile"],
}


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return hospital_city(tmp_path, redis_proc.url, SIM_NAS)


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    async with running(city, OPS_ACCOUNTS) as controller:
        yield controller


@pytest.fixture
async def sim(ctl: Controller) -> AsyncIterator[NasSimulator]:
    nas = await start_sim(ctl)
    yield nas
    await nas.stop()


def _ref_of(page: str, acct_session_id: str) -> str:
    found = re.search(rf'data-ref="([0-9a-f]+\|nas-sim/{re.escape(acct_session_id)})"', page)
    assert found, acct_session_id
    return found.group(1)


async def _form(b: Browser, path: str = "/console/sessions") -> str:
    """The CSRF field of a page of the signed-in console (the nonce cookie is path-wide)."""
    status, page, _ = await b.request("GET", path)
    assert status == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


async def test_disconnect_all_of_a_person(
    ctl: Controller, sim: NasSimulator, http: aiohttp.ClientSession
) -> None:
    assert ctl.store is not None and ctl.archiver is not None
    base = f"http://127.0.0.1:{ctl.http_port}"
    first = await sim_device(ctl, sim, "+8613800138001", "AA-BB-CC-00-00-01")
    second = await sim_device(ctl, sim, "+8613800138001", "AA-BB-CC-00-00-02")
    other = await sim_device(ctl, sim, "+8613800138002", "AA-BB-CC-00-00-03")
    boss, ops = Browser(base, http), Browser(base, http)
    assert await boss.sign_in("boss") == 303 and await ops.sign_in("ops") == 303
    status, listed, _ = await boss.request("GET", "/console/sessions?nas=nas-sim")
    assert status == 200 and '<span id="count">3</span>' in listed
    assert listed.count('class="disconnect-person"') == 3
    ref = _ref_of(listed, second.acct_session_id)
    pid = ref.split("|")[0]

    # operations may look, not act; a form without the CSRF token is refused
    assert "disconnect-person" not in (await ops.request("GET", "/console/sessions"))[1]
    form = {"csrf": await _form(ops), "ref": ref}
    status, page, _ = await ops.request("POST", "/console/sessions/disconnect-person", data=form)
    assert status == 403 and "no role" in page
    status, _, _ = await boss.request(
        "POST", "/console/sessions/disconnect-person", data={"ref": ref}
    )
    assert status == 403
    form = {"csrf": await _form(boss), "ref": "not|a-session"}
    assert (await boss.request("POST", "/console/sessions/disconnect-person", data=form))[0] == 400
    assert sim.dae_requests == 0

    form = {"csrf": await _form(boss), "ref": ref}
    status, page, _ = await boss.request("POST", "/console/sessions/disconnect-person", data=form)
    assert status == 200
    assert sim.dae_requests == 2  # one Disconnect-Request per open session of the person
    assert first.acct_session_id not in sim.sessions
    assert second.acct_session_id not in sim.sessions
    assert other.acct_session_id in sim.sessions  # another person stays online
    assert f"Disconnect all of person {pid[:6]}…: 2 session(s), acked 2" in page
    results = re.findall(r'<td class="result" data-result="([a-z_]+)">', page)
    assert results == ["acked", "acked"]
    assert (
        f"nas-sim/{first.acct_session_id}" in page and f"nas-sim/{second.acct_session_id}" in page
    )

    # again: nothing open any more, no Disconnect sent
    form = {"csrf": await _form(boss), "ref": ref}
    status, page, _ = await boss.request("POST", "/console/sessions/disconnect-person", data=form)
    assert status == 200 and "0 session(s), none open" in page and sim.dae_requests == 2

    await ctl.archiver.flush()
    now = int(time.time())
    rows = query_records(ctl.archive, ctl.config, AuditQuery(now - 120, now + 60), now)
    acts = [(r.result, r.cause) for r in rows if r.kind == "console"
            and r.result.startswith("disconnect-person")]  # fmt: skip
    assert acts == [
        ("disconnect-person acked 2", f"by boss on {pid}"),
        ("disconnect-person none open", f"by boss on {pid}"),
    ]


async def test_an_operator_sees_its_own_persons_online(
    ctl: Controller, sim: NasSimulator, http: aiohttp.ClientSession
) -> None:
    """nas-sim is at the mall (op-mobile): mobile's account counts the person with two
    devices there once; unicom's and telecom's count none; the city account gets no
    operator figure (its figure is citywifi_persons_online)."""
    base = f"http://127.0.0.1:{ctl.http_port}"
    await sim_device(ctl, sim, "+8613800138001", "AA-BB-CC-00-00-01")
    await sim_device(ctl, sim, "+8613800138001", "AA-BB-CC-00-00-02")
    await sim_device(ctl, sim, "+8613800138003", "AA-BB-CC-00-00-04")
    seen = {}
    for name in ("mob", "uni", "tel", "ops"):
        b = Browser(base, http)
        assert await b.sign_in(name) == 303
        status, body, _ = await b.request("GET", "/console/api/overview")
        assert status == 200
        seen[name] = json.loads(body)
    assert seen["mob"]["operator_persons"] == 2 and seen["mob"]["persons"] == "—"
    assert seen["uni"]["operator_persons"] == seen["tel"]["operator_persons"] == 0
    assert seen["ops"]["operator_persons"] is None


# --------------------------------------------------------------------------- serve + SIGHUP

TRACED = f'\nsecret = "{SECRET}"\nvenue = "station"\n'
PAP_PASSWORD = "pap-password-do-not-log"


@pytest.fixture
def served(tmp_path: Path, redis_proc: RedisProcess) -> Iterator[tuple[Served, Path, int]]:
    path = city_config(tmp_path, redis_proc.url, HOSPITAL_NAS)
    text = path.read_text().replace('level = "warning"', 'level = "info"')
    assert text.count(TRACED) == 1  # nas-local's entry
    path.write_text(text.replace(TRACED, TRACED + "trace = true\n"))
    served = Served(path, workers=2)
    try:
        served.wait_for("supervisor.ready")
        yield served, path, int(served.find("supervisor.ready")[0]["http_port"])
    finally:
        served.stop()


async def _access(auth_port: int, password: str) -> Any:
    async with RadiusClient(
        ("127.0.0.1", auth_port), SECRET.encode(), local_addr=("127.0.0.1", 0)
    ) as c:
        return await c.request(
            c.auth_request(User_Name="nobody-here", password=password), timeout=2.0, retries=1
        )


@pytest.mark.multiprocess
async def test_configured_trace_and_reload_status_on_a_real_serve(
    served: tuple[Served, Path, int],
    redis_proc: RedisProcess,
    http: aiohttp.ClientSession,
) -> None:
    proc, path, http_port = served
    ready = proc.find("supervisor.ready")[0]
    r = redis.Redis(host="127.0.0.1", port=redis_proc.port)
    store = Store(client_from_url(redis_proc.url))
    try:
        await Accounts(store).add("ops", PASSWORD, ["operations"], totp=False, by="test")
        await Accounts(store).add("tel", PASSWORD, ["operator:op-telecom"], totp=False, by="test")
        base = f"http://127.0.0.1:{http_port}"

        # 1. trace = true: the first exchange is traced, decoded, password redacted,
        # without anyone turning the switch on
        assert r.zcard("cw:trace:on") == 0
        await _access(int(ready["auth_port"]), PAP_PASSWORD)
        proc.wait_for("radius.trace", client="nas-local", direction="out")
        inbound = proc.find("radius.trace", client="nas-local", direction="in")
        packet = "\n".join(inbound[0]["packet"])
        assert "Access-Request" in packet and '\tUser-Name = "nobody-here"' in packet
        assert "\tUser-Password = <redacted, 32 octets>" in packet  # 23 characters, padded
        assert PAP_PASSWORD not in "".join(proc.lines) and SECRET not in "".join(proc.lines)
        assert r.zcard("cw:trace:on") == 0
        # and in the client's trace stream, which `citywifi trace` prints (written once a second)
        wait_until(lambda: r.xlen("cw:trace:log:nas-local") >= 2, 10, 0.05, "the trace stream")

        # 2. a SIGHUP with a changed registry: a venue and a client added, nas-local's
        # trace removed; recorded once in Redis, the same on every worker's page
        ops = Browser(base, http)
        assert await ops.sign_in("ops") == 303
        status, page, _ = await ops.request("GET", "/console/registry")
        assert status == 200 and "none recorded" in page
        assert 'class="traced">on</strong> <span class="muted">(config)' in page
        before = int(time.time())
        path.write_text(path.read_text().replace("trace = true\n", "") + RELOADED)
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("config.reloaded", count=2)
        # a worker logs config.reloaded before it writes the outcome to Redis: poll for it
        wait_until(lambda: r.exists("cw:stats:reload") == 1, 10, 0.05, "the reload status")
        raw = r.get("cw:stats:reload")
        assert raw is not None
        record = json.loads(raw)
        assert record["result"] == "ok" and record["at"] >= before
        assert record["changes"] == {
            "clients": {"added": ["nas-new"], "changed": {"nas-local": ["trace"]}},
            "venues": {"added": ["library"]},
        }
        for _ in range(4):  # requests spread over both workers: the same answer
            status, body, _ = await ops.request("GET", "/console/api/registry")
            assert status == 200
            last = json.loads(body)["reload"]["last"]
            assert (last["result"], last["changes"]) == ("ok", record["changes"])
            assert {c["id"]: c["trace"] for c in json.loads(body)["clients"]}["nas-local"] == "off"
        status, page, _ = await ops.request("GET", "/console/registry")
        assert status == 200 and 'data-result="ok"' in page
        assert (
            '<li data-kind="clients" data-what="added">RADIUS clients added: nas-new</li>' in page
        )
        assert "RADIUS clients changed: nas-local (trace)" in page
        assert "venues added: library" in page
        for secret in ("new-secret-3-0123456789", SECRET):
            assert secret not in page and secret not in raw.decode()
        # the reload turned the configured trace off: the next exchange is not traced
        count = len(proc.find("radius.trace", client="nas-local"))
        await _access(int(ready["auth_port"]), PAP_PASSWORD)
        await _access(int(ready["auth_port"]), PAP_PASSWORD)
        assert len(proc.find("radius.trace", client="nas-local")) == count

        # an operator's account sees when and whether, not the city's ids
        tel = Browser(base, http)
        assert await tel.sign_in("tel") == 303
        last = json.loads((await tel.request("GET", "/console/api/registry"))[1])["reload"]["last"]
        assert set(last) == {"at", "at_local", "result"} and last["result"] == "ok"
        page = (await tel.request("GET", "/console/registry"))[1]
        assert 'data-result="ok"' in page and 'id="reload-changes"' not in page

        # 3. a refused file: the problems in check-config's words, the old config kept
        path.write_text(path.read_text() + '\n[[clients]]\nid = "nas-x"\naddress = "127.0.0.8"\n')
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_for("config.reload_refused", count=2)
        wait_until(
            lambda: json.loads(r.get("cw:stats:reload") or b"{}").get("result") == "refused",
            10,
            0.02,
            "the refused reload recorded",
        )
        status, page, _ = await ops.request("GET", "/console/registry")
        assert status == 200 and 'data-result="refused"' in page
        problems = json.loads(r.get("cw:stats:reload") or b"{}")["problems"]
        assert problems and all(f"{path}:" in p for p in problems)
        assert any("secret" in p for p in problems)
        assert '<ul id="reload-problems">' in page
    finally:
        await store.close()
        r.close()


# --------------------------------------------------------------------------- zh-CN


def _keys_in(page: str) -> list[str]:
    """Catalogue keys shown as such (a text that was never looked up)."""
    return [k for k in lang.catalogue()["en"] if re.search(rf"(?<![\w.]){re.escape(k)}\b", page)]


def _untranslated(page: str) -> list[str]:
    """English texts of the catalogue (those zh-CN says differently) left in a zh page."""
    en, zh = lang.catalogue()["en"], lang.catalogue()["zh"]
    left = [
        text
        for key, text in en.items()
        if text != zh[key]
        and " " in text
        and "{" not in text
        and text in page
        and re.search("[A-Za-z]{2}", text)  # a sentence, not punctuation (", ")
    ]
    return left + _keys_in(page)


ALLOWED_LATIN = {"English", "MAC", "NAS-Identifier", "RADIUS", "API", "Redis", "IP"}


def _visible(page: str) -> str:
    """The text a reader sees (not markup, styles, scripts or attributes)."""
    return re.sub(r"<style>.*?</style>|<script[^>]*>.*?</script>|<[^>]+>", " ", page, flags=re.S)


def _latin_words(page: str) -> set[str]:
    """Latin-script words a reader sees on the page."""
    return set(re.findall(r"[A-Za-z][A-Za-z-]{2,}", _visible(page))) - ALLOWED_LATIN


def _nas_pages_in(language: str) -> dict[str, dict[str, Any]]:
    """The overview and NAS pages' values, every branch shown (operator scope, a silent
    NAS, one never heard from, one talking, drops, rejects, every kind of counter), made
    by the same functions the routes use, with their words in ``language``."""
    from zoneinfo import ZoneInfo

    from controller.domain.nas_health import NasHealth
    from controller.services.nas_stats import NasDetail, ScopeFigures
    from controller.services.overview import CityOverview, NasSeen
    from controller.web.console import nas

    tz, at = ZoneInfo("Asia/Shanghai"), 1_800_000_000
    overview = CityOverview(
        scope=frozenset({"op"}),
        persons=None,
        sessions_by_type=(("shopping_mall", 2), ("mall", 1)),
        counted_at=at,
        redis_used=3 << 20,
        redis_limit=None,
        outbox_backlog=None,
        nas=(NasSeen("nas", None, 0), NasSeen("nas", at - 1200, 1200), NasSeen("nas", at, None)),
    )
    bins = [(at // 60 - 30, 3)]
    figures = ScopeFigures(
        3,
        {"bad_password": 2, "exhausted": 1, "eap_wrong_password": 1},
        {"ack": 1, "nak": 0, "timeout": 1},
        {"ok": 4, "failed": 1},
        {"accept": bins, "reject": bins, "drop": bins},
    )
    o = pages.overview_json(overview, tz, language) | nas.figures_json(figures, tz, language)

    def health(last: int | None, silent: int | None) -> NasHealth:
        requests = {"auth:accept": 3, "acct:ok": 2}
        return NasHealth("nas", "mall", "op", last, silent, 1.5, requests, {}, {}, 1)

    talking = health(at, None)
    dropping = NasHealth(
        "nas", "mall", "op", at, None, 0.5, {}, {"overload": 2, "malformed": 1}, {"ack": 1}, 0
    )
    rows = [health(None, 0), health(at - 1200, 1200), talking, dropping]
    n = {
        "scope": ["op"],
        "at": nas._clock(at, tz, language),
        "nas": [nas.row_json(h, tz, language) for h in rows],
    }
    totals = {
        "auth:accept": 3,
        "auth:reject": 1,
        "auth:challenge": 4,
        "acct:ok": 2,
        "reject:bad_password": 1,
        "drop:overload": 1,
        "dis:ack": 1,
        "dis:timeout": 1,
        "coa:nak": 1,
    }
    recent = [(at // 60, {"req": 3, "accept": 2, "reject": 1, "drop": 1, "dis_ok": 1})]
    detail = NasDetail(talking, totals, recent, [(at // 60 - 30, 3)])
    d = nas.detail_body(detail, [], tz, language)
    message = lang.error_text(language, "nas.no_such_client", "no such RADIUS client")
    refresh = {"nonce": "n", "refresh": 3}
    return {
        "overview.html": dict(title="t", o=o, **refresh),
        "nas.html": dict(title="t", n=n, **refresh),
        "nas_one.html": dict(title="t", d=d, **refresh),
        "nas_refused.html": dict(title="t", message=message, client="nas"),
    }


def test_the_catalogues_have_the_same_keys_and_every_template_key_exists() -> None:
    en, zh = lang.catalogue()["en"], lang.catalogue()["zh"]
    assert set(en) == set(zh)
    folder = Path(pages.__file__).parents[3] / "portal_pages" / "console"
    pages_ = ("base", "login", "forbidden", "sessions", "registry", "person", "overview")
    for name in (*pages_, "nas", "nas_one", "nas_refused"):
        for key in re.findall(r't\("([a-z_.]+)"', (folder / f"{name}.html").read_text()):
            if not key.endswith("."):
                assert key in en, (name, key)


def test_every_code_a_page_shows_has_a_name_in_both_languages() -> None:
    """NAS answers (``SessionOutcome.result``, and ``not_open``) and reload change kinds
    are named from the catalogue (an unknown one would show as its code)."""
    import inspect

    from controller.config import reload as config_reload
    from controller.services import enforcer

    results = re.findall(r"result: str  # (.*)", inspect.getsource(enforcer.SessionOutcome))
    codes = [c.strip() for c in results[0].split("|")] + ["not_open"]
    kinds = [*re.findall(r'"(\w+)": \(', inspect.getsource(config_reload.changes)), "settings"]
    assert "acked" in codes and "clients" in kinds and "api_tokens" in kinds
    for language in lang.LANGS:
        for code in codes:
            assert f"result.{code}" in lang.catalogue()[language], code
        for kind in kinds:
            assert f"registry.kind.{kind}" in lang.catalogue()[language], kind
        for what in ("added", "removed", "changed"):
            assert f"registry.what.{what}" in lang.catalogue()[language]
    assert lang.code_name("zh", "result.", "new_code") == "new_code"


def test_every_console_page_renders_in_zh_cn_without_an_untranslated_key() -> None:
    """Each template with every branch shown (notices, results, problems, changes,
    blocked, can act), in zh-CN: no key text, no English sentence of the catalogue."""
    from controller.services.enforcer import SessionOutcome
    from controller.services.live_sessions import FilterChoices, LiveSession, SessionFilter

    common = dict(brand="城市WiFi", user="li.wei", csrf="tok")
    session = LiveSession(
        "ab|nas/1", "ab…", "nas", "mall", "shopping_mall", "op", "AA", "10.0.0.2", "s", "l"
    )
    reload = ReloadRecord(
        at=1_800_000_000,
        ok=True,
        changes={
            "clients": {"added": ["n"], "removed": ["m"], "changed": {"x": ["trace"]}},
            "venues": {"added": {"first": ["a"], "more": 3}},
            "access_points": {"removed": ["ap"]},
            "operators": {"added": ["o"]},
            "api_tokens": {"changed": {"t": ["roles"]}},
            "settings": ["quota"],
        },
        restart_needed=("radius.auth_port",),
    )
    view = RegistryView(
        "/etc/c.toml",
        (VenueRow("mall", "Mall", "mall", "d", "op", 1),),
        (ClientRow("nas", "10.0.0.0/24", "mall", "generic", ""),),
        ReloadStatus(False, 1, 2),
    )
    from controller.web.console.registry import change_lines

    person = {
        "person": "ab",
        "day": "2026-12-02",
        "used_seconds": 600,
        "daily_seconds": 7200,
        "projected_exhaustion": "18:00",
        "blocked": {"until": "2026-12-03", "reason": "r"},
        "sessions": [{"client": "nas", "mac": "AA", "ip": "ip", "venue": "v", "start": "s"}],
    }
    renders = {
        "login.html": dict(title="t", error="e"),
        "forbidden.html": dict(title="t", needed="admin"),
        "sessions.html": dict(
            title="t",
            sessions=[session],
            want=SessionFilter(),
            page=200,
            scope=["op"],
            can_act=True,
            notice="n",
            results=(SessionOutcome("nas/1", "nas", "acked"),),
            choices=FilterChoices(("mall",), ("op",), ("nas",), ("mall",)),
            filters="nas=nas",
        ),
        "registry.html": dict(
            title="t",
            r=view,
            scope=None,
            traced=frozenset({"nas"}),
            by_config=frozenset(),
            can_trace=True,
            notice="n",
            last=reload,
            last_at="2027-01-15 08:00:00",
            changes=change_lines(dict(reload.changes)),
        ),
        **_nas_pages_in("zh"),
        "person.html": dict(
            title="t",
            p=person,
            notice="n",
            error="",
            can_act=True,
            credentials=[CredentialRow("tok@nas", "", "2026-12-31 00:00")],
        ),
    }
    for template, values in renders.items():
        for refused in (False, True):
            if refused and template != "registry.html":
                continue
            if refused:
                values = {**values, "last": ReloadRecord(at=1, ok=False, problems=("p",))}
            page = pages.render(template, lang="zh", **common, **values)  # type: ignore[arg-type]
            assert '<html lang="zh-CN">' in page, template
            assert _untranslated(page) == [], (template, _untranslated(page))
            data = {"nas", "mall", "generic", "toml", "etc", "trace", "roles", "quota"}
            data |= {"radius", "auth", "port", "admin", "tok", "Mall", "WiFi", "wei"}
            data |= {"metrics", "citywifi", "MiB"}  # a path, a metric prefix, a unit
            assert _latin_words(page) - data == set(), template  # no text left in English
            if template in ("sessions.html", "overview.html"):  # venue types by name
                assert "商场" in page and "shopping_mall" not in _visible(page), template
            english = pages.render(template, lang="en", **common, **values)  # type: ignore[arg-type]
            assert _keys_in(english) == [], template


async def test_the_language_is_chosen_like_the_portals(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    """Accept-Language, then ?lang= (kept in a cookie for the next pages)."""
    base = f"http://127.0.0.1:{ctl.http_port}"
    b = Browser(base, http)
    status, page, _ = await b.request("GET", "/console/login")
    assert status == 200 and '<html lang="en">' in page and "Sign in" in page
    zh = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    status, page, _ = await b.request("GET", "/console/login", headers=zh)
    assert '<html lang="zh-CN">' in page and "用户名" in page and _untranslated(page) == []
    status, page, _ = await b.request("GET", "/console/login?lang=zh")
    assert '<html lang="zh-CN">' in page and b.cookies.get("cw_console_lang") == "zh"
    assert await b.sign_in("boss") == 303  # the cookie: in Chinese from now on
    pages_ = ("/console/sessions", "/console/registry", "/console/person", "/console/overview")
    for path in (*pages_, "/console/nas", "/console/nas/nas-sim"):
        status, page, _ = await b.request("GET", path)
        assert status == 200 and '<html lang="zh-CN">' in page, path
        assert _untranslated(page) == [], (path, _untranslated(page))
        assert 'id="lang"' in page  # the switch, on the pages it changes
        if path == "/console/registry":  # venue names in the page's language
            assert "石家庄站" in page and "Shijiazhuang Railway Station" not in page
    status, page, _ = await b.request("GET", "/console/nas/nobody")  # refused, in Chinese
    assert status == 404 and "配置中没有此 RADIUS 客户端" in page and _untranslated(page) == []
    form = {"csrf": await _form(b), "user": "boss", "password": "wrong password 1"}
    status, page, _ = await b.request("POST", "/console/login", data=form)
    assert status == 401 and "用户名、密码或动态验证码错误" in page
    ops = Browser(base, http)
    assert await ops.sign_in("ops") == 303
    status, page, _ = await ops.request("GET", "/console/person?lang=zh")
    assert status == 403 and "您的账号没有查看此页面的角色" in page
    assert "（admin 或 audit）" in page  # the roles, joined in the page's words
    status, page, _ = await b.request("GET", "/console/sessions?lang=en")
    assert '<html lang="en">' in page and b.cookies.get("cw_console_lang") == "en"
