"""The portal's JSON API and pages over real HTTP, on an in-process Controller with a real
redis-server; every credential handed off is checked through the real RADIUS server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from yarl import URL

from controller.domain import quota
from controller.domain.identity import person_id
from controller.services.portal.handoff import chilli_key, chilli_pap_decode
from controller.services.portal.i18n import Catalog
from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from tests.support.portal_kit import (
    CHILLI_UAM_SECRET,
    NAS,
    Rig,
    accepted,
    chilli_redirect,
    last_code,
    octal,
    radius_acct,
    radius_chap,
    radius_pap,
    running_portal,
    sms_messages,
)
from tests.support.redis_proc import RedisProcess, free_port, until

SH = ZoneInfo("Asia/Shanghai")
CHALLENGE = "00112233445566778899aabbccddeeff"


@pytest.fixture
async def rig(tmp_path: Path, redis_proc: RedisProcess) -> AsyncIterator[Rig]:
    async with running_portal(tmp_path, redis_proc.url) as r:
        yield r


def e164(phone: str) -> str:
    return "+86" + phone


def expected_timeout(rig: Rig, used: int = 0) -> int:
    return quota.session_timeout(used, int(rig.ctl.clock()), SH, 7200)


async def code_login(rig: Rig, phone: str, **nas: str) -> tuple[int, dict[str, Any], Any]:
    status, body, _ = await rig.post_json("/api/v1/otp", {"phone": phone, **nas})
    assert status == 202, body
    return await rig.post_json(
        "/api/v1/login", {"phone": phone, "code": rig.code(e164(phone)), **nas}
    )


# --------------------------------------------------------------------------- happy paths


async def test_generic_flow_and_the_sms_message(rig: Rig) -> None:
    phone, mac = "13800138020", "AA-BB-CC-00-30-01"
    status, body, _ = await rig.post_json(
        "/api/v1/otp", {"phone": phone, "nas_id": "nas-local", "mac": mac.lower()}
    )
    assert (status, body) == (202, {"resend_after": 60, "expires_in": 300})
    (msg,) = sms_messages(rig.sms_path)
    assert set(msg) == {"to", "text", "sent_at"} and msg["to"] == e164(phone)
    assert "无线测试" in msg["text"] and len(re.findall(r"\d{6}", msg["text"])) == 1
    assert datetime.fromisoformat(msg["sent_at"]).utcoffset() is not None
    status, body, headers = await rig.post_json(
        "/api/v1/login",
        {"phone": phone, "code": rig.code(e164(phone)), "nas_id": "nas-local", "mac": mac,
         "url": "http://example.com/"},
    )  # fmt: skip
    assert status == 200, body
    assert body["seconds_remaining"] == 7200 and body["redirect_url"] == "http://example.com/"
    assert body["handoff"]["method"] == "NONE" and body["venue"] == "station"
    assert "cw_dev" in headers.get("Set-Cookie", "") and headers["Cache-Control"] == "no-store"
    reply = await radius_pap(
        rig.ctl.auth_port, NAS["generic"], body["username"], body["password"].encode(), mac
    )
    assert accepted(reply)
    assert abs(reply["Session-Timeout"][0] - expected_timeout(rig)) <= 2


async def test_chilli_json_handoff_pap_and_chap(rig: Rig) -> None:
    for key, phone in (("chilli", "13800138021"), ("chap", "13800138022")):
        nas, mac = NAS[key], f"AA-BB-CC-00-31-0{len(phone) % 7}"
        status, body, _ = await code_login(
            rig, phone, nasid=nas["nasid"], uamip="10.1.0.1", uamport="3990",
            challenge=CHALLENGE, mac=mac, userurl="http://example.com/x",
        )  # fmt: skip
        assert status == 200, body
        url = urlsplit(body["redirect_url"])
        assert (url.netloc, url.path) == ("10.1.0.1:3990", "/logon")
        query = dict(parse_qsl(url.query))
        assert query["userurl"] == "http://example.com/x"
        assert query["username"] == body["username"]
        if key == "chilli":
            password = chilli_pap_decode(query["password"], CHALLENGE, CHILLI_UAM_SECRET)
            reply = await radius_pap(rig.ctl.auth_port, nas, query["username"], password, mac)
        else:
            reply = await radius_chap(
                rig.ctl.auth_port, nas, query["username"], 0, bytes.fromhex(query["response"]),
                chilli_key(CHALLENGE, CHILLI_UAM_SECRET), mac,
            )  # fmt: skip
        assert accepted(reply), key


async def test_mikrotik_json_handoff(rig: Rig) -> None:
    nas, mac, chap_id, challenge = NAS["mikrotik"], "AA-BB-CC-00-32-01", b"\x07", bytes(16)
    status, body, _ = await code_login(
        rig, "13800138023", nas_id=nas["nasid"], mac=mac,
        **{"link-login-only": "http://10.5.50.1/login", "chap-id": octal(chap_id),
           "chap-challenge": octal(challenge), "dst": "http://example.com/"},
    )  # fmt: skip
    assert status == 200, body
    handoff = body["handoff"]
    assert handoff["method"] == "POST" and handoff["url"] == "http://10.5.50.1/login"
    assert handoff["fields"]["dst"] == "http://example.com/"
    reply = await radius_chap(
        rig.ctl.auth_port, nas, handoff["fields"]["username"], chap_id[0],
        bytes.fromhex(handoff["fields"]["password"]), challenge, mac,
    )  # fmt: skip
    assert accepted(reply)


async def test_remembered_device_skips_the_sms(rig: Rig) -> None:
    phone = "13800138024"
    assert (await code_login(rig, phone, nas_id="nas-local"))[0] == 200
    sent = len(sms_messages(rig.sms_path))
    status, body, _ = await rig.post_json("/api/v1/login", {"nas_id": "nas-local"})
    assert status == 200 and len(sms_messages(rig.sms_path)) == sent
    reply = await radius_pap(
        rig.ctl.auth_port, NAS["generic"], body["username"], body["password"].encode(), "AA-01"
    )
    assert accepted(reply)
    rig.http.cookie_jar.clear()
    status, body, _ = await rig.post_json("/api/v1/login", {"nas_id": "nas-local"})
    assert (status, body["error"]) == (401, "not_logged_in")


async def test_me_and_logout(rig: Rig) -> None:
    phone, mac = "13800138025", "AA-BB-CC-00-33-01"
    _, body, _ = await code_login(rig, phone, nas_id="nas-local", mac=mac)
    status, me, _ = await rig.get_json("/api/v1/me")
    assert status == 200 and me["seconds_remaining"] == 7200 and me["devices_online"] == 0
    reply = await radius_pap(
        rig.ctl.auth_port, NAS["generic"], body["username"], body["password"].encode(), mac
    )
    cls = reply[25][0]
    await radius_acct(
        rig.ctl.acct_port, NAS["generic"], status="Interim-Update", sid="s-me",
        username=body["username"], cls=cls, mac=mac, seconds=600,
    )  # fmt: skip
    status, me, _ = await rig.get_json("/api/v1/me")
    assert me["used_today"] == 600 and me["devices_online"] == 1
    assert 6590 <= me["seconds_remaining"] <= 6600
    assert me["sessions"][0]["mac"] == mac and me["sessions"][0]["venue"] == "station"
    assert datetime.fromisoformat(me["resets_at"]).hour == 0
    pid = person_id(e164(phone), rig.ctl.person_key)
    assert rig.ctl.store is not None
    assert await rig.ctl.store.mac_owner(mac) == pid  # remembered at Access-Accept
    status, out, _ = await rig.post_json("/api/v1/logout", {})
    assert (status, out) == (200, {"logged_out": True, "sessions": 1, "disconnect": "requested"})
    assert await rig.ctl.store.mac_owner(mac) is None  # no MAC re-login after a logout
    assert (await rig.get_json("/api/v1/me"))[0] == 401
    assert (await rig.post_json("/api/v1/logout", {}))[0] == 401


async def test_logout_disconnects_the_device_at_its_nas(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """With the enforcer running, a logout sends an RFC 5176 Disconnect-Request for the
    device's session to its NAS (here a UDP socket on the NAS's DAE port)."""
    dae_port = free_port(socket.SOCK_DGRAM)
    nas = {"id": "nas-dae", "address": "127.0.0.6", "secret": "testing123-6"}
    client = (
        f'\n[[clients]]\nid = "nas-dae"\naddress = "127.0.0.6"\nsecret = "testing123-6"\n'
        f'venue = "station"\nvendor = "generic"\ncoa_port = {dae_port}\n'
    )
    received: list[bytes] = []

    class Dae(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            received.append(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Dae, local_addr=(nas["address"], dae_port))
    try:
        async with running_portal(tmp_path, redis_proc.url, clients=client) as rig:
            mac = "AA-BB-CC-00-37-01"
            _, body, _ = await code_login(rig, "13800138036", nas_id="nas-dae", mac=mac)
            reply = await radius_pap(
                rig.ctl.auth_port, nas, body["username"], body["password"].encode(), mac
            )
            await radius_acct(
                rig.ctl.acct_port, nas, status="Start", sid="dae-1", username=body["username"],
                cls=reply[25][0], mac=mac,
            )  # fmt: skip
            status, out, _ = await rig.post_json("/api/v1/logout", {})
            assert (status, out["disconnect"]) == (200, "requested")
            await until(lambda: received, 5, "a Disconnect-Request")
            assert received[0][0] == 40 and b"dae-1" in received[0]  # Disconnect-Request
    finally:
        transport.close()


async def test_logout_disconnects_only_this_device(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """A person with two devices online logs out on one: only that device's session gets
    a Disconnect-Request; the other stays online."""
    dae_port = free_port(socket.SOCK_DGRAM)
    nas = {"id": "nas-dae", "address": "127.0.0.6", "secret": "testing123-6"}
    client = (
        f'\n[[clients]]\nid = "nas-dae"\naddress = "127.0.0.6"\nsecret = "testing123-6"\n'
        f'venue = "station"\nvendor = "generic"\ncoa_port = {dae_port}\n'
    )
    received: list[bytes] = []

    class Dae(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
            received.append(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Dae, local_addr=(nas["address"], dae_port))
    try:
        async with running_portal(tmp_path, redis_proc.url, clients=client) as rig:
            from controller.services.logins import issue_login

            phone, mac1, mac2 = "13800138037", "AA-BB-CC-00-38-01", "AA-BB-CC-00-38-02"
            _, body, _ = await code_login(rig, phone, nas_id="nas-dae", mac=mac1)
            assert rig.ctl.store is not None
            other = await issue_login(
                rig.ctl.store, phone_e164=e164(phone), mac=mac2, client_id="nas-dae",
                person_key=rig.ctl.person_key, ttl=300, now=int(rig.ctl.clock()),
            )  # fmt: skip
            for user, password, mac, sid, ip in (
                (body["username"], body["password"], mac1, "dev-1", "127.0.0.1"),
                (other.username, other.password, mac2, "dev-2", "10.0.0.2"),
            ):
                reply = await radius_pap(rig.ctl.auth_port, nas, user, password.encode(), mac)
                await radius_acct(
                    rig.ctl.acct_port, nas, status="Start", sid=sid, username=user,
                    cls=reply[25][0], mac=mac, framed_ip=ip,
                )  # fmt: skip
            status, out, _ = await rig.post_json("/api/v1/logout", {})
            assert (status, out["disconnect"]) == (200, "requested")
            # the first request and its retransmission
            await until(lambda: len(received) >= 2, 10, "two Disconnect-Requests")
            assert all(d[0] == 40 and b"dev-1" in d and b"dev-2" not in d for d in received)
    finally:
        transport.close()


# --------------------------------------------------------------------------- refusals


async def test_json_endpoints_demand_json(rig: Rig) -> None:
    async with rig.http.post(rig.base + "/api/v1/otp", data={"phone": "13800138000"}) as r:
        assert r.status == 415 and (await r.json())["error"] == "unsupported_media_type"
    for raw in ("{not json", "[1, 2]"):
        async with rig.http.post(
            rig.base + "/api/v1/otp", data=raw, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_json"
    status, body, _ = await rig.post_json("/api/v1/otp", {"phone": 13800138000})
    assert (status, body["error"]) == (400, "bad_request")
    async with rig.http.post(rig.base + "/api/v1/logout") as r:
        assert r.status == 415


@pytest.mark.parametrize("phone", ["031166668888", "12345", "not a number", ""])
async def test_invalid_phone(rig: Rig, phone: str) -> None:
    status, body, _ = await rig.post_json(
        "/api/v1/otp", {"phone": phone}, {"Accept-Language": "en"}
    )
    assert (status, body["error"]) == (400, "invalid_phone") and "mobile" in body["message"]
    assert sms_messages(rig.sms_path) == []


async def test_wrong_codes_then_locked(rig: Rig) -> None:
    """Five attempts per code; wrong, locked (even the right code after five), expired
    and never sent all get the same answer (no oracle of a pending code)."""
    phone, nas = "13800138026", {"nas_id": "nas-local"}
    await rig.post_json("/api/v1/otp", {"phone": phone, **nas})
    code = rig.code(e164(phone))
    bad = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = [
        await rig.post_json("/api/v1/login", {"phone": phone, "code": bad, **nas}) for _ in range(5)
    ]
    assert {(s, b["error"]) for s, b, _ in answers} == {(401, "wrong_code")}
    assert all("attempts_left" not in b for _, b, _ in answers)
    status, body, _ = await rig.post_json("/api/v1/login", {"phone": phone, "code": code, **nas})
    assert (status, body) == (401, answers[0][1])  # the 6th: locked, even right


async def test_code_single_use_and_format(rig: Rig) -> None:
    phone, nas = "13800138027", {"nas_id": "nas-local"}
    assert (await code_login(rig, phone, **nas))[0] == 200
    status, body, _ = await rig.post_json(
        "/api/v1/login", {"phone": phone, "code": rig.code(e164(phone)), **nas}
    )
    assert (status, body["error"]) == (401, "wrong_code")
    status, body, _ = await rig.post_json("/api/v1/login", {"phone": phone, "code": "12ab", **nas})
    assert (status, body["error"]) == (400, "invalid_code")


async def test_unknown_or_missing_nas(rig: Rig) -> None:
    status, body, _ = await rig.post_json("/api/v1/otp", {"phone": "13800138028", "nas_id": "x"})
    assert (status, body["error"]) == (404, "unknown_venue")
    status, body, _ = await rig.post_json("/api/v1/otp", {"phone": "13800138028"})
    assert (status, body["error"]) == (400, "nas_required") and "i-Test" in body["message"]
    assert sms_messages(rig.sms_path) == []


async def test_allowance_device_limit_and_block(rig: Rig) -> None:
    store = rig.ctl.store
    assert store is not None
    phone = "13800138029"
    status, body, _ = await code_login(rig, phone, nas_id="nas-local", mac="AA-BB-CC-00-34-00")
    cls = (
        await radius_pap(
            rig.ctl.auth_port, NAS["generic"], body["username"], body["password"].encode(),
            "AA-BB-CC-00-34-00",
        )
    )[25][0]  # fmt: skip
    # two devices online: a third is refused
    for i in (1, 2):
        await radius_acct(
            rig.ctl.acct_port, NAS["generic"], status="Start", sid=f"d{i}",
            username=body["username"], cls=cls, mac=f"AA-BB-CC-00-34-0{i}",
        )  # fmt: skip
    # (again as the remembered device: the SMS cooldown is not what is tested here)
    status, body, _ = await rig.post_json(
        "/api/v1/login", {"nas_id": "nas-local", "mac": "AA-BB-CC-00-34-09"}
    )
    assert (status, body["error"], body["limit"]) == (409, "device_limit", 2)
    # the day's allowance used up: refused, saying when it resets
    await radius_acct(
        rig.ctl.acct_port, NAS["generic"], status="Stop", sid="d1", username="",
        cls=cls, mac="AA-BB-CC-00-34-01", seconds=7200,
    )  # fmt: skip
    status, body, _ = await rig.post_json(
        "/api/v1/login", {"nas_id": "nas-local", "mac": "AA-BB-CC-00-34-01"}
    )
    assert (status, body["error"]) == (403, "allowance_used_up")
    resets = datetime.fromisoformat(body["resets_at"])
    assert (resets.hour, resets.minute) == (0, 0) and "00:00" in body["message"]
    # blocked (as the admin would, issue 5): said first
    pid = person_id(e164(phone), rig.ctl.person_key)
    await store.redis.set(keys.block(pid), "0|test")
    status, body, _ = await rig.post_json(
        "/api/v1/login", {"nas_id": "nas-local", "mac": "AA-BB-CC-00-34-01"}
    )
    assert (status, body["error"]) == (403, "blocked")


# --------------------------------------------------------------------------- RFC 8908


async def test_captive_portal_api(rig: Rig) -> None:
    rfc_keys = {"captive", "user-portal-url", "venue-info-url", "can-extend-session",
                "seconds-remaining", "bytes-remaining"}  # fmt: skip

    async def ask(path: str = "/captive-portal/api") -> dict[str, Any]:
        async with rig.http.get(rig.base + path) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("application/captive+json")
            assert r.headers["Cache-Control"] == "private"
            data: dict[str, Any] = json.loads(await r.text())
        assert set(data) <= rfc_keys and isinstance(data["captive"], bool)
        return data

    unknown = await ask()
    assert unknown == {"captive": True, "user-portal-url": rig.base + "/portal",
                       "can-extend-session": False}  # fmt: skip
    by_nas = await ask("/captive-portal/api/chilli-ap-1")
    assert by_nas["venue-info-url"] == rig.base + "/venue/station"
    assert by_nas["user-portal-url"] == rig.base + "/portal?nas_id=chilli-ap-1"
    mac = "AA-BB-CC-00-35-01"
    async with rig.http.get(rig.base + f"/portal?nas_id=nas-mt&mac={mac}") as r:
        assert r.status == 200
    assert await ask() == unknown  # a page view is remembered nowhere (issue 13, finding 6)
    _, body, _ = await code_login(rig, "13800138030", nas_id="nas-local", mac=mac)
    reply = await radius_pap(
        rig.ctl.auth_port, NAS["generic"], body["username"], body["password"].encode(), mac
    )
    assert (await ask())["captive"]  # accepted, but no session yet
    await radius_acct(
        rig.ctl.acct_port, NAS["generic"], status="Start", sid="cap1", username=body["username"],
        cls=reply[25][0], mac=mac,
    )  # fmt: skip
    online = await ask()
    assert online["captive"] is False and online["can-extend-session"] is False
    assert 7190 <= online["seconds-remaining"] <= 7200
    assert online["user-portal-url"] == rig.base + "/portal/status"


# --------------------------------------------------------------------------- pages


async def page(rig: Rig, path: str, **kw: Any) -> tuple[int, str, Any]:
    # encoded=True: send the URL byte for byte, as a browser follows a NAS redirect
    async with rig.http.get(URL(rig.base + path, encoded=True), **kw) as r:
        return r.status, await r.text(), r.headers


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


async def test_page_headers_language_and_venue(rig: Rig) -> None:
    status, html, headers = await page(rig, "/portal?nas_id=chilli-ap-1")
    assert status == 400  # chilli with a UAM secret: an unsigned redirect is refused
    status, html, headers = await page(rig, "/portal?nas_id=nas-mt")
    assert status == 200 and '<html lang="zh-CN">' in html and "省人民医院" in html
    assert "医院" in html and "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer" and headers["Cache-Control"] == "no-store"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from elsewhere
    _, html, _ = await page(rig, "/portal?nas_id=nas-mt", headers={"Accept-Language": "en;q=0.9"})
    assert '<html lang="en">' in html and "Provincial People&#39;s Hospital" in html
    _, html, headers = await page(rig, "/portal?nas_id=nas-mt&lang=en")
    assert '<html lang="en">' in html and "cw_lang=en" in headers.getall("Set-Cookie")[-1]
    _, html, _ = await page(rig, "/portal/terms")  # the cookie now says en
    assert '<html lang="en">' in html and "Cybersecurity Law" in html
    status, html, _ = await page(rig, "/venue/hospital?lang=zh")
    assert status == 200 and "长安区" in html and "中国电信" in html
    assert (await page(rig, "/venue/nowhere"))[0] == 404
    async with rig.http.get(rig.base + "/portal/static/portal.css") as r:
        assert r.status == 200 and "text/css" in r.headers["Content-Type"]
    async with rig.http.get(rig.base + "/portal/logo") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/svg+xml"


async def test_chilli_redirect_signature(rig: Rig) -> None:
    url = chilli_redirect(
        rig.base + "/portal", uamport=3990, challenge=CHALLENGE, mac="AA-BB-CC-00-36-01",
        nasid="chilli-ap-1",
    )  # fmt: skip
    assert (await page(rig, url.removeprefix(rig.base)))[0] == 200
    assert (await page(rig, url.removeprefix(rig.base) + "&lang=en"))[0] == 200  # appended: ok
    tampered = url.replace("uamport=3990", "uamport=3991")
    status, html, _ = await page(rig, tampered.removeprefix(rig.base))
    assert status == 400 and "Please reconnect" in html  # (the cw_lang cookie says en now)
    wrong = chilli_redirect(
        rig.base + "/portal", uamport=3990, challenge=CHALLENGE, mac="AA-BB-CC-00-36-01",
        nasid="chilli-ap-1", secret="other",
    )  # fmt: skip
    assert (await page(rig, wrong.removeprefix(rig.base)))[0] == 400


async def test_form_posts_need_the_csrf_token(rig: Rig) -> None:
    _, html, _ = await page(rig, "/portal?nas_id=nas-local")
    fields = form_fields(html)
    data = {"ctx": fields["ctx"], "phone": "13800138031"}
    async with rig.http.post(rig.base + "/portal/otp", data=data) as r:
        assert r.status == 403
    async with rig.http.post(
        rig.base + "/portal/otp", data={**data, "csrf": fields["csrf"]},
        headers={"Origin": "http://evil.example"},
    ) as r:  # fmt: skip
        assert r.status == 403
    assert sms_messages(rig.sms_path) == []
    async with rig.http.post(rig.base + "/portal/otp", data={**data, "csrf": fields["csrf"]}) as r:
        assert r.status == 200 and "138****8031" in await r.text()
    assert len(sms_messages(rig.sms_path)) == 1


async def test_form_flow_refusal_pages(rig: Rig) -> None:
    _, html, _ = await page(rig, "/portal?nas_id=nas-local")
    fields = form_fields(html)
    post = {"csrf": fields["csrf"], "ctx": fields["ctx"], "lang": "en"}
    async with rig.http.post(rig.base + "/portal/otp", data={**post, "phone": "0311"}) as r:
        assert r.status == 400 and "valid mobile number" in await r.text()
    async with rig.http.post(rig.base + "/portal/otp", data={**post, "phone": "13800138032"}) as r:
        assert r.status == 200
    async with rig.http.post(rig.base + "/portal/otp", data={**post, "phone": "13800138032"}) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "60"
    code = rig.code("+8613800138032")
    login = {**post, "phone": "13800138032", "code": code}
    async with rig.http.post(rig.base + "/portal/login", data=login) as r:
        assert r.status == 400 and "accept the terms" in await r.text()  # terms not ticked
    async with rig.http.post(rig.base + "/portal/login", data={**login, "terms": "1"}) as r:
        html, cookies = await r.text(), str(r.headers.getall("Set-Cookie"))
        assert r.status == 200 and "Free time left today: 2 h<" in html and "cw_dev" in cookies
    async with rig.http.post(rig.base + "/portal/login", data={**login, "terms": "1"}) as r:
        html = await r.text()  # used: the form again, saying so (the same words as wrong)
        assert r.status == 401 and "wrong or no longer valid" in html and 'id="code"' in html


async def test_no_phone_numbers_or_codes_in_logs(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    phone = "13800138033"
    assert (await code_login(rig, phone, nas_id="nas-local"))[0] == 200
    out = capsys.readouterr()
    logs = out.out + out.err
    assert "portal.code_sent" in logs and "portal.login" in logs
    assert phone not in logs and rig.code(e164(phone)) not in logs


# --------------------------------------------------------------------------- SMS webhook


async def test_sms_webhook_retries_then_fails(tmp_path: Path, redis_proc: RedisProcess) -> None:
    received: list[tuple[dict[str, Any], str]] = []
    failures = {"left": 1}

    async def gateway(request: web.Request) -> web.Response:
        received.append((await request.json(), request.headers.get("Authorization", "")))
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=502)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/send", gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sms = (
        f'backend = "webhook"\nwebhook_url = "http://127.0.0.1:{port}/send"\n'
        'webhook_headers = { Authorization = "Bearer t0k" }\nwebhook_timeout = 2.0\n'
        "webhook_retries = 2"
    )
    try:
        async with running_portal(tmp_path, redis_proc.url, sms=sms) as rig:
            before = (
                REGISTRY.get_sample_value(
                    "citywifi_portal_sms_total", {"backend": "webhook", "result": "failed"}
                )
                or 0.0
            )
            status, _, _ = await rig.post_json(
                "/api/v1/otp", {"phone": "13800138034", "nas_id": "nas-local"}
            )
            assert status == 202 and len(received) == 2  # one failure, one retry delivered
            body, auth = received[-1]
            assert set(body) == {"to", "text", "sent_at"} and body["to"] == "+8613800138034"
            assert auth == "Bearer t0k"
            failures["left"] = 10
            status, body2, _ = await rig.post_json(
                "/api/v1/otp",
                {"phone": "13800138035", "nas_id": "nas-local"},
                {"Accept-Language": "en"},
            )
            assert (status, body2["error"]) == (503, "sms_failed") and "try again" in body2[
                "message"
            ]
            assert len(received) == 5  # 1 + 2 retries
            after = REGISTRY.get_sample_value(
                "citywifi_portal_sms_total", {"backend": "webhook", "result": "failed"}
            )
            assert after == before + 1
    finally:
        await runner.cleanup()


def test_catalogues_have_the_same_keys() -> None:
    catalog = Catalog.load()
    assert set(catalog.messages["zh"]) == set(catalog.messages["en"])
    assert catalog.text("en", "allowance", duration="2 h") == "Free WiFi: 2 h per person per day"


async def test_bodies_over_the_size_limit_are_413_in_the_routes_own_kind(rig: Rig) -> None:
    """``client_max_size`` (1 MiB): the portal's API answers the JSON error, its pages the
    error page (``controller.web.errors``), never a 500 nor a text/plain answer."""
    big = b'{"phone": "' + b"1" * (1024 * 1024 + 10) + b'"}'
    headers = {"Content-Type": "application/json"}
    async with rig.http.post(rig.base + "/api/v1/otp", data=big, headers=headers) as r:
        body = await r.json()
        assert (r.status, body["error"]) == (413, "too_large") and body["message"], body
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with rig.http.post(rig.base + "/portal/otp", data=b"x=" + big, headers=form) as r:
        assert r.status == 413 and r.content_type == "text/html"
        assert "request body is too large" in await r.text()


async def test_redis_down_is_503_then_a_restarted_empty_redis_serves(
    rig: Rig, redis_proc: RedisProcess
) -> None:
    """The portal's calls ride the batched link: a Redis that is gone is ``unavailable``
    (503, nothing sent); the same Redis restarted without its scripts (NOSCRIPT) is
    reloaded once and the whole login works, code to credential to device cookie."""
    body = {"phone": "13800138091", "nas_id": "nas-local", "mac": "AA-BB-CC-00-91-01"}
    redis_proc.stop()
    status, answer, _ = await rig.post_json("/api/v1/otp", body)
    assert (status, answer["error"]) == (503, "unavailable")
    assert last_code(rig.sms_path, e164(body["phone"])) is None  # no code went out
    redis_proc.start()
    await redis_proc_flush_scripts(redis_proc)

    async def sent() -> bool:
        return (await rig.post_json("/api/v1/otp", body))[0] == 202

    await until(sent, what="the portal to reconnect")
    code = rig.code(e164(body["phone"]))
    await redis_proc_flush_scripts(redis_proc)
    status, answer, headers = await rig.post_json("/api/v1/login", {**body, "code": code})
    assert status == 200 and answer["username"]
    assert any(c.startswith("cw_dev=") for c in headers.getall("Set-Cookie", []))


async def redis_proc_flush_scripts(redis_proc: RedisProcess) -> None:
    client = client_from_url(redis_proc.url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
