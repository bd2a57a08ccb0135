"""Scripted abuse of the portal and the token-protected APIs, over real HTTP against an
in-process controller with a real redis-server:

- SMS bombing: rotating phone numbers, devices, NAS ids and (spoofed or real) source
  addresses; each stops at the documented limit with 429 + ``Retry-After``.
- Code guessing: five attempts per code, across the API and the pages, also when sent
  all at once; at most 20 attempts per number a day from one device, 100 from all.
- Bearer tokens: compared in constant time, 401/403 with the documented JSON error on
  every protected route, never written to the logs.
- Regressions of the input-handling bugs the fuzzers found (docs/portal.md, "Hostile
  input")."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from controller.web import auth
from tests.support.portal_kit import Clock, Rig, running_portal, sms_messages
from tests.support.redis_proc import RedisProcess

TOKENS = {"reports": "tok-reports-6a0f", "audit": "tok-audit-91c2", "admin": "tok-admin-33d7"}
TOKEN_TABLES = "".join(
    f'\n[[api_tokens]]\nname = "{role}-desk"\nsha256 = "{hashlib.sha256(t.encode()).hexdigest()}"'
    f'\nroles = ["{role}"]\n'
    for role, t in TOKENS.items()
)
PROTECTED = [  # (method, path, query or JSON body, role)
    ("GET", "/api/v1/reports/subsidy", {"from": "2025-11-01", "to": "2025-11-02"}, "reports"),
    ("GET", "/api/v1/audit/export", {"from": "2025-11-01", "to": "2025-11-02"}, "audit"),
    ("GET", "/api/v1/admin/sessions", {"phone": "13800138000"}, "admin"),
    ("POST", "/api/v1/admin/disconnect", {"phone": "13800138000"}, "admin"),
    ("POST", "/api/v1/admin/block", {"phone": "13800138000", "days": 1}, "admin"),
    ("POST", "/api/v1/admin/unblock", {"phone": "13800138000"}, "admin"),
    ("POST", "/api/v1/admin/revoke-devices", {"phone": "13800138000"}, "admin"),
]
PROXY = 'trusted_proxies = ["127.0.0.1"]'  # the test client itself plays the reverse proxy


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rig(tmp_path: Path, redis_proc: RedisProcess, clock: Clock) -> AsyncIterator[Rig]:
    async with running_portal(tmp_path, redis_proc.url, clients=TOKEN_TABLES, clock=clock) as r:
        yield r


@pytest.fixture
async def proxied(tmp_path: Path, redis_proc: RedisProcess, clock: Clock) -> AsyncIterator[Rig]:
    """The portal behind a trusted reverse proxy (X-Forwarded-For believed)."""
    async with running_portal(tmp_path, redis_proc.url, portal=PROXY, clock=clock) as r:
        yield r


@pytest.fixture
async def venue(tmp_path: Path, redis_proc: RedisProcess, clock: Clock) -> AsyncIterator[Rig]:
    """As ``proxied``, with a NAS limit of 20 an hour."""
    settings = f"{PROXY}\notp_per_nas_hour = 20"
    async with running_portal(tmp_path, redis_proc.url, portal=settings, clock=clock) as r:
        yield r


async def otp(
    rig: Rig, phone: str, xff: str | None = None, device: int | None = None, **extra: str
) -> tuple[int, int]:
    """POST /api/v1/otp (through nas-local unless ``nas_id`` says otherwise), as browser
    ``device`` when given; (status, Retry-After). A 429 says the same in three places."""
    if device is not None:
        rig.as_device(device)
    headers = {"X-Forwarded-For": xff} if xff else None
    body = {"phone": phone, "nas_id": "nas-local", **extra}
    status, answer, h = await rig.post_json("/api/v1/otp", body, headers)
    if status == 429:
        assert answer["error"] == "rate_limited"
        assert answer["retry_after"] == int(h["Retry-After"])
        assert str(answer["retry_after"]) in answer["message"]
        return status, int(h["Retry-After"])
    assert status == 202, answer
    return status, 0


def phones(n: int, start: int = 0) -> list[str]:
    return [f"1390013{start + i:04d}" for i in range(n)]


def mac(rng: random.Random) -> str:
    return "-".join(f"{rng.randrange(256):02X}" for _ in range(6))


def ipv4(rng: random.Random) -> str:
    return f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"


# --------------------------------------------------------------------------- SMS bombing


async def test_rotating_numbers_devices_and_spoofed_addresses_stop_at_the_ip_limit(
    rig: Rig, clock: Clock
) -> None:
    """One client, no trusted proxy: a new number, a new device (cookie, MAC) and a new
    forged X-Forwarded-For on every request. Only the socket address counts: 60/hour."""
    rng = random.Random(1)
    results = [
        await otp(rig, p, ipv4(rng), device=i, mac=mac(rng)) for i, p in enumerate(phones(70))
    ]
    assert [s for s, _ in results] == [202] * 60 + [429] * 10
    assert {r for _, r in results[60:]} == {3600}
    assert len(sms_messages(rig.sms_path)) == 60
    clock.advance(3600)
    assert (await otp(rig, "13900139999", device=99))[0] == 202


async def test_rotating_addresses_for_one_number_stop_at_the_phone_ceiling(
    proxied: Rig, clock: Clock
) -> None:
    """Through the trusted proxy, every request from a new network and device, all for
    one victim's number, once a minute for a day: one device's share is 10 a day, but
    fresh devices share only the per-phone ceiling: 30 SMS a day reach the phone."""
    rng = random.Random(2)
    victim, sent, start = "13900138888", 0, clock.now
    for i in range(200):
        status, retry = await otp(proxied, victim, ipv4(rng), device=i, mac=mac(rng))
        sent += status == 202
        if status == 429:
            assert retry > 86400 - 3600  # until the first of the day leaves the window
            break
        clock.advance(60)
    to_victim = [m for m in sms_messages(proxied.sms_path) if m["to"] == "+86" + victim]
    assert sent == len(to_victim) == 30 and clock.now - start < 86400


async def test_forwarded_for_is_believed_only_at_its_right_end(proxied: Rig, clock: Clock) -> None:
    """Behind the proxy, a client that forges the left part of X-Forwarded-For is still
    the address the proxy appended: its 60 per hour hold."""
    rng = random.Random(3)
    statuses = [
        (await otp(proxied, p, f"{ipv4(rng)}, {ipv4(rng)}, 203.0.113.7", device=i))[0]
        for i, p in enumerate(phones(62, 100))
    ]
    assert statuses == [202] * 60 + [429] * 2
    assert (await otp(proxied, "13900130500", "203.0.113.8", device=99))[0] == 202


async def test_ipv6_addresses_of_one_prefix_share_the_ip_limit(proxied: Rig, clock: Clock) -> None:
    """Regression: a client with a /64 could use a new IPv6 address for every request
    and never meet the per-IP limit. Now the /64 is the key (IPv4-mapped = IPv4)."""
    rng = random.Random(4)
    addresses = [
        f"2001:db8:7:9:{rng.randrange(2**16):x}::{rng.randrange(2**16):x}" for _ in range(62)
    ]
    statuses = [
        (await otp(proxied, p, a, device=i))[0]
        for i, (p, a) in enumerate(zip(phones(62, 200), addresses, strict=True))
    ]
    assert statuses == [202] * 60 + [429] * 2
    assert (await otp(proxied, "13900130600", "2001:db8:7:a::1", device=99))[0] == 202
    for i, phone in enumerate(phones(61, 300)):
        address = "198.51.100.9" if i % 2 else "::ffff:198.51.100.9"
        status, _ = await otp(proxied, phone, address, device=100 + i)
        assert status == (202 if i < 60 else 429), i


async def test_many_devices_behind_one_nas_stop_at_the_nas_limit(venue: Rig, clock: Clock) -> None:
    """A flood from many devices of one venue (new number, MAC and address each time,
    the NAS named by its id or by its NAS-Identifier): the NAS limit (20 here) holds."""
    rng = random.Random(5)
    names = ("nas-mt", "mt-beiguo")
    results = [
        await otp(venue, p, ipv4(rng), device=i, mac=mac(rng), nas_id=names[i % 2])
        for i, p in enumerate(phones(24, 400))
    ]
    assert [s for s, _ in results] == [202] * 20 + [429] * 4
    assert {r for _, r in results[20:]} == {3600}
    assert (await otp(venue, "13900130700", ipv4(rng), device=99))[0] == 202


# --------------------------------------------------------------------------- code guessing


def wrong(code: str, k: int = 1) -> str:
    return f"{(int(code) + k) % 1_000_000:06d}"


async def login(rig: Rig, phone: str, code: str, xff: str | None = None) -> tuple[int, str]:
    headers = {"X-Forwarded-For": xff} if xff else None
    body = {"phone": phone, "code": code, "nas_id": "nas-local"}
    status, answer, _ = await rig.post_json("/api/v1/login", body, headers)
    return status, answer.get("error", "")


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("citywifi_portal_refused_total", {"reason": reason}) or 0.0


async def test_guesses_from_one_device_are_capped_at_twenty_a_day(rig: Rig, clock: Clock) -> None:
    """Each code takes five guesses (the fifth wrong one kills it); one device gets at
    most ``verify_per_device_day`` (20) attempts at one number in 24 hours."""
    phone, e164 = "13900137777", "+8613900137777"
    attempts: list[tuple[int, str]] = []
    for _ in range(20):
        status, retry = await otp(rig, phone)
        if status == 429:
            clock.advance(retry)
            continue
        code = rig.code(e164)
        attempts += [await login(rig, phone, wrong(code, k)) for k in range(1, 6)]
        attempts.append(await login(rig, phone, code))  # dead after five, even when right
        if attempts[-1][0] == 429:
            break
        assert attempts[-1] == (401, "wrong_code")
        clock.advance(60)
    compared = [a for a in attempts if a[0] != 429]
    assert compared == [(401, "wrong_code")] * 20 and attempts[20][0] == 429


async def test_guesses_per_number_from_many_devices_are_capped_at_a_hundred_a_day(
    proxied: Rig, clock: Clock
) -> None:
    """A script with a new address and device for every code (codes: the per-phone
    ceiling of 30 a day) still gets at most ``verify_per_phone_day`` (100) attempts at
    one number in 24 hours: a 1 in 10 000 chance to guess a code."""
    rng = random.Random(6)
    phone, e164, start = "13900137778", "+8613900137778", clock.now
    compared, i = 0, 0
    while clock.now - start < 86400 - 3600:
        i += 1
        address = ipv4(rng)
        status, _ = await otp(proxied, phone, address, device=i)
        assert status == 202, i
        code = proxied.code(e164)
        answers = [await login(proxied, phone, wrong(code, k), address) for k in range(1, 6)]
        answers.append(await login(proxied, phone, code, address))
        compared += sum(s == 401 for s, _ in answers)
        if any(s == 429 for s, _ in answers):
            break
        clock.advance(60)
    assert compared == 100


async def test_concurrent_guesses_cannot_exceed_five(rig: Rig) -> None:
    """Fifteen wrong guesses at once: the attempt counter is atomic (Lua), so four are
    judged wrong and the rest find the code locked (the same answer for all), and the
    right code is dead after."""
    phone = "13900136666"
    assert (await otp(rig, phone))[0] == 202
    code = rig.code("+86" + phone)
    wrong_before, locked_before = refused("code_wrong"), refused("code_locked")
    answers = await asyncio.gather(*(login(rig, phone, wrong(code, k)) for k in range(1, 16)))
    assert answers == [(401, "wrong_code")] * 15
    assert await login(rig, phone, code) == (401, "wrong_code")
    assert refused("code_wrong") - wrong_before == 4
    assert refused("code_locked") - locked_before == 12


async def test_guesses_by_page_and_api_and_any_spelling_share_the_cap(rig: Rig) -> None:
    phone = "13900135555"
    async with rig.http.get(rig.base + "/portal?nas_id=nas-local") as r:  # the browser's nonce
        fields = dict(
            re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', await r.text())
        )
    assert (await otp(rig, phone))[0] == 202  # the same browser asks for the code
    code = rig.code("+86" + phone)
    form = {"csrf": fields["csrf"], "ctx": fields["ctx"], "terms": "1", "lang": "en"}
    for spelling in ("+86 139-0013-5555", "１３９００１３５５５５"):
        async with rig.http.post(
            rig.base + "/portal/login", data={**form, "phone": spelling, "code": wrong(code)}
        ) as r:
            assert r.status == 401
    assert await login(rig, "+8613900135555", wrong(code, 2)) == (401, "wrong_code")
    assert await login(rig, phone, wrong(code, 3)) == (401, "wrong_code")
    assert await login(rig, phone, wrong(code, 4)) == (401, "wrong_code")
    assert await login(rig, phone, code) == (401, "wrong_code")  # the sixth: locked


# --------------------------------------------------------------------------- tokens


async def call(
    rig: Rig, method: str, path: str, args: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One API call; the body as JSON (an error), or {} for a report or export file."""
    kw: dict[str, Any] = {"params": args} if method == "GET" else {"json": args}
    async with rig.http.request(method, rig.base + path, headers=headers, **kw) as r:
        is_json = r.status != 200 or "admin" in path  # errors are JSON on every route
        return r.status, dict(r.headers), await r.json() if is_json else {}


async def test_every_protected_route_refuses_missing_bad_and_wrong_role_tokens(rig: Rig) -> None:
    """401 ``unauthorized`` without a bearer token, 401 ``invalid_token`` for an unknown
    one (both with ``WWW-Authenticate: Bearer``), 403 ``forbidden`` for a token of
    another role: always the documented JSON error, before the parameters are read."""
    for method, path, args, role in PROTECTED:
        missing = [{}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer "}]
        for headers in missing:
            status, h, body = await call(rig, method, path, args, headers)
            assert (status, body["error"]) == (401, "unauthorized"), (path, headers)
            assert h["WWW-Authenticate"].startswith("Bearer") and body["message"]
        unknown = [TOKENS[role][:-1], TOKENS[role] + "x", TOKENS[role].upper(), "x" * 4096]
        for token in unknown:
            status, h, body = await call(
                rig, method, path, args, {"Authorization": f"Bearer {token}"}
            )
            assert (status, body["error"]) == (401, "invalid_token"), (path, token[:20])
            assert h["WWW-Authenticate"].startswith("Bearer") and body["message"]
        for other, token in TOKENS.items():
            if other == role:
                continue
            bogus = {k: "\x00not-valid" for k in args}  # the role is checked first
            status, _, body = await call(
                rig, method, path, bogus, {"Authorization": f"Bearer {token}"}
            )
            assert (status, body["error"]) == (403, "forbidden"), (path, other)
            assert role in body["message"]
        status, _, _ = await call(
            rig, method, path, args, {"Authorization": f"bearer {TOKENS[role]}"}
        )
        assert status != 401 and status < 500, (path, status)  # scheme is case-insensitive


def test_token_lookup_is_constant_time_over_every_configured_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``token_for`` compares the presented token's SHA-256 with every configured digest
    by ``hmac.compare_digest``, with no early exit: the time depends neither on where a
    match is nor on how much of a token is right (equal-length hex digests compared)."""
    from controller.config import ApiToken

    tokens = [ApiToken(f"t{i}", hashlib.sha256(b"k%d" % i).hexdigest(), frozenset({"admin"}))
              for i in range(5)]  # fmt: skip
    config: Any = type("C", (), {"api_tokens": tokens})()
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    for presented in ("k0", "k4", "nope", "k0" * 1000, "\udcff\udcfe"):
        seen.clear()
        found = auth.token_for(presented, config)
        assert len(seen) == len(tokens), presented  # every digest, always
        assert all(len(a) == len(b) == 64 for a, b in seen)  # digests, not the token
        assert (found.name if found else None) == {"k0": "t0", "k4": "t4"}.get(presented)


async def test_tokens_never_reach_the_logs(
    rig: Rig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Right, wrong and truncated tokens on every route, the report page's sign-in and
    its session cookie: no token, no session cookie and no Authorization header value
    appears in a log event (rendered as the JSON lines ``serve`` writes), in the stdlib
    log records (aiohttp) or on stdout/stderr."""
    caplog.set_level(logging.DEBUG)
    secrets_seen: list[str] = [*TOKENS.values(), "tok-wrong-5f1e"]
    with structlog.testing.capture_logs() as events:
        for method, path, args, role in PROTECTED:
            for token in (TOKENS[role], "tok-wrong-5f1e", TOKENS[role][:-2]):
                await call(rig, method, path, args, {"Authorization": f"Bearer {token}"})
            for other in TOKENS.values():
                await call(rig, method, path, args, {"Authorization": f"Bearer {other}"})
        async with rig.http.get(rig.base + "/reports") as r:
            csrf = re.search(r'name="csrf" value="([0-9a-f]{32})"', await r.text())
            nonce = r.cookies["cw_reports_csrf"].value  # the form's token is bound to it
        assert csrf is not None
        session = ""
        for token in ("tok-wrong-5f1e", TOKENS["audit"], TOKENS["reports"]):
            async with rig.http.post(
                rig.base + "/reports/login",
                data={"token": token, "csrf": csrf.group(1)},
                headers={"Cookie": f"cw_reports_csrf={nonce}"},
                allow_redirects=False,
            ) as r:
                assert r.status in (303, 401, 403)
                if r.status == 303:
                    session = r.cookies["cw_reports"].value
        assert session
        secrets_seen.append(session)
        async with rig.http.get(
            rig.base + "/reports/download", params={"from": "2025-11-01", "to": "2025-11-01"},
            headers={"Cookie": f"cw_reports={session}"},
        ) as r:  # fmt: skip
            assert r.status == 200
    rendered = [json.dumps(e, default=str, ensure_ascii=False) for e in events]
    assert any("reports.login" in line for line in rendered)  # the log was captured
    out = capsys.readouterr()
    text = "\n".join([*rendered, caplog.text, out.out, out.err])
    for secret in secrets_seen:
        assert secret not in text
    assert "Bearer " not in text


# --------------------------------------------------------------------------- regressions


async def raw_post(rig: Rig, path: str, ctype: str, body: bytes, **headers: str) -> tuple[int, Any]:
    async with rig.http.post(
        rig.base + path, data=body, headers={"Content-Type": ctype, **headers}
    ) as r:
        text = await r.read()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def test_json_bodies_that_are_not_utf8_or_too_deep_are_bad_json(rig: Rig) -> None:
    """Regression (schemathesis): a JSON body with bytes that are not UTF-8 was a 500 on
    /api/v1/otp and /api/v1/login; nesting too deep (RecursionError) and an unknown
    charset (LookupError) were 500s there and on the admin API."""
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    bad = [b"\xff\xfe{}", b"[" * 50_000, b'{"phone": "13800138000"']
    for path in ("/api/v1/otp", "/api/v1/login", "/api/v1/logout", "/api/v1/admin/block"):
        for body in bad:
            status, answer = await raw_post(rig, path, "application/json", body, **admin)
            assert (status, answer["error"]) == (400, "bad_json"), (path, body[:8])
    status, answer = await raw_post(
        rig, "/api/v1/admin/unblock", "application/json; charset=x-unknown",
        b'{"phone": "13800138000"}', **admin,
    )  # fmt: skip
    assert status == 200 and answer["was_blocked"] is False  # JSON is UTF-8 whatever it says


async def test_form_bodies_that_do_not_parse_are_400_not_500(rig: Rig) -> None:
    """Regression (schemathesis): multipart/form-data without a boundary (and with broken
    part headers, bytes that are not UTF-8) was a 500 on every form post."""
    bodies = [
        ("multipart/form-data", b"csrf=x&phone=1"),
        ("multipart/form-data; boundary=zz", b"--zz\r\n\xff\r\n"),
        ("application/x-www-form-urlencoded", b"csrf=\xff&phone=\xfe"),
        ("application/x-www-form-urlencoded; charset=x-unknown", b"csrf=x"),
    ]
    for path in ("/portal/otp", "/portal/login", "/portal/continue", "/portal/logout"):
        for ctype, body in bodies:
            status, _ = await raw_post(rig, path, ctype, body)
            assert status == 400, (path, ctype)
    for path in ("/reports/login", "/reports/logout"):
        for ctype, body in bodies:
            status, _ = await raw_post(rig, path, ctype, body)
            assert status in (403, 303, 200), (path, ctype, status)  # a form that failed


async def raw_get(rig: Rig, path: str, header: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ctl.http_port)
    try:
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header
            + b"\r\nConnection: close\r\n\r\n"
        )  # fmt: skip
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_header_bytes_that_are_not_utf8_are_refused_not_500(rig: Rig) -> None:
    """Regression (raw-byte fuzz): a bearer token, a report session cookie or a portal
    CSRF cookie with bytes that are not UTF-8 raised in the comparison (500)."""
    for path in ("/api/v1/admin/sessions?phone=13800138000", "/api/v1/audit/export"):
        status, body = await raw_get(rig, path, b"Authorization: Bearer \xff\xfe")
        assert (status, json.loads(body)["error"]) == (401, "invalid_token")
    for path in ("/reports", "/reports/download"):
        status, _ = await raw_get(rig, path, b"Cookie: cw_reports=a~9999999999~b~\xff\xfe")
        assert status in (200, 401), (path, status)  # the sign-in page / not signed in
    async with rig.http.get(rig.base + "/portal?nas_id=nas-local") as r:
        ctx = dict(re.findall(r'name="(\w+)" value="([^"]*)"', await r.text()))["ctx"]
    body = f"csrf=x&ctx={ctx}&phone=13800138000".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.ctl.http_port)
    try:
        writer.write(
            b"POST /portal/otp HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: cw_csrf=\xff\xfe\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert data.split()[1] == b"403"  # the CSRF check refuses it
    assert sms_messages(rig.sms_path) == []
