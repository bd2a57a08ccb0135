"""Admin actions on a person: sessions and today's usage, disconnect now, block and
unblock, revoke remembered devices (the portal's ``cw_dev`` cookies).

One set of functions serves the HTTP API (bearer token with role ``admin``, under
``/api/v1/admin/``: ``controller.web.admin``) and the ``citywifi admin`` command
(``controller.cli.admin``). A person is named by mobile number
(normalised to E.164, then the keyed person id) or by person id; answers carry the person
id only, and logs never the number.

A block is ``cw:{pid}:block`` = ``until|reason`` with a TTL to ``until``: the RADIUS side
rejects the person at auth with a Reply-Message naming the end of the block, and the
enforcer disconnects their open sessions (here at once, and again by the enforcer loop
if a NAS did not answer).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from controller.config import QuotaPolicy
from controller.domain import quota
from controller.domain.enforcement import projected_exhaustion
from controller.domain.identity import PERSON_ID_HEX, person_id
from controller.domain.periods import PeriodError, parse_instant
from controller.domain.phone import PhoneError, normalize_phone
from controller.services.enforcer import Enforcer, EnforcerBusy, SessionOutcome
from controller.services.errors import RequestError
from controller.storage import keys
from controller.storage.store import Store

log = structlog.get_logger("citywifi.admin")

MAX_BLOCK_DAYS = 3660
MAX_REASON = 200
_PID = re.compile(rf"[0-9a-f]{{{PERSON_ID_HEX}}}")


class AdminError(RequestError):
    """A request the admin must fix: HTTP status and stable error code for the edge."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, status, message)


# ------------------------------------------------------------------------- pure parts


def resolve_person(*, phone: str | None, person: str | None, person_key: bytes) -> str:
    """The person id named by exactly one of a mobile number or a person id."""
    if bool(phone) == bool(person):
        raise AdminError(400, "bad_request", "give exactly one of 'phone' or 'person'")
    if person:
        pid = person.strip().lower()
        if not _PID.fullmatch(pid):
            raise AdminError(400, "bad_person", f"a person id is {PERSON_ID_HEX} hex digits")
        return pid
    try:
        e164 = normalize_phone(str(phone))
    except PhoneError as exc:
        raise AdminError(400, "bad_phone", str(exc)) from None
    return person_id(e164, person_key)


def block_until(now: int, tz: ZoneInfo, *, until: str | None, days: int | None) -> int:
    """When a block ends: ``days`` = N local days counting today (ends at a local
    midnight), ``until`` = an ISO date (its local 00:00) or date-time (local unless it
    has an offset); neither: the end of today."""
    if until is not None and days is not None:
        raise AdminError(400, "bad_request", "give 'until' or 'days', not both")
    today = quota.local_day(now, tz)
    if until is not None:
        try:
            end = parse_instant(until, tz, name="until", code="bad_until")
        except PeriodError as exc:  # also an empty 'until': it is optional, not missing
            raise AdminError(400, "bad_until", exc.message) from None
    else:
        n = 1 if days is None else days
        if not 1 <= n <= MAX_BLOCK_DAYS:
            raise AdminError(400, "bad_days", f"'days' is between 1 and {MAX_BLOCK_DAYS}")
        end = quota.day_start(today + timedelta(days=n), tz)
    if end <= now:
        raise AdminError(400, "bad_until", "the block would end in the past")
    if end - now > MAX_BLOCK_DAYS * 86400:
        raise AdminError(400, "bad_until", f"a block lasts at most {MAX_BLOCK_DAYS} days")
    return end


def _iso(epoch: int | None, tz: ZoneInfo) -> str | None:
    return None if not epoch else datetime.fromtimestamp(epoch, tz).isoformat()


# ------------------------------------------------------------------------- actions


async def person_status(store: Store, policy: QuotaPolicy, pid: str, now: int) -> dict[str, Any]:
    """Today's usage, the block and every open session of a person."""
    tz = policy.timezone
    day = quota.local_day(now, tz)
    snap = await store.person_snapshot(pid, quota.day_key(day))
    records = await store.open_sessions(pid)
    until, _, reason = snap.block.partition("|")
    sessions = []
    for sid in sorted(snap.open):
        r = records.get(sid, {})
        sessions.append(
            {
                "session": sid,
                "client": r.get("client", keys.client_of(sid)),
                "acct_session_id": r.get("acct_session_id", ""),
                "mac": r.get("mac", ""),
                "ip": r.get("ip", ""),
                "nas_ip": r.get("nas_ip", ""),
                "nas_id": r.get("nas_id", ""),
                "venue": r.get("venue", ""),
                "start": _iso(int(r.get("start") or 0), tz),
                "last_report": _iso(snap.open[sid][1], tz),
                "session_time": int(r.get("seen") or 0),
                "closing": _iso(snap.closing.get(sid), tz),
            }
        )
    lasts = list(snap.live(now - math.ceil(policy.stale_grace)).values())
    midnight = quota.next_midnight(now, tz)
    projected = projected_exhaustion(lasts, snap.used, policy.daily_seconds, midnight)
    return {
        "person": pid,
        "day": day.isoformat(),
        "used_seconds": snap.used,
        "daily_seconds": policy.daily_seconds,
        "remaining_seconds": quota.remaining_today(snap.used, policy.daily_seconds),
        "projected_exhaustion": _iso(projected, tz),
        "blocked": ({"until": _iso(int(until or 0), tz), "reason": reason} if snap.block else None),
        "sessions": sessions,
    }


def _outcomes(outcomes: list[SessionOutcome]) -> list[dict[str, Any]]:
    return [
        {"session": o.sid, "client": o.client, "result": o.result, "error_cause": o.error_cause}
        for o in outcomes
    ]


async def disconnect(enforcer: Enforcer, pid: str, *, reason: str = "admin") -> dict[str, Any]:
    """RFC 5176 Disconnect-Request to every open session of the person, now."""
    try:
        outcomes = await enforcer.disconnect_now(pid, reason=reason)
    except EnforcerBusy:
        raise AdminError(409, "busy", "the enforcer is acting on this person; retry") from None
    log.info("admin.disconnect", person=pid, sessions=len(outcomes), reason=reason)
    return {"person": pid, "disconnected": _outcomes(outcomes)}


async def block(
    store: Store,
    enforcer: Enforcer,
    policy: QuotaPolicy,
    pid: str,
    *,
    now: int,
    until: int,
    reason: str,
) -> dict[str, Any]:
    """Block until ``until`` (rejected at auth) and disconnect the person's sessions."""
    text = " ".join(reason.split())[:MAX_REASON]
    await store.set_block(pid, f"{until}|{text}", until - now)
    await store.index_due({pid: now})  # the enforcer loop follows up if a NAS is silent
    log.info("admin.block", person=pid, until=until)
    result = await disconnect(enforcer, pid, reason="blocked")
    return {
        "person": pid,
        "blocked": {"until": _iso(until, policy.timezone), "reason": text},
        "disconnected": result["disconnected"],
    }


async def unblock(store: Store, pid: str) -> dict[str, Any]:
    removed = await store.clear_block(pid)
    log.info("admin.unblock", person=pid, was_blocked=removed)
    return {"person": pid, "was_blocked": removed}


async def revoke_devices(store: Store, pid: str) -> dict[str, Any]:
    """Revoke every remembered-device cookie of the person (a copied ``cw_dev`` stops
    working at once); their next portal login needs an SMS code again."""
    revoked = await store.device_tokens_revoke(pid)
    log.info("admin.revoke_devices", person=pid, revoked=revoked)
    return {"person": pid, "revoked": revoked}
