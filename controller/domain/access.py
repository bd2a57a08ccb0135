"""Pure Access-Request policy: person state + quota policy + time -> accept or reject.

No I/O: the RADIUS service gathers the state in one Redis round trip and calls
``decide_access``; tests drive every branch with an explicit ``now``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from controller.config import QuotaPolicy
from controller.domain.messages import reply_message
from controller.domain.quota import reset_time, session_timeout
from controller.domain.state import LOGIN_REUSE_GRACE, LoginUse, Origin, PersonState
from radius.record import record


class Outcome(StrEnum):
    ACCEPT = "accept"
    BLOCKED = "blocked"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    CREDENTIAL_USED = "credential_used"
    WRONG_CLIENT = "wrong_client"
    WRONG_DEVICE = "wrong_device"
    MISSING_DEVICE = "missing_device"
    BAD_PASSWORD = "bad_password"
    EXHAUSTED = "exhausted"
    DEVICE_LIMIT = "device_limit"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_REQUEST = "bad_request"


@record
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


def retry_of(used: LoginUse, mac: str, origin: Origin, now: int) -> bool:
    """Is this Access-Request for a consumed credential a NAS retry of the same login?
    Only from the same client, device MAC and NAS session within ``LOGIN_REUSE_GRACE``,
    and either a fresh request (new Request Authenticator: the NAS lost our Accept) or the
    same bytes from the same source address and port (a retransmission of a request we
    could not answer, RFC 5080 §2.2.1). The same bytes from another source port are a
    replay: duplicate detection is per source (RFC 5080 §2.2.2) and a fresh request never
    repeats the authenticator (RFC 2865 §3). ``commit_login.lua`` applies the same rule
    atomically."""
    fresh = used.origin.authenticator != origin.authenticator
    return (
        bool(mac)
        and used.mac == mac
        and used.origin.client == origin.client
        and used.origin.session == origin.session
        and (fresh or used.origin.source == origin.source)
        and now - used.at <= LOGIN_REUSE_GRACE
    )


def decide_access(
    state: PersonState,
    *,
    credential: bool,
    password_ok: bool,
    mac: str,
    policy: QuotaPolicy,
    now: int,
    origin: Origin | None = None,
) -> AccessDecision:
    """Decide one Access-Request (credential login when ``credential``, else MAC login).

    A credential works only at the client it was issued for (``origin``: where this
    request comes from; None counts as nowhere), and when bound to a device only with that
    device's Calling-Station-Id. Order matters: a blocked person learns they are blocked
    before anything else; a bad credential is reported before quota so a guesser learns
    nothing about the person.
    Less than ``policy.min_grant_seconds`` left (and not running into tomorrow's
    allowance) is "used up": an Accept with Session-Timeout 1 and a Disconnect the next
    moment would help no one, and the day counts as used up in the reports.
    """
    if credential:
        if not state.password:
            return reject(Outcome.UNKNOWN_CREDENTIAL)
        if not password_ok:
            return reject(Outcome.BAD_PASSWORD)
        if origin is None or not state.client or state.client != origin.client:
            return reject(Outcome.WRONG_CLIENT)
        if state.bound_mac and not mac:
            return reject(Outcome.MISSING_DEVICE)
        if state.bound_mac and state.bound_mac != mac:
            return reject(Outcome.WRONG_DEVICE)
        if state.used is not None and not retry_of(state.used, mac, origin, now):
            return reject(Outcome.CREDENTIAL_USED)
    if state.block:
        return refusal(Outcome.BLOCKED, policy, now, state.block)
    timeout = session_timeout(state.used_today, now, policy.timezone, policy.daily_seconds)
    if timeout < max(1, policy.min_grant_seconds):  # the last seconds are not a session
        return refusal(Outcome.EXHAUSTED, policy, now)
    if state.other_devices >= policy.max_devices:
        return refusal(Outcome.DEVICE_LIMIT, policy, now)
    return AccessDecision(Outcome.ACCEPT, timeout)


def mac_decision(
    outcome: str, session_timeout: int, block: str, policy: QuotaPolicy, now: int
) -> AccessDecision:
    """The decision ``storage/lua/mac_login.lua`` took on a MAC login inside Redis, with
    its Reply-Message: the same ``AccessDecision`` ``decide_access`` makes from the same
    state (``tests/test_mac_login_lua.py`` holds the two against each other)."""
    decided = Outcome(outcome)
    if decided is Outcome.ACCEPT:
        return AccessDecision(Outcome.ACCEPT, session_timeout)
    return refusal(decided, policy, now, block)


def refusal(outcome: Outcome, policy: QuotaPolicy, now: int, block: str = "") -> AccessDecision:
    """The Access-Reject of ``outcome`` with what its Reply-Message names (until when a
    block lasts, when the allowance resets, the device limit): one place for both
    deciders, ``decide_access`` and ``mac_decision``."""
    if outcome is Outcome.BLOCKED:
        return reject(outcome, until=blocked_until(block, policy))
    if outcome is Outcome.EXHAUSTED:
        return reject(outcome, reset=reset_time(now, policy.timezone))
    if outcome is Outcome.DEVICE_LIMIT:
        return reject(outcome, limit=policy.max_devices)
    return reject(outcome)
