"""Rate limits on sending SMS codes: per phone (resend cooldown, hourly and daily caps),
per device MAC, per NAS and per source IP (an IPv6 source by its /64); over a limit ->
429 with ``Retry-After``.

Each dimension value has one sliding-window log in Redis (``controller/lua/rate_hit.lua``,
time passed in ARGV as the ``limits`` library does); an event counts while
``now - t < window``. ``wait_ms`` is the same arithmetic in Python: the reference the Lua
script is tested against. All dimensions are checked before the event is recorded in any,
so a request refused for one (an IP flooding) never starts another's cooldown (a phone).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from controller.config import PortalSettings
from controller.portal.errors import PortalError
from controller.store import Store


@dataclass(frozen=True, slots=True)
class Rule:
    limit: int  # events admitted ...
    window: int  # ... per this many seconds


def rules_for(settings: PortalSettings) -> dict[str, tuple[Rule, ...]]:
    """The documented limits (docs/portal.md), from ``[portal]``."""
    s = settings
    return {
        "ip": (Rule(s.otp_per_ip_hour, 3600),),
        "nas": (Rule(s.otp_per_nas_hour, 3600),),
        "mac": (Rule(s.otp_per_mac_hour, 3600), Rule(s.otp_per_mac_day, 86400)),
        "phone": (
            Rule(1, s.otp_resend_seconds),
            Rule(s.otp_per_phone_hour, 3600),
            Rule(s.otp_per_phone_day, 86400),
        ),
    }


def wait_ms(events: Sequence[int], rules: Sequence[Rule], now_ms: int) -> int:
    """0 if one more event at ``now_ms`` is allowed by every rule, else ms until it is.

    ``events`` are the admitted event times (ms). For a full window the event has to
    wait until the (count - limit + 1)-th oldest event of that window leaves it.
    """
    wait = 0
    for rule in rules:
        window = rule.window * 1000
        inside = sorted(t for t in events if now_ms - t < window)
        if len(inside) >= rule.limit:
            leaves = inside[len(inside) - rule.limit] + window - now_ms
            wait = max(wait, leaves)
    return wait


def ip_bucket(address: str) -> str:
    """The source-address key of the per-IP limit: an IPv4 address as it is (also when
    written IPv4-mapped, ``::ffff:a.b.c.d``), an IPv6 address by its /64. One device or
    subscriber line gets a whole /64 (RFC 6177) and can pick a fresh address for every
    request, so counting single IPv6 addresses would not limit anything."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def retry_after_seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


class RateLimiter:
    def __init__(self, store: Store, settings: PortalSettings) -> None:
        self.store = store
        self.rules = rules_for(settings)

    async def hit(self, dims: Sequence[tuple[str, str]], now_ms: int) -> None:
        """Admit one SMS-code request or raise ``rate_limited`` (429) naming the wait.

        ``dims`` are (dimension, value) pairs; empty values are skipped. Every dimension
        is checked first and the event recorded only if all allow it (two round trips).
        """
        member = f"{now_ms}:{secrets.token_hex(6)}"
        checks = [
            (dimension, ident, [(r.limit, r.window * 1000) for r in self.rules[dimension]])
            for dimension, ident in dims
            if ident
        ]
        for record in (False, True):
            waits = await self.store.rate_hit(checks, now_ms, member, record=record)
            if any(waits):
                wait = max(waits)
                dimension = checks[waits.index(wait)][0]
                seconds = retry_after_seconds(wait)
                raise PortalError(
                    "rate_limited", 429, retry_after=seconds, seconds=seconds, limit=dimension
                )
