from datetime import datetime
from zoneinfo import ZoneInfo

from controller.access import Outcome, decide_access
from controller.config import QuotaPolicy
from controller.store import PersonState

SH = ZoneInfo("Asia/Shanghai")
POLICY = QuotaPolicy(daily_seconds=7200, timezone=SH, max_devices=2)
NOON = int(datetime(2026, 11, 25, 12, tzinfo=SH).timestamp())
MAC = "AA-BB-CC-DD-EE-FF"


def state(**kw: object) -> PersonState:
    base: dict[str, object] = dict(
        password="pw",
        bound_mac="",
        used_at=None,
        used_mac="",
        used_today=0,
        other_devices=0,
        block="",
    )
    base.update(kw)
    return PersonState(**base)  # type: ignore[arg-type]


def decide(s: PersonState, credential: bool = True, ok: bool = True, now: int = NOON):  # type: ignore[no-untyped-def]
    return decide_access(s, credential=credential, password_ok=ok, mac=MAC, policy=POLICY, now=now)


def test_accept_with_time_left() -> None:
    d = decide(state(used_today=1000))
    assert d.accept and d.session_timeout == 6200


def test_rejects_in_order() -> None:
    assert decide(state(password="")).outcome is Outcome.UNKNOWN_CREDENTIAL
    assert decide(state(), ok=False).outcome is Outcome.BAD_PASSWORD
    assert decide(state(bound_mac="11-22-33-44-55-66")).outcome is Outcome.WRONG_DEVICE
    assert decide(state(used_at=NOON - 600, used_mac=MAC)).outcome is Outcome.CREDENTIAL_USED
    assert decide(state(used_at=NOON - 10, used_mac=MAC)).accept  # NAS retry, same device
    assert decide(state(used_at=NOON - 10, used_mac="x")).outcome is Outcome.CREDENTIAL_USED
    assert decide(state(block="0|abuse")).outcome is Outcome.BLOCKED
    assert decide(state(other_devices=2)).outcome is Outcome.DEVICE_LIMIT
    assert decide(state(other_devices=1)).accept


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
