"""Enforcement planning, pure: when a person's allowance runs out and what to do now.

``projected_exhaustion`` says when the allowance runs out if every open session keeps
running from its last report; ``plan_person`` turns a person's snapshot into "disconnect
these sessions now" and "look again at"; it also cuts the newest devices of a person
with more than ``quota.max_devices`` online. No I/O; time is an argument. The asyncio
side that acts on a plan is ``controller.services.enforcer`` (docs/enforcement.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.config import Client
from controller.domain.state import PersonSnapshot
from radius.dae import SessionIdentity


def projected_exhaustion(
    lasts: Sequence[int], used: int, daily: int, next_midnight: int
) -> int | None:
    """When the day's allowance runs out if every session keeps running from its last
    report (each report counted usage up to its own time): the smallest whole second ``t``
    with ``used + sum(t - last_i) >= daily``, i.e. the time left divided among the sessions.

    At ``next_midnight`` a fresh allowance starts; a session running into it drains that
    one (DESIGN: quota semantics), so a projection past midnight becomes midnight plus the
    new day's allowance divided among the sessions. None: no session runs.
    """
    n = len(lasts)
    if n == 0:
        return None
    due = -((used - daily - sum(lasts)) // n)  # ceil((daily - used + sum) / n), exact ints
    if due >= next_midnight:
        return next_midnight + -(-daily // n)
    return due


def _devices(snap: PersonSnapshot, stale_before: int) -> dict[str, list[str]]:
    """Running sessions by device: their MAC, or the session itself when the NAS sent
    none. Running as in ``PersonSnapshot.live``: accounting since ``stale_before``, the
    session's stale slack included (a NAS reporting less often than asked still has the
    device online; storage/lua/lib/devices.lua counts it so at Access-Accept)."""
    live = snap.live(stale_before)
    devices: dict[str, list[str]] = {}
    for sid, (mac, _) in sorted(snap.open.items()):
        if sid in live:
            devices.setdefault(mac or f"?{sid}", []).append(sid)
    return devices


def other_devices(
    snap: PersonSnapshot,
    holds: Mapping[str, int],
    *,
    mac: str,
    stale_before: int,
    now: int | None,
) -> int:
    """The person's devices other than ``mac``, as an Access-Request counts them against
    ``quota.max_devices``: the running sessions' devices (``_devices``), plus the slots
    that Access-Accepts hold (``holds``: MAC, or ``?<authenticator>`` without one, ->
    epoch the hold ends) not ended at ``now`` (None: every hold counts) for a device
    that is neither ``mac`` nor one of those sessions'. The rule the store applies
    atomically is ``storage/lua/lib/devices.lua`` (auth_state.lua, commit_login.lua);
    this is its model, tested against it on random inputs."""
    devices = _devices(snap, stale_before)
    online = {device for device in devices if not device.startswith("?")}
    sessions = sum(1 for device in devices if device != mac)
    held = sum(
        1
        for device, ends in holds.items()
        if (now is None or ends > now) and device not in online and device != mac
    )
    return sessions + held


def over_device_limit(snap: PersonSnapshot, max_devices: int, stale_before: int) -> bool:
    return 0 < max_devices < len(_devices(snap, stale_before))


def excess_devices(
    snap: PersonSnapshot, *, max_devices: int, stale_before: int, starts: Mapping[str, int]
) -> tuple[str, ...]:
    """Sessions of the devices beyond ``max_devices``, newest device first (a device's
    start is its earliest session's; unknown starts count as newest). The Access-Accept
    holds a slot atomically (commit_login.lua), so this catches only what got past it:
    a hold that expired before the Start, a stale session reporting again, a NAS opening
    several sessions on one login."""
    devices = _devices(snap, stale_before)
    if not 0 < max_devices < len(devices):
        return ()

    def start(device: str) -> float:
        return min(starts.get(sid, math.inf) for sid in devices[device])

    newest_first = sorted(devices, key=lambda d: (start(d), d), reverse=True)
    beyond = newest_first[: len(devices) - max_devices]
    return tuple(sid for device in beyond for sid in devices[device])


@dataclass(frozen=True, slots=True)
class Plan:
    disconnect: tuple[str, ...] = ()  # sessions to send a Disconnect-Request now
    wake: int | None = None  # when to look at the person again (None: nothing open)
    reason: str = "quota"  # quota | blocked | admin | device_limit

    def index_at(self, now: int) -> int | None:
        """The person's due-index score: now when something is to be done, else ``wake``."""
        return now if self.disconnect else self.wake


def plan_person(
    snap: PersonSnapshot,
    *,
    now: int,
    daily: int,
    next_midnight: int,
    stale_before: int,
    retry_after: int,
    force: bool = False,
    max_devices: int = 0,
    starts: Mapping[str, int] | None = None,
) -> Plan:
    """What to do about one person at ``now`` (``snap.used`` is the usage of now's day).

    Sessions with accounting since ``stale_before`` (or later, for a NAS that reports
    less often than asked: ``snap.slack``) are running and drain the allowance; older
    ones are left to the stale sweep (counted to their last report) but are still
    disconnected when the person's time is gone. A session whose NAS acknowledged a
    Disconnect-Request is asked again only ``retry_after`` seconds after the ACK (its Stop
    is on the way). ``force`` (admin) disconnects every open session at once; a block does
    so too, except for sessions already closing. With time left, the devices beyond
    ``max_devices`` (0: no limit) are disconnected, newest first by ``starts`` (session
    start epochs, see ``excess_devices``), the others keep running.
    """
    if not snap.open:
        return Plan(wake=None)
    reason = "admin" if force else ("blocked" if snap.block else "quota")
    due = now
    if not (force or snap.block):
        running = list(snap.live(stale_before).values())
        projected = projected_exhaustion(running, snap.used, daily, next_midnight)
        if projected is None:
            return Plan(wake=None, reason=reason)  # only stale sessions: the sweep's
        due = projected
    if due > now:
        excess = excess_devices(
            snap, max_devices=max_devices, stale_before=stale_before, starts=starts or {}
        )
        if not excess:
            return Plan(wake=due, reason=reason)
        return _disconnecting(snap, excess, now, retry_after, False, "device_limit", due)
    return _disconnecting(snap, sorted(snap.open), now, retry_after, force, reason, None)


def _disconnecting(
    snap: PersonSnapshot,
    sids: Sequence[str],
    now: int,
    retry_after: int,
    force: bool,
    reason: str,
    due: int | None,
) -> Plan:
    """Disconnect ``sids`` now, except those acknowledged less than ``retry_after`` ago;
    look again at the first retry time (or ``due``, the quota projection, if earlier)."""
    act: list[str] = []
    waits: list[int] = [] if due is None else [due]
    for sid in sids:
        acked = snap.closing.get(sid)
        if force or acked is None or now >= acked + retry_after:
            act.append(sid)
        else:
            waits.append(acked + retry_after)
    if act:
        waits.append(now + retry_after)
    return Plan(tuple(act), min(waits) if waits else None, reason)


def dae_address(client: Client, record: Mapping[str, str]) -> str | None:
    """Where to send a session's RFC 5176 requests: the client's address; for a client
    network, the session's NAS-IP-Address when it lies in that network, else the address
    its accounting came from."""
    net = client.network
    if net.num_addresses == 1:
        return str(net.network_address)
    candidates = [record.get(k, "") for k in ("nas_ip", "nas_ipv6", "nas_src")]
    for candidate in candidates:
        with contextlib.suppress(ValueError):
            if candidate and ipaddress.ip_address(candidate) in net:
                return candidate
    return next((c for c in candidates if c), None)


def session_identity(record: Mapping[str, str]) -> SessionIdentity:
    """The session as its NAS described it (the attributes are echoed as they were sent)."""
    return SessionIdentity(
        acct_session_id=record.get("acct_session_id", ""),
        user_name=record.get("user", ""),
        calling_station_id=record.get("calling") or record.get("mac", ""),
        nas_ip_address=record.get("nas_ip", ""),
        nas_identifier=record.get("nas_id", ""),
        framed_ip_address=record.get("ip", ""),
        nas_ipv6_address=record.get("nas_ipv6", ""),
    )
