from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.config import QuotaPolicy
from controller.domain.access import Outcome, decide_access, retry_of
from controller.domain.identity import ClassVerifier, class_key, sign_class, verify_class
from controller.domain.state import LOGIN_REUSE_GRACE, LoginUse, Origin, PersonState

SH = ZoneInfo("Asia/Shanghai")
POLICY = QuotaPolicy(daily_seconds=7200, timezone=SH, max_devices=2)
NOON = int(datetime(2026, 11, 25, 12, tzinfo=SH).timestamp())
MAC = "AA-BB-CC-DD-EE-FF"
HERE = Origin("nas-a", "sess-1", "11" * 16, "10.0.0.1:1645")


def state(**kw: object) -> PersonState:
    base: dict[str, object] = dict(
        password="pw",
        client="nas-a",
        bound_mac="",
        used=None,
        used_today=0,
        other_devices=0,
        block="",
    )
    base.update(kw)
    return PersonState(**base)  # type: ignore[arg-type]


def decide(  # type: ignore[no-untyped-def]
    s: PersonState,
    credential: bool = True,
    ok: bool = True,
    now: int = NOON,
    mac: str = MAC,
    origin: Origin | None = HERE,
):
    return decide_access(
        s, credential=credential, password_ok=ok, mac=mac, policy=POLICY, now=now, origin=origin
    )


def used(at: int = NOON - 10, mac: str = MAC, origin: Origin = HERE) -> LoginUse:
    return LoginUse(at, mac, origin)


def test_accept_with_time_left() -> None:
    d = decide(state(used_today=1000))
    assert d.accept and d.session_timeout == 6200


def test_rejects_in_order() -> None:
    assert decide(state(password="")).outcome is Outcome.UNKNOWN_CREDENTIAL
    assert decide(state(), ok=False).outcome is Outcome.BAD_PASSWORD
    assert decide(state(bound_mac="11-22-33-44-55-66")).outcome is Outcome.WRONG_DEVICE
    retry = Origin("nas-a", "sess-1", "22" * 16)  # same NAS session, a fresh request
    assert decide(state(used=used(NOON - 600)), origin=retry).outcome is Outcome.CREDENTIAL_USED
    assert decide(state(used=used()), origin=retry).accept  # NAS retry, same device
    assert decide(state(used=used(mac="x")), origin=retry).outcome is Outcome.CREDENTIAL_USED
    assert decide(state(block="0|abuse")).outcome is Outcome.BLOCKED
    assert decide(state(other_devices=2)).outcome is Outcome.DEVICE_LIMIT
    assert decide(state(other_devices=1)).accept


def test_a_credential_works_only_at_its_own_client() -> None:
    """Finding 1 (pure part): issued for nas-a, presented at nas-b -> wrong_client; a
    credential without a client (issued before binding) works nowhere."""
    elsewhere = Origin("nas-b", "sess-1", "11" * 16)
    assert decide(state(), origin=elsewhere).outcome is Outcome.WRONG_CLIENT
    assert decide(state(), origin=None).outcome is Outcome.WRONG_CLIENT
    assert decide(state(client="")).outcome is Outcome.WRONG_CLIENT
    d = decide(state(), origin=elsewhere)
    assert "another network" in d.message and "签发" in d.message
    # a bad password is still said first: a guesser learns nothing about the binding
    assert decide(state(), ok=False, origin=elsewhere).outcome is Outcome.BAD_PASSWORD


def test_a_bound_credential_needs_the_calling_station_id() -> None:
    """Finding 7 (pure part): bound to a MAC, and the request names no device."""
    d = decide(state(bound_mac=MAC), mac="")
    assert d.outcome is Outcome.MISSING_DEVICE and "Calling-Station-Id" in d.message
    assert decide(state(bound_mac=MAC)).accept


def test_reuse_grace_is_for_a_retry_of_the_same_login_only() -> None:
    """Finding 7 (pure part): same client, MAC and NAS session, a new authenticator."""
    first = used()
    assert retry_of(first, MAC, Origin("nas-a", "sess-1", "22" * 16), NOON)
    assert retry_of(first, MAC, HERE, NOON)  # same bytes, same source: a retransmission
    replay = Origin("nas-a", "sess-1", "11" * 16, "10.0.0.1:40000")
    assert not retry_of(first, MAC, replay, NOON)  # same bytes, another source port
    assert not retry_of(first, MAC, Origin("nas-b", "sess-1", "22" * 16), NOON)
    assert not retry_of(first, MAC, Origin("nas-a", "sess-2", "22" * 16), NOON)
    assert not retry_of(first, "11-22-33-44-55-66", Origin("nas-a", "sess-1", "22" * 16), NOON)
    assert not retry_of(used(mac=""), "", Origin("nas-a", "sess-1", "22" * 16), NOON)
    late = NOON - 10 + LOGIN_REUSE_GRACE + 1
    assert not retry_of(first, MAC, Origin("nas-a", "sess-1", "22" * 16), late)


def test_exhausted_says_when_it_resets() -> None:
    d = decide(state(used_today=7200))
    assert d.outcome is Outcome.EXHAUSTED
    assert "2026-11-26 00:00" in d.message
    assert "用完" in d.message and "used up" in d.message


def test_blocked_until_shown() -> None:
    until = NOON + 86400
    d = decide(state(block=f"{until}|abuse"), credential=False)
    assert d.outcome is Outcome.BLOCKED and "2026-11-26 12:00" in d.message


def test_mac_login_ignores_password() -> None:
    assert decide(state(password=""), credential=False, ok=False).accept


# ------------------------------------------------- Class: signed, per client (finding 2)

KEY = class_key(b"test-person-key-0123456789")
PID = "0123456789abcdef0123"
NONCE = "00112233445566aa"


def test_class_round_trip_and_binding() -> None:
    value = sign_class(KEY, PID, "c", "nas-a", NONCE)
    assert value.startswith(b"cw2:" + PID.encode() + b":c:") and len(value) <= 253
    claim = verify_class(KEY, value, "nas-a")
    assert claim is not None and (claim.person, claim.kind, claim.nonce) == (PID, "c", NONCE)
    assert verify_class(KEY, value, "nas-b") is None  # issued to another client
    assert verify_class(class_key(b"another-person-key-xxxxx"), value, "nas-a") is None
    assert verify_class(KEY, b"cw1:" + PID.encode() + b":c", "nas-a") is None  # old format
    assert verify_class(KEY, value + b"\n", "nas-a") is None
    assert verify_class(KEY, None, "nas-a") is None
    victim = "fedcba9876543210fedc"
    assert verify_class(KEY, value.replace(PID.encode(), victim.encode()), "nas-a") is None
    assert verify_class(KEY, value.replace(b":c:", b":m:"), "nas-a") is None


@given(st.binary(max_size=120))
def test_class_verify_never_raises_and_rejects_noise(data: bytes) -> None:
    assert verify_class(KEY, data, "nas-a") is None
    assert verify_class(KEY, b"cw2:" + data, "nas-a") is None


@given(st.integers(0, 75), st.integers(0, 7))
def test_every_bit_flip_of_a_class_is_refused(pos: int, bit: int) -> None:
    value = bytearray(sign_class(KEY, PID, "m", "nas-a", NONCE))
    value[pos % len(value)] ^= 1 << bit
    assert verify_class(KEY, bytes(value), "nas-a") is None


# ------------------------------------- the Class verifier's memory (issue 16: once a session)


def test_class_verifier_remembers_only_what_it_verified() -> None:
    book = ClassVerifier(KEY, limit=4)
    value = sign_class(KEY, PID, "c", "nas-a", NONCE)
    first = book.verify(value, "nas-a")
    assert first is not None and first == verify_class(KEY, value, "nas-a")
    assert book.verify(value, "nas-a") is first and len(book) == 1  # the second from memory
    # the same octets from another client: never verified for it, so refused, not stored
    assert book.verify(value, "nas-b") is None and len(book) == 1
    forged = value.replace(PID.encode(), b"fedcba9876543210fedc")
    for _ in range(3):  # a forger's tries are refused each time and fill nothing
        assert book.verify(forged, "nas-a") is None
    assert book.verify(None, "nas-a") is None and book.verify(b"", "nas-a") is None
    assert len(book) == 1
    # a verifier of another key believes none of this one's Classes
    assert ClassVerifier(class_key(b"another-person-key-xxxxx")).verify(value, "nas-a") is None


def test_class_verifier_is_bounded_oldest_first() -> None:
    book = ClassVerifier(KEY, limit=3)
    values = [sign_class(KEY, PID, "m", "nas-a", f"{i:016x}") for i in range(5)]
    for v in values:
        assert book.verify(v, "nas-a") is not None
    assert len(book) == 3
    for v in values:  # the evicted ones are verified again, the same answer
        assert book.verify(v, "nas-a") == verify_class(KEY, v, "nas-a")
    with pytest.raises(ValueError):
        ClassVerifier(KEY, limit=0)


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from(["nas-a", "nas-b"]), st.integers(-1, 80)),
        max_size=40,
    )
)
def test_class_verifier_answers_as_verify_class(steps: list[tuple[int, str, int]]) -> None:
    """Any sequence of genuine, foreign-client and bit-flipped Classes: the verifier's
    answer is verify_class's every time, whatever it remembers."""
    book = ClassVerifier(KEY, limit=3)
    issued = [sign_class(KEY, PID, "c", "nas-a", f"{i:016x}") for i in range(6)]
    for which, client, flip in steps:
        value = bytearray(issued[which])
        if 0 <= flip < len(value):
            value[flip] ^= 0x01
        assert book.verify(bytes(value), client) == verify_class(KEY, bytes(value), client)
