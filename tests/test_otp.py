"""SMS codes (controller.services.portal.otp): pure rules, then the Redis side on a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from controller.domain.state import OtpAttempt
from controller.services.portal.errors import PortalError
from controller.services.portal.otp import (
    CODE_TTL,
    MAX_ATTEMPTS,
    OtpBook,
    Verdict,
    clean_code,
    judge,
    new_code,
)
from controller.services.signing import Signer
from controller.storage import keys
from controller.storage.redis_conn import client_from_url
from controller.storage.store import Store
from tests.support.redis_proc import RedisProcess, until

PID = "0123456789abcdef0123"


def test_new_code_is_six_digits_with_leading_zeros() -> None:
    assert new_code(lambda n: 42) == "000042"
    assert new_code(lambda n: n - 1) == "999999"
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 190


@pytest.mark.parametrize(
    ("typed", "clean"),
    [
        ("123456", "123456"),
        (" 123 456 ", "123456"),
        ("１２３４５６", "123456"),  # full-width digits from a Chinese IME
        ("123-456", "123456"),
    ],
)
def test_clean_code_accepts_what_people_type(typed: str, clean: str) -> None:
    assert clean_code(typed) == clean


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12345a", "١٢٣٤٥٦", None])
def test_clean_code_refuses_the_rest(typed: str) -> None:
    with pytest.raises(PortalError) as err:
        clean_code(typed)
    assert err.value.code == "invalid_code"


def test_judge() -> None:
    assert judge(OtpAttempt("gone", "", 0), "d", 5).verdict is Verdict.GONE
    assert judge(OtpAttempt("locked", "", 6), "d", 5).verdict is Verdict.LOCKED
    assert judge(OtpAttempt("check", "d", 1), "d", 5).verdict is Verdict.OK
    wrong = judge(OtpAttempt("check", "d", 2), "x", 5)
    assert wrong.verdict is Verdict.WRONG and wrong.attempts_left == 3
    assert judge(OtpAttempt("check", "d", 5), "x", 5).verdict is Verdict.LOCKED  # 5th wrong
    assert judge(OtpAttempt("check", "d", 5), "d", 5).verdict is Verdict.OK  # the 5th may be right
    assert judge(OtpAttempt("check", "", 1), "", 5).verdict is Verdict.WRONG  # no digest stored


@pytest.fixture
async def store(redis_proc: RedisProcess) -> AsyncIterator[Store]:
    s = Store(client_from_url(redis_proc.url))
    await s.load_scripts()
    yield s
    await s.close()


@pytest.fixture
def book(store: Store) -> OtpBook:
    return OtpBook(store, Signer(b"k" * 32))


DEV = "device-a"  # the device that asked (service.Portal.device_of: opaque)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_code_is_stored_hashed_with_its_ttl(book: OtpBook, store: Store) -> None:
    code = await book.issue(PID, DEV, int(time.time()))
    stored = {
        k.decode(): v.decode()
        for k, v in (await store.redis.hgetall(keys.otp(f"{PID}:{DEV}"))).items()
    }
    assert code not in str(stored) and len(stored["h"]) == 32
    assert CODE_TTL - 2 <= await store.redis.ttl(keys.otp(f"{PID}:{DEV}")) <= CODE_TTL


async def test_right_code_once(book: OtpBook) -> None:
    code = await book.issue(PID, DEV, int(time.time()))
    assert (await book.verify(PID, DEV, code)).verdict is Verdict.OK
    assert (await book.verify(PID, DEV, code)).verdict is Verdict.GONE  # single use


async def test_six_wrong_codes_lock_the_code(book: OtpBook) -> None:
    code = await book.issue(PID, DEV, int(time.time()))
    verdicts = [(await book.verify(PID, DEV, wrong(code))) for _ in range(MAX_ATTEMPTS)]
    assert [v.attempts_left for v in verdicts] == [4, 3, 2, 1, 0]
    assert [v.verdict for v in verdicts[:-1]] == [Verdict.WRONG] * 4
    assert verdicts[-1].verdict is Verdict.LOCKED
    assert (await book.verify(PID, DEV, code)).verdict is Verdict.LOCKED  # even the right one
    fresh = await book.issue(PID, DEV, int(time.time()))  # a new code starts over
    assert (await book.verify(PID, DEV, fresh)).verdict is Verdict.OK


async def test_concurrent_right_codes_win_once(book: OtpBook) -> None:
    code = await book.issue(PID, DEV, int(time.time()))
    results = await asyncio.gather(*(book.verify(PID, DEV, code) for _ in range(4)))
    assert sorted(r.verdict.value for r in results) == ["gone", "gone", "gone", "ok"]


async def test_expired_code_is_gone(book: OtpBook, store: Store) -> None:
    code = await book.issue(PID, DEV, int(time.time()))
    await store.redis.pexpire(
        keys.otp(f"{PID}:{DEV}"), 1
    )  # let Redis expire it instead of waiting 5 min

    async def expired() -> bool:
        return not await store.redis.exists(keys.otp(f"{PID}:{DEV}"))

    await until(expired, 5, "Redis to expire the code")
    assert (await book.verify(PID, DEV, code)).verdict is Verdict.GONE


async def test_codes_are_per_person(book: OtpBook) -> None:
    other = "f" * 20
    a = await book.issue(PID, DEV, int(time.time()))
    await book.issue(other, DEV, int(time.time()))
    assert (await book.verify(other, DEV, a)).verdict in (Verdict.WRONG, Verdict.OK)
    assert (await book.verify(PID, DEV, a)).verdict is Verdict.OK


async def test_codes_are_per_device(book: OtpBook) -> None:
    """A stranger's device has a code slot of its own: its request does not replace the
    owner's code and its wrong guesses do not lock it (issue 13, finding 3)."""
    mine = await book.issue(PID, DEV, int(time.time()))
    theirs = await book.issue(PID, "device-b", int(time.time()))
    for _ in range(MAX_ATTEMPTS + 1):
        assert (await book.verify(PID, "device-b", wrong(theirs))).verdict is not Verdict.OK
    assert (await book.verify(PID, "device-b", mine)).verdict is not Verdict.OK
    assert (await book.verify(PID, DEV, mine)).verdict is Verdict.OK
