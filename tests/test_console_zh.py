"""The console's overview and NAS pages in Chinese over HTTP, against a live in-process
``serve`` (real Redis, real RADIUS and HTTP sockets): the JSON the pages poll speaks the
page's language (``?lang=``, the cookie the switch leaves, ``Accept-Language``), so the
figures a page refreshes say what its first render said; English without a choice.

And a NAS that only sends Status-Server keepalives (RFC 5997; FreeRADIUS's ``radclient``
in a real process) is heard: the NAS page shows it talking, not "never heard from".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.cli.serve import Controller
from controller.config import Config
from radius.tally import Tally
from tests.conftest import SECRET
from tests.support.console_kit import ACCOUNTS, Browser, base_url, hospital_city, running
from tests.support.radclient import radclient
from tests.support.redis_proc import RedisProcess, until
from tests.test_console_nas import _traffic
from tests.test_console_ops import _untranslated

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return hospital_city(tmp_path, redis_proc.url)


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    # what earlier tests in this process counted is not this city's
    async with running(city, ACCOUNTS, fresh_tally=True) as controller:
        yield controller


async def _get(b: Browser, path: str, headers: dict[str, str] | None = None) -> Any:
    status, body, _ = await b.request("GET", path, headers=headers or {})
    assert status == 200, (path, status, body)
    return json.loads(body)


def _rows(n: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["client"]: r for r in n["nas"]}


async def test_the_polled_json_speaks_the_pages_language(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.nas_stats is not None
    await _traffic(ctl)  # at nas-local: an Accept, a wrong password, a Start, a drop
    await ctl.nas_stats.flush()
    await ctl.nas_stats.refresh()
    assert ctl.online is not None
    await ctl.online.flush_seen()
    await ctl.online.refresh(lead=True)  # persons online, sessions by venue type
    ops = Browser(base_url(ctl), http)
    assert await ops.sign_in("ops") == 303

    en = await _get(ops, "/console/api/overview")  # no choice: English, codes as they were
    assert dict(en["rejects"]) == {"bad_password": 1}
    assert en["reject_names"] == {"bad_password": "wrong password"}
    assert "logins" in en["chart"] and _rows(en)["nas-hospital"]["seen"] == "never"

    zh = await _get(ops, "/console/api/overview?lang=zh")
    assert dict(zh["rejects"]) == {"bad_password": 1}  # the codes stay: /metrics' labels
    assert zh["reject_names"] == {"bad_password": "密码错误"}
    assert _rows(zh)["nas-hospital"]["seen"] == "从未"
    assert "登录、拒绝与丢弃" in zh["chart"] and "logins" not in zh["chart"]
    assert [name for name, _ in zh["by_type"]] == ["交通枢纽"]  # the station's Start
    assert "never" not in json.dumps(zh, ensure_ascii=False)

    n = await _get(ops, "/console/api/nas", headers=ZH)  # the browser's language
    assert _rows(n)["nas-hospital"]["state"] == "静默：从未收到请求"
    assert _rows(n)["nas-hospital"]["last_request"] == "从未"
    local = _rows(n)["nas-local"]
    assert local["state"] == "正常通信" and local["drops"] == {"bad_message_authenticator": 1}
    assert local["drops_text"] == "Message-Authenticator 错误 1"
    d = await _get(ops, "/console/api/nas/nas-local?lang=zh")
    assert d["totals"]["reject:bad_password"] == 1
    assert d["totals_named"]["reject:bad_password"] == "拒绝：密码错误"
    assert "请求，最近 24 小时" in d["chart"]

    status, page, _ = await ops.request("GET", "/console/overview?lang=zh")  # the switch
    assert status == 200 and '<html lang="zh-CN">' in page and _untranslated(page) == []
    assert "密码错误" in page and "'/console/api/overview?lang=' + \"zh\"" in page
    assert ops.cookies.get("cw_console_lang") == "zh"
    n = await _get(ops, "/console/api/nas")  # the cookie alone: Chinese
    assert _rows(n)["nas-local"]["state"] == "正常通信"
    status, page, _ = await ops.request("GET", "/console/nas/nas-local")
    assert status == 200 and "拒绝：密码错误" in page and _untranslated(page) == []
    assert 'data-counter="reject:bad_password"' in page
    o = await _get(ops, "/console/api/overview?lang=en")  # an explicit choice wins
    assert o["reject_names"] == {"bad_password": "wrong password"}


async def test_a_nas_sending_only_status_server_is_heard(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    """RFC 5997 keepalives from ``radclient`` (a real process) to the live server: the
    NAS page says nas-local talks (it sent nothing else), nas-hospital still never."""
    assert ctl.nas_stats is not None
    ops = Browser(f"http://127.0.0.1:{ctl.http_port}", http)
    assert await ops.sign_in("ops") == 303
    before = _rows(await _get(ops, "/console/api/nas"))
    assert before["nas-local"]["state"] == "silent: never heard from"
    for port, kind in ((ctl.auth_port, "auth"), (ctl.acct_port, "acct")):
        attrs = {"NAS-Identifier": "nas-local"}  # in a thread: the server runs on this loop
        reply = await asyncio.to_thread(radclient, port, "status", SECRET, attrs)
        assert reply.code == ("Access-Accept" if kind == "auth" else "Accounting-Response")
    await ctl.nas_stats.flush()

    async def talking() -> bool:
        rows = _rows(await _get(ops, "/console/api/nas"))
        return not rows["nas-local"]["silent"]

    await until(talking, 10, what="nas-local heard from its Status-Server")
    rows = _rows(await _get(ops, "/console/api/nas"))
    assert rows["nas-local"]["state"] == "talking" and rows["nas-local"]["last_request_at"]
    assert rows["nas-local"]["requests"] == {}  # a keepalive is not a request answered
    assert rows["nas-hospital"]["state"] == "silent: never heard from"
    status, page, _ = await ops.request("GET", "/console/nas")
    assert status == 200 and '<td class="ok">talking</td>' in page


def test_the_tally_hears_a_status_server_not_a_duplicate() -> None:
    t = Tally()
    t.answered_at_once("duplicate", "nas-a")  # its original was heard already
    t.answered_at_once("status", None)  # no configured client: never reaches here, kept out
    assert not t.take()
    t.answered_at_once("status", "nas-a")
    counted = t.take()
    assert counted.heard == {"nas-a"} and counted.counts == {}


async def test_action_errors_and_notices_in_the_pages_language(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    """The admin service's errors on the person page are named by their code from the
    catalogue; the trace switch's notice and refusals are said in the page's language;
    the sessions page names venue types."""
    boss = Browser(f"http://127.0.0.1:{ctl.http_port}", http)
    assert await boss.sign_in("boss") == 303
    assert (await boss.request("GET", "/console/person?lang=zh"))[0] == 200  # the cookie
    cases = {"": "请输入手机号码。", "12345": "手机号码无效。"}
    for phone, said in cases.items():
        form = {"csrf": await boss.csrf(), "phone": phone}
        status, page, _ = await boss.request("POST", "/console/person", data=form)
        assert status == 400 and said in page and _untranslated(page) == [], phone
    form = {"csrf": await boss.csrf(), "person": "a" * 32}
    status, page, _ = await boss.request("POST", "/console/person/unblock", data=form)
    assert status == 400 and "不是有效的用户。" in page
    form = {"csrf": await boss.csrf(), "person": "a" * 20, "days": "9999"}
    status, page, _ = await boss.request("POST", "/console/person/block", data=form)
    assert status == 400 and "天数须为 1 到 3660 的整数。" in page

    form = {"csrf": await boss.csrf(), "client": "nas-local", "minutes": "10"}
    status, _, headers = await boss.request("POST", "/console/registry/trace", data=form)
    assert status == 303
    status, page, _ = await boss.request("GET", headers["Location"])
    assert status == 200 and "nas-local 的跟踪：已开启 10 分钟" in page
    form = {"csrf": await boss.csrf(), "client": "nas-local", "minutes": "61"}
    status, page, _ = await boss.request("POST", "/console/registry/trace", data=form)
    assert status == 400 and page == "分钟数须为 0 到 60。"
    form = {"csrf": await boss.csrf(), "client": "nas-local", "minutes": "0"}
    status, _, headers = await boss.request("POST", "/console/registry/trace", data=form)
    assert "nas-local 的跟踪：已关闭" in (await boss.request("GET", headers["Location"]))[1]

    status, page, _ = await boss.request("GET", "/console/registry")  # venue types named
    assert status == 200 and "交通枢纽" in page and 'data-type="transport_hub"' in page
    status, page, _ = await boss.request("GET", "/console/sessions?lang=en")
    assert 'label="transport hub"' in page  # the filter's suggestions, by name


def test_an_error_code_the_catalogue_lacks_is_said_in_the_services_words() -> None:
    from controller.web.console import lang

    assert lang.error_text("zh", "bad_phone", "not a mobile number") == "手机号码无效。"
    assert lang.error_text("zh", "a_new_code", "what the service said") == "what the service said"
    assert lang.error_text("en", "bad_days", "x", max=3660) == (
        "Days is a whole number from 1 to 3660."
    )
