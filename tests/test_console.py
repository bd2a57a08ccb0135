"""The operations console against a live in-process ``serve`` (real Redis, real HTTP):
every console route refused without a session and to the wrong role, CSRF on its forms,
lock-out after failed sign-ins (the attack run against the server), the session bound to
the network it was made from, and the figures the page shows being the ones /metrics has.
The browser test is ``tests/test_console_browser.py``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pyotp
import pytest

from controller.cli.serve import Controller
from controller.config import Config
from controller.domain.eap_credentials import EapCredential
from controller.services.accounts import Accounts
from controller.services.audit import AuditQuery, query_records
from controller.storage.eap_credentials import EapCredentialStore
from controller.web.console.guard import ROUTE_ROLES
from radius.attrs import Code
from tests.conftest import SECRET
from tests.support.console_kit import ACCOUNTS, PASSWORD, Browser, base_url, hospital_city, running
from tests.support.redis_proc import RedisProcess
from tests.test_radius_integration import acct, login


@pytest.fixture
def city(tmp_path: Path, redis_proc: RedisProcess) -> Config:
    return hospital_city(tmp_path, redis_proc.url)


@pytest.fixture
async def ctl(city: Config) -> AsyncIterator[Controller]:
    async with running(city, ACCOUNTS) as controller:
        yield controller


async def test_every_route_refused_without_session_and_to_the_wrong_role(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ROUTE_ROLES  # every route in the table, with each kind of caller
    signed_in = {}  # one sign-in per account (argon2 costs ~0.1-0.5 s each)
    for name in ACCOUNTS:
        signed_in[name] = Browser(base_url(ctl), http)
        assert await signed_in[name].sign_in(name) == 303
    for (method, route), roles in ROUTE_ROLES.items():
        path = route.replace("{client}", "nas-local")  # op-telecom's NAS
        page = "/api/" not in path
        anon = Browser(base_url(ctl), http)
        status, _, headers = await anon.request(method, path)
        if page:
            assert (status, headers["Location"]) == (303, "/console/login"), path
        else:
            assert status == 401, path
        for name, account_roles in ACCOUNTS.items():
            b = signed_in[name]
            if method == "POST":  # a valid form naming nothing: allowed -> 400
                form = {"csrf": await b.csrf(), "ref": "", "client": ""}
                status, body, _ = await b.request(method, path, data=form)
            else:
                status, body, _ = await b.request(method, path)
            allowed = bool({r.partition(":")[0] for r in account_roles} & roles)
            if path != route and "operator:op-unicom" in account_roles:
                allowed = False  # another operator's NAS: refused like a missing role
            ok = 400 if method == "POST" else 200
            assert status == (ok if allowed else 403), (path, name, status)
            if not allowed and page:
                assert "no role" in body or "not at your operator" in body
        forged = Browser(base_url(ctl), http)  # a guessed session id
        forged.cookies["cw_console"] = "ab" * 32
        assert (await forged.request(method, path))[0] == (303 if page else 401)


async def test_forms_need_the_csrf_token(ctl: Controller, http: aiohttp.ClientSession) -> None:
    b = Browser(base_url(ctl), http)
    await b.csrf()  # the nonce cookie, but no token in the form
    status, body, _ = await b.request(
        "POST", "/console/login", data={"user": "ops", "password": PASSWORD}
    )
    assert status == 403 and "cw_console" not in b.cookies and "form expired" in body
    # a token made for another browser's nonce
    other = Browser(base_url(ctl), http)
    token = await other.csrf()
    status, _, _ = await b.request(
        "POST", "/console/login", data={"user": "ops", "password": PASSWORD, "csrf": token}
    )
    assert status == 403
    assert await b.sign_in("ops") == 303
    # sign-out without the token keeps the session; with it, ends it on the server
    assert (await b.request("POST", "/console/logout", data={}))[0] == 403
    assert (await b.request("GET", "/console/api/overview"))[0] == 200
    sid = b.cookies["cw_console"]
    status, _, _ = await b.request("POST", "/console/logout", data={"csrf": await b.csrf()})
    assert status == 303 and "cw_console" not in b.cookies
    b.cookies["cw_console"] = sid  # the old cookie replayed: the server forgot it
    assert (await b.request("GET", "/console/api/overview"))[0] == 401


async def test_lockout_after_failed_sign_ins(ctl: Controller, http: aiohttp.ClientSession) -> None:
    """The attack: guess passwords for one account; after 5 failures even the right one is
    refused (429, Retry-After) for the lock period; other accounts are not affected."""
    attacker = Browser(base_url(ctl), http)
    for guess in range(5):
        assert await attacker.sign_in("ops", f"guess number {guess}") == 401
    token = await attacker.csrf()
    status, body, headers = await attacker.request(
        "POST", "/console/login", data={"user": "ops", "password": PASSWORD, "csrf": token}
    )
    assert status == 429 and "locked" in body
    assert 800 < int(headers["Retry-After"]) <= 900
    assert await Browser(base_url(ctl), http).sign_in("boss") == 303
    assert await Browser(base_url(ctl), http).sign_in("ops") == 429  # the owner too, until it ends


async def test_totp_account_signs_in_once_per_code(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.store is not None
    added = await Accounts(ctl.store).add("two", PASSWORD, ["operations"], totp=True, by="test")
    secret = added.account.totp_secret
    b = Browser(base_url(ctl), http)
    assert await b.sign_in("two") == 401  # no code
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    assert await b.sign_in("two", code=wrong) == 401
    code = pyotp.TOTP(secret).now()
    assert await b.sign_in("two", code=code) == 303
    assert await Browser(base_url(ctl), http).sign_in("two", code=code) == 401  # replayed
    assert (await b.request("GET", "/console/api/overview"))[0] == 200
    # (the session's binding to its network: tests/test_accounts.py)


async def test_the_overview_shows_what_metrics_exports(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.store is not None and ctl.online is not None
    issued = await login(ctl, phone="+8613800138001")
    reply = await acct(ctl, "Start", "console-1", 0, user=issued.username)
    assert reply is not None and reply.code == Code.ACCOUNTING_RESPONSE
    await ctl.online.flush_seen()
    await ctl.online.refresh(lead=True)
    b = Browser(base_url(ctl), http)
    assert await b.sign_in("ops") == 303
    status, body, _ = await b.request("GET", "/console/api/overview")
    assert status == 200
    o = json.loads(body)
    async with http.get(f"{base_url(ctl)}/metrics") as r:
        metrics = await r.text()
    assert f"citywifi_persons_online {float(o['persons'])}" in metrics
    assert o["persons"] == 1 and o["sessions"] == 1
    nas = {n["client"]: n for n in o["nas"]}
    assert not nas["nas-local"]["silent"] and nas["nas-hospital"]["seen"] == "never"
    status, listed, _ = await b.request("GET", "/console/sessions")
    assert status == 200 and 'data-ref="' + issued.person + "|nas-local/console-1" in listed
    assert "Disconnect" not in listed  # operations may look, not act
    tel, uni = Browser(base_url(ctl), http), Browser(base_url(ctl), http)
    assert await tel.sign_in("tel") == 303 and await uni.sign_in("uni") == 303
    assert "nas-local/console-1" in (await tel.request("GET", "/console/sessions"))[1]
    assert "nas-local/console-1" not in (await uni.request("GET", "/console/sessions"))[1]
    filtered = (await b.request("GET", "/console/sessions?venue=hospital"))[1]
    assert "console-1" not in filtered and '<span id="count">0</span>' in filtered
    status, page, headers = await b.request("GET", "/console/overview")
    assert status == 200 and '<div class="figure" id="persons">1</div>' in page
    assert "script-src 'nonce-" in headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # no outside assets


async def test_an_operator_sees_only_its_own_nas(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    """The equal-access rule: op-telecom's account sees the NAS at its venue, not
    op-unicom's, and none of the city's totals; the city account sees both."""
    tel, city = Browser(base_url(ctl), http), Browser(base_url(ctl), http)
    assert await tel.sign_in("tel") == 303 and await city.sign_in("ops") == 303
    o = json.loads((await tel.request("GET", "/console/api/overview"))[1])
    assert o["scope"] == ["op-telecom"]
    assert [n["client"] for n in o["nas"]] == ["nas-local"]
    assert o["persons"] == o["sessions"] == o["outbox_backlog"] == o["redis_memory"] == "—"
    assert o["by_type"] == []
    status, page, _ = await tel.request("GET", "/console/overview")
    assert status == 200 and "nas-hospital" not in page and "Operator view: op-telecom" in page
    o = json.loads((await city.request("GET", "/console/api/overview"))[1])
    assert o["scope"] is None and [n["client"] for n in o["nas"]] == ["nas-hospital", "nas-local"]
    uni = Browser(base_url(ctl), http)
    assert await uni.sign_in("uni") == 303
    o = json.loads((await uni.request("GET", "/console/api/overview"))[1])
    assert [n["client"] for n in o["nas"]] == ["nas-hospital"]


async def test_person_lookup_is_audited_and_only_admin_acts(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    assert ctl.store is not None
    sec, boss = Browser(base_url(ctl), http), Browser(base_url(ctl), http)
    assert await sec.sign_in("sec") == 303 and await boss.sign_in("boss") == 303
    form = {"csrf": await sec.csrf(), "phone": "13800138005"}
    status, page, _ = await sec.request("POST", "/console/person", data=form)
    assert status == 200 and "Not blocked." in page and 'id="block"' not in page  # audit looks
    pid = re.search(r'data-person="([0-9a-f]+)"', page)
    assert pid
    form = {"csrf": await sec.csrf(), "person": pid.group(1), "days": "1", "reason": "x"}
    assert (await sec.request("POST", "/console/person/block", data=form))[0] == 403
    form["csrf"] = await boss.csrf()
    status, page, _ = await boss.request("POST", "/console/person/block", data=form)
    assert status == 200 and "Blocked until" in page
    form = {"csrf": await boss.csrf(), "person": pid.group(1)}
    status, page, _ = await boss.request("POST", "/console/person/unblock", data=form)
    assert status == 200 and "Unblocked." in page and "Not blocked." in page
    assert ctl.archiver is not None
    await ctl.archiver.flush()  # the outbox into the audit log, as it runs by itself
    now = int(time.time())
    rows = query_records(ctl.archive, ctl.config, AuditQuery(now - 120, now + 60), now)
    acts = [(r.result, r.cause) for r in rows if r.kind == "console"
            and r.result.split()[0] in ("lookup", "block", "unblock")]  # fmt: skip
    assert acts == [
        ("lookup ok", f"by sec on {pid.group(1)}"),
        ("block ok", f"by boss on {pid.group(1)}"),
        ("unblock ok", f"by boss on {pid.group(1)}"),
    ]
    assert not any("13800138005" in repr(r) for r in rows if r.kind == "console")


async def test_console_revokes_a_persons_eap_credentials(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    """The person page lists the live EAP credentials (never their hash) and an admin
    revokes one or all (issue 19: "revocable from the console"); other roles cannot."""
    assert ctl.store is not None
    sec, boss = Browser(base_url(ctl), http), Browser(base_url(ctl), http)
    assert await sec.sign_in("sec") == 303 and await boss.sign_in("boss") == 303
    status, page, _ = await boss.request(
        "POST", "/console/person", data={"csrf": await boss.csrf(), "phone": "13800138006"}
    )
    pid = re.search(r'data-person="([0-9a-f]+)"', page)
    assert status == 200 and pid and 'id="person-eap-none"' in page
    person, now = pid.group(1), int(time.time())
    store = EapCredentialStore(ctl.store.redis)
    for local in ("aaaa", "bbbb"):
        await store.save(
            EapCredential(f"{local}@wifi.city.example", person, "$argon2id$x", now, now + 86400)
        )
    status, page, _ = await sec.request(
        "POST", "/console/person", data={"csrf": await sec.csrf(), "person": person}
    )
    assert status == 200 and "aaaa@wifi.city.example" in page and "$argon2id$" not in page
    assert 'action="/console/person/revoke-eap"' not in page  # audit looks, cannot act
    form = {"csrf": await sec.csrf(), "person": person, "credential": "aaaa@wifi.city.example"}
    assert (await sec.request("POST", "/console/person/revoke-eap", data=form))[0] == 403
    form["csrf"] = "forged"
    assert (await boss.request("POST", "/console/person/revoke-eap", data=form))[0] == 403
    form["csrf"] = await boss.csrf()
    status, page, _ = await boss.request("POST", "/console/person/revoke-eap", data=form)
    assert status == 200 and "1 credential(s) revoked" in page
    assert "aaaa@wifi.city.example" not in page and "bbbb@wifi.city.example" in page
    form = {"csrf": await boss.csrf(), "person": person}
    status, page, _ = await boss.request("POST", "/console/person/revoke-eap", data=form)
    assert status == 200 and "1 credential(s) revoked" in page and 'id="person-eap-none"' in page
    assert await store.for_person(person) == []


async def test_registry_as_loaded_scoped_and_without_secrets(
    ctl: Controller, http: aiohttp.ClientSession
) -> None:
    tel, ops = Browser(base_url(ctl), http), Browser(base_url(ctl), http)
    assert await tel.sign_in("tel") == 303 and await ops.sign_in("ops") == 303
    status, page, _ = await ops.request("GET", "/console/registry")
    assert status == 200 and "nas-hospital" in page and "nas-local" in page
    assert "Beiguo Mall" in page and "127.0.0.2/32" in page and "refused 0" in page
    status, page, _ = await tel.request("GET", "/console/registry")
    assert status == 200 and "Operator view: op-telecom" in page
    assert "Shijiazhuang Railway Station" in page and "Century Park" in page
    assert "hospital" not in page and "Beiguo Mall" not in page
    for secret in (SECRET, "hospital-secret-0123456789"):
        assert secret not in page


async def test_trace_switch_from_the_console(ctl: Controller, http: aiohttp.ClientSession) -> None:
    assert ctl.store is not None
    ops = Browser(base_url(ctl), http)
    assert await ops.sign_in("ops") == 303
    form = {"csrf": await ops.csrf(), "client": "nas-local", "minutes": "10"}
    status, _, headers = await ops.request("POST", "/console/registry/trace", data=form)
    assert status == 303 and "on+for+10+min" in headers["Location"]
    ends = await ctl.store.redis.zscore("cw:trace:on", "nas-local")  # epoch the trace ends
    assert ends is not None and 589 <= ends - time.time() <= 600
    page = (await ops.request("GET", "/console/registry"))[1]
    assert 'class="traced">on<' in page
    form = {"csrf": await ops.csrf(), "client": "nas-local", "minutes": "61"}
    assert (await ops.request("POST", "/console/registry/trace", data=form))[0] == 400
    form = {"csrf": await ops.csrf(), "client": "nas-local", "minutes": "0"}
    assert (await ops.request("POST", "/console/registry/trace", data=form))[0] == 303
    assert await ctl.store.redis.zscore("cw:trace:on", "nas-local") is None
