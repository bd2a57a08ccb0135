"""Issue 13, portal side: each finding's attack, performed against a live portal (an
in-process controller on a real HTTP socket, a real redis-server, the real RADIUS server
for credentials), as a hostile outsider or a curious citizen would.

The test client plays the portal's trusted reverse proxy (``X-Forwarded-For`` from
127.0.0.1 is believed), so one test can be the victim at one address and the attacker
at another. Every test here failed on the code before the fix (see the final report).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from prometheus_client import REGISTRY
from yarl import URL

from controller.services.signing import unb64
from controller.web.resources import PORTAL
from tests.support.portal_kit import (
    NAS,
    Rig,
    accepted,
    last_code,
    radius_acct,
    radius_pap,
    running_portal,
    sms_messages,
)
from tests.support.redis_proc import RedisProcess

ADMIN_TOKEN = "tok-admin-sec-13"
TABLES = (
    f'\n[[api_tokens]]\nname = "admin-desk"\n'
    f'sha256 = "{hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()}"\nroles = ["admin"]\n'
)
PROXY = 'trusted_proxies = ["127.0.0.1"]'
EVIL = "https://evil.example/steal"
VICTIM, ATTACKER = "203.0.113.10", "198.51.100.66"


@pytest.fixture
async def rig(tmp_path: Path, redis_proc: RedisProcess) -> AsyncIterator[Rig]:
    async with running_portal(tmp_path, redis_proc.url, portal=PROXY, clients=TABLES) as r:
        yield r


def xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


async def get(rig: Rig, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with rig.http.get(URL(rig.base + path, encoded=True), headers=headers) as r:
        return r.status, await r.text()


async def form_login(rig: Rig, path: str, phone: str, address: str) -> list[tuple[int, str]]:
    """A citizen following a link to the portal: open it, ask for a code, type it, log in.
    Returns every page seen (status, HTML); stops where the portal refuses."""
    pages = [await get(rig, path, {**xff(address), "Accept-Language": "en"})]
    fields = hidden_fields(pages[-1][1])
    if "ctx" not in fields:
        return pages
    post = {"csrf": fields["csrf"], "ctx": fields["ctx"], "lang": "en", "phone": phone}
    for action, extra in (("otp", {}), ("login", {"terms": "1"})):
        if action == "login":
            code = last_code(rig.sms_path, "+86" + phone)
            if code is None:
                break
            extra = {**extra, "code": code}
        async with rig.http.post(
            f"{rig.base}/portal/{action}", data={**post, **extra}, headers=xff(address)
        ) as r:
            pages.append((r.status, await r.text()))
        if r.status != 200:
            break
    return pages


async def credentials(rig: Rig) -> list[bytes]:
    assert rig.ctl.store is not None
    return list(await rig.ctl.store.redis.keys("cw:{*}:c:*"))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --------------------------------------------------------------------------- finding 1


@pytest.mark.parametrize(
    "path",
    [
        f"/portal?login_url={quote(EVIL)}",  # no nas_id at all
        f"/portal?nas_id=nas-mt&link-login-only={quote(EVIL)}&chap-id=%5C001",
        f"/portal?nas_id=mt-beiguo&link-login-only={quote('http://10.5.50.1.evil.example/')}",
        f"/portal?nas_id=nas-local&login_url={quote(EVIL)}",  # generic: no login_url set
        # chilli without uam_secret: an unsigned uamip outside its UAM addresses
        "/portal?nas_id=nas-local-2&uamip=203.0.113.66&uamport=3990"
        "&challenge=00112233445566778899aabbccddeeff",
    ],
    ids=["no-nas", "mikrotik-evil-host", "mikrotik-lookalike", "generic-evil", "chilli-uamip"],
)
async def test_finding_01_a_link_on_the_portal_cannot_send_the_credential_elsewhere(
    rig: Rig, path: str
) -> None:
    """A link on the genuine portal domain names a hand-off target; a citizen follows it
    and logs in. No page may carry the credential anywhere the client does not allow,
    and without a known NAS no code is sent and no credential exists."""
    pages = await form_login(rig, path, "13800131301", VICTIM)
    for status, html in pages:
        assert "evil.example" not in html and "203.0.113.66" not in html, status
    assert pages[0][0] == 400 and len(pages) == 1  # refused before anyone types a number
    assert "not allowed" in pages[0][1] or "city WiFi" in pages[0][1]
    assert sms_messages(rig.sms_path) == [] and await credentials(rig) == []


async def test_finding_01_the_api_refuses_targets_and_unknown_nas_too(rig: Rig) -> None:
    """The JSON API takes NAS parameters from the body: the same rules hold, before a code
    is sent (otp) and before a credential is issued (login with a remembered device)."""
    for body, code in (
        ({}, "nas_required"),
        ({"nas_id": "nope"}, "unknown_venue"),
        ({"nas_id": "nas-mt", "link-login-only": EVIL}, "handoff_not_allowed"),
        ({"nas_id": "nas-local", "login_url": EVIL}, "handoff_not_allowed"),
        ({"nas_id": "nas-chilli", "uamip": "203.0.113.66", "uamport": "3990",
          "challenge": "00" * 16}, "handoff_not_allowed"),  # unsigned: not its UAM address
    ):  # fmt: skip
        status, answer, _ = await rig.post_json("/api/v1/otp", {"phone": "13800131302", **body})
        assert (status in (400, 404), answer["error"]) == (True, code), body
    assert sms_messages(rig.sms_path) == []
    # a person with a remembered device (cw_dev), asked to log in towards evil.example
    status, answer, _ = await rig.post_json(
        "/api/v1/otp", {"phone": "13800131303", "nas_id": "nas-local"}
    )
    assert status == 202, answer
    code = rig.code("+8613800131303")
    ok, login, _ = await rig.post_json(
        "/api/v1/login", {"phone": "13800131303", "code": code, "nas_id": "nas-local"}
    )
    assert ok == 200 and login["handoff"]["method"] == "NONE"
    issued = await credentials(rig)
    for body in ({"login_url": EVIL}, {"nas_id": "nas-mt", "link-login-only": EVIL}):
        status, answer, _ = await rig.post_json("/api/v1/login", body)
        assert status == 400 and "evil" not in str(answer), answer
    assert await credentials(rig) == issued  # nothing new minted
    # what the client allows still works, and its credential is accepted by RADIUS
    status, answer, _ = await rig.post_json(
        "/api/v1/login", {"nas_id": "nas-mt", "link-login-only": "http://10.5.50.1/login"}
    )
    assert status == 200 and answer["handoff"]["url"] == "http://10.5.50.1/login"
    reply = await radius_pap(
        rig.ctl.auth_port, NAS["mikrotik"], answer["username"], answer["password"].encode(), ""
    )
    assert accepted(reply)


# --------------------------------------------------------------------------- finding 3


async def test_finding_03_a_stranger_cannot_lock_out_spend_or_probe_the_owners_code(
    rig: Rig,
) -> None:
    """The owner asks for a code in their browser. A stranger (another browser, another
    address) then guesses wrong codes for the owner's number, asks for codes to it until
    refused, and compares the answers for a number with and without a pending code. The
    owner's code still works, the owner can still get a new one, and the stranger's
    answers are the same either way."""
    owner, nas = "13800131310", {"nas_id": "nas-local"}
    rig.as_device(1)
    status, _, _ = await rig.post_json("/api/v1/otp", {"phone": owner, **nas}, xff(VICTIM))
    assert status == 202
    code = rig.code("+86" + owner)

    rig.as_device(2)  # the stranger
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    guesses = [
        await rig.post_json("/api/v1/login", {"phone": owner, "code": wrong, **nas}, xff(ATTACKER))
        for _ in range(6)
    ]
    requests = [
        (await rig.post_json("/api/v1/otp", {"phone": owner, **nas}, xff(ATTACKER)))[0]
        for _ in range(12)
    ]
    assert requests[-1] == 429  # the stranger runs out of their own share
    # the oracle: a wrong code for a number with a pending code, and for one without
    pending = guesses[0][:2]
    nothing = (
        await rig.post_json(
            "/api/v1/login", {"phone": "13800131319", "code": wrong, **nas}, xff(ATTACKER)
        )
    )[:2]
    assert pending == nothing == (401, {"error": "wrong_code", "message": pending[1]["message"]})

    rig.as_device(1)  # the owner, back in their own browser
    status, answer, _ = await rig.post_json(
        "/api/v1/login", {"phone": owner, "code": code, **nas}, xff(VICTIM)
    )
    assert status == 200, answer
    status, answer, _ = await rig.post_json(
        "/api/v1/otp", {"phone": owner, **nas}, xff("203.0.113.11")
    )
    assert status in (202, 429) and (status == 202 or answer.get("retry_after", 0) <= 60)


async def test_finding_03_code_attempts_are_limited_per_source(rig: Rig) -> None:
    """One source guessing at many numbers (each with a code pending, so no per-code
    limit applies) is stopped by the per-source attempt limit (120 an hour)."""
    statuses = []
    for i in range(125):
        rig.as_device(1000 + i)
        body = {"phone": f"1380014{i:04d}", "code": "000000", "nas_id": "nas-local"}
        statuses.append((await rig.post_json("/api/v1/login", body, xff(ATTACKER)))[0])
    assert statuses[:120] == [401] * 120 and set(statuses[120:]) == {429}
    # the NAS is a dimension of every attempt as well (its limit: verify_per_nas_hour)
    from controller.services.portal.ratelimit import verify_dims

    assert ("verify_nas", "nas-local") in verify_dims(ATTACKER, "nas-local", "d", "p")


# --------------------------------------------------------------------------- finding 4


async def test_finding_04_sms_pumping_by_prefix_nas_and_country_is_stopped(rig: Rig) -> None:
    """130 code requests from 130 different /64s of one /48; requests without a NAS;
    numbers of +1, +234, +880, +7 and +852."""
    before = metric("citywifi_portal_rate_limited_total", limit="ip48")
    statuses = []
    for i in range(130):
        rig.as_device(i)
        body = {"phone": f"1390015{i:04d}", "nas_id": "nas-local"}
        source = f"2001:db8:48:{i:x}::1"
        statuses.append((await rig.post_json("/api/v1/otp", body, xff(source)))[0])
    assert statuses.count(202) == 120 and statuses[120:] == [429] * 10
    assert metric("citywifi_portal_rate_limited_total", limit="ip48") - before == 10
    sent = len(sms_messages(rig.sms_path))
    status, answer, _ = await rig.post_json("/api/v1/otp", {"phone": "13900150999"})
    assert (status, answer["error"]) == (400, "nas_required")
    for number in ("+12015550123", "+2348021234567", "+8801812345678", "+79123456789",
                   "+85251234567"):  # fmt: skip
        body = {"phone": number, "nas_id": "nas-local"}
        status, answer, _ = await rig.post_json("/api/v1/otp", body, xff("192.0.2.44"))
        assert (status, answer["error"]) == (400, "country_not_allowed"), number
        assert "+86" in answer["message"]
    assert len(sms_messages(rig.sms_path)) == sent


async def test_finding_04_the_city_wide_hourly_ceiling_refuses_and_alarms(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    async with running_portal(
        tmp_path, redis_proc.url, portal=f"{PROXY}\notp_global_hour = 5"
    ) as rig:
        before = metric("citywifi_portal_sms_ceiling_reached_total")
        statuses = []
        for i in range(8):  # eight people at eight venues: nothing else is shared
            rig.as_device(i)
            body = {"phone": f"1390016{i:04d}", "nas_id": "nas-local"}
            statuses.append((await rig.post_json("/api/v1/otp", body, xff(f"192.0.{i}.9")))[0])
        assert statuses == [202] * 5 + [429] * 3
        assert metric("citywifi_portal_sms_ceiling_reached_total") - before == 3
        async with rig.http.get(rig.base + "/metrics") as r:
            text = await r.text()
        assert "citywifi_portal_sms_global_hour_limit 5.0" in text


# --------------------------------------------------------------------------- finding 6


async def test_finding_06_page_views_write_nothing_and_are_rate_limited(rig: Rig) -> None:
    """``GET /portal?nas_id=<non-chilli>&ip=<random>`` in a loop: no per-request state in
    Redis (only the source's page counter), and a 429 once the source is over its limit."""
    store = rig.ctl.store
    assert store is not None
    # background work writes its own keys: online stats, the Status-Server health probe,
    # the archiver's outbox stream (created with its consumer group at start)
    background = ("cw:stats:", "cw:health:", "cw:outbox")

    async def request_keys() -> set[bytes]:
        return {k for k in await store.redis.keys("*") if not k.decode().startswith(background)}

    before = await request_keys()
    statuses = [
        (await get(rig, f"/portal?nas_id=nas-mt&ip=10.{i // 250}.{i % 250}.7", xff(ATTACKER)))[0]
        for i in range(125)
    ]
    assert await store.redis.keys("cw:pc:*") == []
    assert len((await request_keys()) - before) <= 1  # the page counter of that source
    assert statuses[:120] == [200] * 120 and set(statuses[120:]) == {429}
    async with rig.http.get(rig.base + "/portal?nas_id=nas-mt", headers=xff(ATTACKER)) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
    assert (await get(rig, "/portal?nas_id=nas-mt", xff(VICTIM)))[0] == 200  # others: fine


# --------------------------------------------------------------------------- finding 8


async def login_json(rig: Rig, phone: str, mac: str = "") -> dict[str, Any]:
    body = {"phone": phone, "nas_id": "nas-local", "mac": mac}
    status, answer, _ = await rig.post_json("/api/v1/otp", body, xff(VICTIM))
    assert status == 202, answer
    body["code"] = rig.code("+86" + phone)
    status, answer, _ = await rig.post_json("/api/v1/login", body, xff(VICTIM))
    assert status == 200, answer
    return answer


def device_cookie(rig: Rig) -> str:
    cookie = next(c for c in rig.http.cookie_jar if c.key == "cw_dev")
    return cookie.value


async def with_cookie(rig: Rig, method: str, path: str, cookie: str) -> int:
    """A request from another browser holding a copy of the cookie."""
    headers = {"Cookie": f"cw_dev={cookie}", "Content-Type": "application/json"}
    async with rig.http.request(
        method, rig.base + path, headers=headers, data=b'{"nas_id": "nas-local"}'
    ) as r:
        return r.status


async def test_finding_08_a_copied_device_cookie_dies_at_logout_and_by_the_admin(
    rig: Rig,
) -> None:
    await login_json(rig, "13800131380")
    copy = device_cookie(rig)
    assert await with_cookie(rig, "GET", "/api/v1/me", copy) == 200
    status, _, _ = await rig.post_json("/api/v1/logout", {})
    assert status == 200
    rig.http.cookie_jar.clear()
    assert await with_cookie(rig, "GET", "/api/v1/me", copy) == 401
    assert await with_cookie(rig, "POST", "/api/v1/login", copy) == 401  # mints nothing
    # the admin revokes every remembered device of a person (a stolen phone, say)
    await login_json(rig, "13800131381")
    copy = device_cookie(rig)
    assert await with_cookie(rig, "POST", "/api/v1/login", copy) == 200
    status, answer, _ = await rig.post_json(
        "/api/v1/admin/revoke-devices", {"phone": "13800131381"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )  # fmt: skip
    assert (status, answer["revoked"]) == (200, 1)
    assert await with_cookie(rig, "POST", "/api/v1/login", copy) == 401
    assert await with_cookie(rig, "GET", "/api/v1/me", copy) == 401


async def test_device_cookies_signed_before_the_signer_carried_expiries_still_work(
    rig: Rig,
) -> None:
    """A cookie of the old layout (``pid|expires|tid``, no signed expiry) is honoured
    until its own expiry, so upgrading does not forget remembered devices."""
    await login_json(rig, "13800131382")
    assert rig.ctl.runner is not None
    signer = rig.ctl.runner.app[PORTAL].signer
    body, expires, _ = device_cookie(rig).split(".")
    pid, tid = (unb64(body) or b"").decode().split("|")
    rig.http.cookie_jar.clear()
    legacy = signer.sign("device", f"{pid}|{expires}|{tid}".encode())
    assert await with_cookie(rig, "GET", "/api/v1/me", legacy) == 200
    stale = signer.sign("device", f"{pid}|{int(rig.ctl.clock()) - 1}|{tid}".encode())
    assert await with_cookie(rig, "GET", "/api/v1/me", stale) == 401
    forged = signer.sign("ctx", f"{pid}|{expires}|{tid}".encode())  # another purpose
    assert await with_cookie(rig, "GET", "/api/v1/me", forged) == 401


async def test_finding_08_cookies_are_secure_when_the_portal_is_served_over_https(
    rig: Rig,
) -> None:
    """Behind the TLS proxy (X-Forwarded-Proto: https) every cookie the portal sets has
    ``Secure``; over plain http (inside the walled garden) it must not (browsers would
    drop it)."""
    https = {**xff(VICTIM), "X-Forwarded-Proto": "https"}
    async with rig.http.get(rig.base + "/portal?nas_id=nas-local&lang=en", headers=https) as r:
        page_cookies = r.headers.getall("Set-Cookie")
        fields = hidden_fields(await r.text())
    body = {"phone": "13800131382", "nas_id": "nas-local"}
    await rig.post_json("/api/v1/otp", body, https)
    body["code"] = rig.code("+8613800131382")
    _, _, headers = await rig.post_json("/api/v1/login", body, https)
    cookies = [*page_cookies, *headers.getall("Set-Cookie")]
    assert {c.split("=", 1)[0] for c in cookies} == {"cw_csrf", "cw_lang", "cw_dev"}
    assert all("Secure" in c for c in cookies), cookies
    assert fields["csrf"]
    rig.http.cookie_jar.clear()
    async with rig.http.get(rig.base + "/portal?nas_id=nas-local&lang=en") as r:
        assert not any("Secure" in c for c in r.headers.getall("Set-Cookie"))


# --------------------------------------------------------------------------- finding 9


async def test_finding_09_a_device_cookie_cannot_mint_credentials_for_many_macs(
    rig: Rig,
) -> None:
    """With the remembered-device cookie, ask for credentials for MAC after MAC: at most
    ``logins_per_device_hour`` x ``max_devices`` (3 x 2) an hour, the code login
    included."""
    await login_json(rig, "13800131390", "AA-BB-CC-13-09-00")
    answers = []
    for i in range(1, 9):
        body = {"nas_id": "nas-local", "mac": f"AA-BB-CC-13-09-{i:02X}"}
        answers.append(await rig.post_json("/api/v1/login", body, xff(VICTIM)))
    assert [a[0] for a in answers] == [200] * 5 + [429] * 3
    assert answers[-1][1]["error"] == "rate_limited" and int(answers[-1][2]["Retry-After"]) > 0
    assert len(await credentials(rig)) == 6


# --------------------------------------------------------------------------- finding 10


async def test_finding_10_a_body_ip_cannot_flip_someone_elses_captive_answer(rig: Rig) -> None:
    """The victim is online at VICTIM; the attacker logs in with ``"ip": VICTIM`` in the
    body. The victim's RFC 8908 answer must still say not captive."""
    mac = "AA-BB-CC-13-10-01"
    login = await login_json(rig, "13800131310", mac)
    reply = await radius_pap(
        rig.ctl.auth_port, NAS["generic"], login["username"], login["password"].encode(), mac
    )
    assert accepted(reply)
    await radius_acct(
        rig.ctl.acct_port, NAS["generic"], status="Start", sid="sec-10", username=login["username"],
        cls=reply[25][0], mac=mac, framed_ip=VICTIM,
    )  # fmt: skip

    async def captive(address: str) -> bool:
        async with rig.http.get(rig.base + "/captive-portal/api", headers=xff(address)) as r:
            return bool((await r.json(content_type=None))["captive"])

    assert await captive(VICTIM) is False
    rig.http.cookie_jar.clear()
    body = {"phone": "13800131311", "nas_id": "nas-local", "ip": VICTIM}
    assert (await rig.post_json("/api/v1/otp", body, xff(ATTACKER)))[0] == 202
    body["code"] = rig.code("+8613800131311")
    assert (await rig.post_json("/api/v1/login", body, xff(ATTACKER)))[0] == 200
    assert await captive(VICTIM) is False


# --------------------------------------------------------------------------- finding 11


async def test_finding_11_only_http_urls_become_links_and_redirects(rig: Rig) -> None:
    """``url``/``dst``/``userurl`` of ``javascript:`` and ``data:`` in the redirect: the
    success page and ``redirect_url`` carry none of them."""
    payloads = ("javascript:alert(document.cookie)", "data:text/html,<script>1</script>")
    for i, bad in enumerate(payloads):
        path = (
            f"/portal?nas_id=nas-mt&link-login-only={quote('http://10.5.50.1/login')}"
            f"&dst={quote(bad)}"
        )
        pages = await form_login(rig, path, f"1380013141{i}", f"192.0.2.{i + 1}")
        assert pages[-1][0] == 200 and "Free time left" in pages[-1][1]
        assert not any(("javascript:" in html or "data:text" in html) for _, html in pages)
        rig.http.cookie_jar.clear()
        body = {"phone": f"1380013142{i}", "nas_id": "nas-local", "url": bad}
        assert (await rig.post_json("/api/v1/otp", body, xff(f"192.0.3.{i + 1}")))[0] == 202
        body["code"] = rig.code(f"+861380013142{i}")
        status, answer, _ = await rig.post_json("/api/v1/login", body, xff(f"192.0.3.{i + 1}"))
        assert status == 200 and answer["redirect_url"] == ""  # no [brand] home_url here


# --------------------------------------------------------------------------- finding 14


async def test_finding_14_the_csrf_token_is_bound_to_the_page_context(rig: Rig) -> None:
    """(a) Cookie tossing: a planted ``cw_csrf`` cookie with the same value in the form;
    (b) the token of one page posted with another page's NAS context."""
    _, html = await get(rig, "/portal?nas_id=nas-local", xff(VICTIM))
    ctx = hidden_fields(html)["ctx"]
    rig.http.cookie_jar.clear()
    planted = "A" * 43
    rig.http.cookie_jar.update_cookies({"cw_csrf": planted})
    form = {"csrf": planted, "ctx": ctx, "phone": "13800131401", "lang": "en"}
    async with rig.http.post(rig.base + "/portal/otp", data=form, headers=xff(VICTIM)) as r:
        assert r.status == 403
    rig.http.cookie_jar.clear()
    _, page_a = await get(rig, "/portal?nas_id=nas-local", xff(VICTIM))
    _, page_b = await get(rig, "/portal?nas_id=nas-mt", xff(VICTIM))
    a, b = hidden_fields(page_a), hidden_fields(page_b)
    form = {"csrf": a["csrf"], "ctx": b["ctx"], "phone": "13800131402", "lang": "en"}
    async with rig.http.post(rig.base + "/portal/otp", data=form, headers=xff(VICTIM)) as r:
        assert r.status == 403
    assert sms_messages(rig.sms_path) == []
    form["csrf"] = b["csrf"]  # the page's own token: fine
    async with rig.http.post(rig.base + "/portal/otp", data=form, headers=xff(VICTIM)) as r:
        assert r.status == 200
    assert len(sms_messages(rig.sms_path)) == 1
