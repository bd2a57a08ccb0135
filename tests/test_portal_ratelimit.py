"""SMS-code rate limits: the arithmetic, the Lua script against it on a real Redis, and a
scripted loop of ``POST /api/v1/otp`` hitting each documented limit (429 + Retry-After)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.config import PortalSettings
from controller.services.portal.ratelimit import Rule, retry_after_seconds, rules_for, wait_ms
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.support.portal_kit import Clock, Rig, running_portal, sms_messages
from tests.support.redis_proc import RedisProcess

H = 3600_000  # ms


def test_wait_ms_cooldown_and_caps() -> None:
    phone = rules_for(PortalSettings())["phone_device"]
    assert wait_ms([], phone, 0) == 0
    assert wait_ms([0], phone, 1_000) == 59_000  # resend after 60 s
    assert wait_ms([0], phone, 60_000) == 0
    five = [0, 60_000, 120_000, 180_000, 240_000]
    assert wait_ms(five, phone, 300_000) == H - 300_000  # the oldest of the hour must leave
    ten = five + [H + t for t in five]
    assert wait_ms(ten, phone, H + 300_000) == 86_400_000 - (H + 300_000)  # day cap


def test_wait_ms_names_the_right_event() -> None:
    rule = [Rule(limit=2, window=10)]
    # three events in the window, limit two: the second-oldest must leave
    assert wait_ms([1_000, 2_000, 3_000], rule, 5_000) == 2_000 + 10_000 - 5_000
    assert wait_ms([1_000], rule, 11_000) == 0


def test_retry_after_rounds_up() -> None:
    assert [retry_after_seconds(ms) for ms in (1, 999, 1_000, 1_001)] == [1, 1, 1, 2]


@pytest.fixture
async def store(redis_proc: RedisProcess) -> AsyncIterator[Store]:
    s = Store(client_from_url(redis_proc.url))
    await s.load_scripts()
    yield s
    await s.close()


async def test_lua_script_matches_the_model(store: Store) -> None:
    """Random arrival times: the script admits exactly when ``wait_ms`` says 0, and names
    the same wait otherwise."""
    rng = random.Random(8908)
    rules = (Rule(1, 5), Rule(3, 60), Rule(6, 600))
    now, admitted = 1_700_000_000_000, []
    for i in range(400):
        now += rng.choice((0, 1, 500, 4_999, 5_000, 20_000, 61_000, 300_000))
        expected = wait_ms(admitted, rules, now)
        check = [("test", "x", [(r.limit, r.window * 1000) for r in rules])]
        if i % 3 == 0:  # a check alone records nothing
            assert await store.rate_hit(check, now, f"c{i}", record=False) == [expected]
        (got,) = await store.rate_hit(check, now, f"e{i}", record=True)
        assert got == expected, (i, now)
        if got == 0:
            admitted.append(now)
    assert 20 < len(admitted) < 400


async def admit_like_the_model(store: Store, seed: int) -> int:
    """Random arrivals over three dimensions with their own rules: ``rate_admit`` records
    an event in every dimension exactly when ``wait_ms`` allows it in all, and names each
    dimension's wait otherwise (a refused event starts no other dimension's window).
    Returns how many events were admitted."""
    rng = random.Random(seed)
    dims = {
        "ip": (Rule(4, 60),),
        "phone_device": (Rule(1, 5), Rule(3, 600)),
        "nas": (Rule(6, 120),),
    }
    admitted: dict[str, list[int]] = {d: [] for d in dims}
    now, count = 1_700_000_000_000, 0
    for i in range(300):
        now += rng.choice((0, 1, 999, 4_999, 5_000, 30_000, 61_000, 300_000))
        expected = [wait_ms(admitted[d], rules, now) for d, rules in dims.items()]
        checks = [
            (d, "x", [(r.limit, r.window * 1000) for r in rules]) for d, rules in dims.items()
        ]
        got = await store.rate_admit(checks, now, f"e{i}")
        assert got == expected, (i, now)
        if not any(got):
            count += 1
            for d in dims:
                admitted[d].append(now)
    return count


async def test_rate_admit_matches_the_model_all_or_nothing(store: Store) -> None:
    assert 20 < await admit_like_the_model(store, 8908) < 300


async def test_rate_admit_is_one_script_call_on_one_redis(store: Store) -> None:
    """Every dimension of a request in one call (one command of the batched link)."""
    sent: list[int] = []
    original = store.batch.run

    async def counting(commands: list[Any]) -> list[Any]:
        sent.append(len(commands))
        return await original(commands)

    store.batch.run = counting  # type: ignore[method-assign]
    rules = [(2, 60_000)]
    checks = [("ip", "a", rules), ("nas", "b", rules), ("phone", "c", rules)]
    assert await store.rate_admit(checks, 1_000, "m1") == [0, 0, 0]
    assert sent == [1]
    assert await store.rate_admit(checks[:1], 1_001, "m2") == [0]  # "ip" is now full
    # "ip" refuses: nothing is recorded in "nas" and "phone" (each still has room for 1)
    assert (await store.rate_admit(checks, 1_002, "m3"))[0] > 0
    assert await store.rate_admit(checks[1:], 1_003, "m4") == [0, 0]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rig(tmp_path: Path, redis_proc: RedisProcess, clock: Clock) -> AsyncIterator[Rig]:
    async with running_portal(
        tmp_path, redis_proc.url, portal="otp_per_nas_hour = 8\notp_per_ip_hour = 20", clock=clock
    ) as r:
        yield r


async def otp(rig: Rig, phone: str, **extra: str) -> tuple[int, dict[str, object], int | None]:
    body = {"phone": phone, "nas_id": "nas-local", **extra}
    status, body, headers = await rig.post_json("/api/v1/otp", body)
    retry = headers.get("Retry-After")
    if status == 429:
        assert retry is not None and body["error"] == "rate_limited"
        assert body["retry_after"] == int(retry) and retry in str(body["message"])
    return status, body, int(retry) if retry else None


async def test_phone_limits(rig: Rig, clock: Clock) -> None:
    phone, e164 = "13800138010", "+8613800138010"
    start = clock.now
    assert (await otp(rig, phone))[:2] == (202, {"resend_after": 60, "expires_in": 300})
    assert (await otp(rig, phone))[::2] == (429, 60)  # resend only after 60 s
    clock.advance(59)
    assert (await otp(rig, "+86 138-0013-8010"))[::2] == (429, 1)  # any spelling, same phone
    for _ in range(4):  # 5 per hour
        clock.advance(60)
        assert (await otp(rig, phone))[0] == 202
    clock.advance(60)
    status, _, retry = await otp(rig, phone)
    assert status == 429 and retry == 3600 - 59 - 5 * 60  # until the first leaves the hour
    # keep asking, waiting as told, until the day's 10 are sent
    for _ in range(40):
        clock.advance(retry or 60)
        status, _, retry = await otp(rig, phone)
        if len(sms_to(rig, e164)) == 10:
            break
    assert len(sms_to(rig, e164)) == 10
    clock.advance(60)
    status, _, retry = await otp(rig, phone)
    assert status == 429 and retry == round(86400 - (clock.now - start))  # 10 per day


def sms_to(rig: Rig, e164: str) -> list[str]:
    return [m["text"] for m in sms_messages(rig.sms_path) if m["to"] == e164]


async def test_device_ip_and_nas_limits(rig: Rig, clock: Clock) -> None:
    phones = [f"1380013{8100 + i:04d}" for i in range(80)]
    rig.as_device(1)
    for phone in phones[:5]:  # 5 codes per device (browser nonce) per hour, any numbers
        assert (await otp(rig, phone, nas_id="nas-chilli"))[0] == 202
    status, _, retry = await otp(rig, phones[5], nas_id="nas-chilli")
    assert status == 429 and retry == 3600
    for i, phone in enumerate(phones[6:9]):  # NAS: 8 per hour in this config (default 2000)
        rig.as_device(10 + i)
        assert (await otp(rig, phone, nas_id="nas-chilli"))[0] == 202
    rig.as_device(20)
    assert (await otp(rig, phones[9], nas_id="nas-chilli"))[::2] == (429, 3600)
    sent, nases = 8, ("nas-local", "nas-local-2", "nas-mt")
    for i, phone in enumerate(phones[10:]):  # source IP: 20 per hour in this config
        rig.as_device(30 + i)
        status, _, retry = await otp(rig, phone, nas_id=nases[i % 3])
        if status == 429:
            break
        sent += 1
    assert sent == 20 and retry == 3600
    clock.advance(3600)
    assert (await otp(rig, phones[-1]))[0] == 202


async def test_refused_requests_cost_nothing(rig: Rig, clock: Clock) -> None:
    """A request refused for its device does not start the phone's cooldown."""
    rig.as_device(1)
    for i in range(5):
        assert (await otp(rig, f"1390013{9000 + i:04d}"))[0] == 202
    assert (await otp(rig, "13900139099"))[0] == 429
    rig.as_device(2)
    assert (await otp(rig, "13900139099"))[0] == 202  # from another device: fine at once
