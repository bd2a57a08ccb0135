"""Pure Access-Request policy: person state + quota policy + time -> accept or reject.

No I/O: the RADIUS service gathers the state in one Redis round trip and calls
``decide_access``; tests drive every branch with an explicit ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from controller.config import QuotaPolicy
from controller.messages import reply_message
from controller.quota import reset_time, session_timeout
from controller.store import LOGIN_REUSE_GRACE, PersonState


class Outcome(StrEnum):
    ACCEPT = "accept"
    BLOCKED = "blocked"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CREDENTIAL_USED = "credential_used"
    WRONG_DEVICE = "wrong_device"
    BAD_PASSWORD = "bad_password"
    EXHAUSTED = "exhausted"
    DEVICE_LIMIT = "device_limit"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_REQUEST = "bad_request"


@dataclass(frozen=True, slots=True)
class AccessDecision:
    outcome: Outcome
    session_timeout: int = 0
    message: str = ""

    @property
    def accept(self) -> bool:
        return self.outcome is Outcome.ACCEPT


def reject(outcome: Outcome, **values: object) -> AccessDecision:
    return AccessDecision(outcome, 0, reply_message(outcome.value, **values))


def blocked_until(block: str, policy: QuotaPolicy) -> datetime | None:
    """A block is stored as ``"<until epoch>|<reason>"``; 0 means until lifted."""
    until = int(block.split("|", 1)[0] or 0)
    return datetime.fromtimestamp(until, policy.timezone) if until > 0 else None


def decide_access(
    state: PersonState,
    *,
    credential: bool,
    password_ok: bool,
    mac: str,
    policy: QuotaPolicy,
    now: int,
) -> AccessDecision:
    """Decide one Access-Request (credential login when ``credential``, else MAC login).

    Order matters: a blocked person learns they are blocked before anything else; a bad
    credential is reported before quota so a guesser learns nothing about the person.
    Less than ``policy.min_grant_seconds`` left (and not running into tomorrow's
    allowance) is "used up": an Accept with Session-Timeout 1 and a Disconnect the next
    moment would help no one, and the day counts as used up in the reports.
    """
    if credential:
        if not state.password:
            return reject(Outcome.UNKNOWN_CREDENTIAL)
        if not password_ok:
            return reject(Outcome.BAD_PASSWORD)
        if state.bound_mac and mac and state.bound_mac != mac:
            return reject(Outcome.WRONG_DEVICE)
        if state.used_at is not None and (
            state.used_mac != mac or now - state.used_at > LOGIN_REUSE_GRACE
        ):
            return reject(Outcome.CREDENTIAL_USED)
    if state.block:
        return reject(Outcome.BLOCKED, until=blocked_until(state.block, policy))
    timeout = session_timeout(state.used_today, now, policy.timezone, policy.daily_seconds)
    if timeout < max(1, policy.min_grant_seconds):  # the last seconds are not a session
        return reject(Outcome.EXHAUSTED, reset=reset_time(now, policy.timezone))
    if state.other_devices >= policy.max_devices:
        return reject(Outcome.DEVICE_LIMIT, limit=policy.max_devices)
    return AccessDecision(Outcome.ACCEPT, timeout)
