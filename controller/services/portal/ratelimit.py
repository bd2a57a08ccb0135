"""Rate limits of the portal; over a limit -> 429 with ``Retry-After``.

- SMS codes (``code_dims``): per source (an IPv4 address and its /24; an IPv6 source by
  its /64, /48 and /32), per NAS, per device, per phone on this device (resend cooldown,
  hourly and daily caps), per phone from this network, per phone over all devices (a
  higher ceiling) and for the whole city per hour (a ceiling that alarms).
- Code attempts (``verify_dims``): per source, per NAS, per phone on this device and per
  phone over all devices; the code itself allows 5 (``otp.py``).
- Portal page views per source (``page``) and credentials minted per person (``mint``).

"Device" is what a stranger cannot pick for someone else (``Requester.device`` in
``service.py``): so a stranger's requests and guesses spend their own device's share of
a phone's budget, never the owner's; only the per-phone ceiling is shared.

Each dimension value has one sliding-window log in Redis (``controller/lua/portal_rate.lua``,
time passed in ARGV as the ``limits`` library does); an event counts while
``now - t < window``. ``wait_ms`` is the same arithmetic in Python: the reference the Lua
script is tested against. All dimensions are checked before the event is recorded in any,
so a request refused for one (an IP flooding) never starts another's cooldown (a phone):
on one Redis in one script call over every dimension (``Store.rate_admit``), on a Cluster
by checking every dimension first, then recording in each.
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from controller.config import PortalSettings
from controller.services.portal.errors import PortalError
from controller.storage.store import Store


@dataclass(frozen=True, slots=True)
class Rule:
    limit: int  # events admitted ...
    window: int  # ... per this many seconds


HOUR, DAY = 3600, 86400


def rules_for(settings: PortalSettings, max_devices: int = 2) -> dict[str, tuple[Rule, ...]]:
    """The documented limits (docs/portal.md), from ``[portal]`` (and the device limit)."""
    s = settings
    phone_share = (Rule(s.otp_per_phone_hour, HOUR), Rule(s.otp_per_phone_day, DAY))
    return {
        # SMS codes
        "ip": (Rule(s.otp_per_ip_hour, HOUR),),
        "ip24": (Rule(s.otp_per_ip24_hour, HOUR),),
        "ip48": (Rule(s.otp_per_ip48_hour, HOUR),),
        "ip32": (Rule(s.otp_per_ip32_hour, HOUR),),
        "nas": (Rule(s.otp_per_nas_hour, HOUR),),
        "device": (Rule(s.otp_per_mac_hour, HOUR), Rule(s.otp_per_mac_day, DAY)),
        "phone_device": (Rule(1, s.otp_resend_seconds), *phone_share),
        "phone_network": phone_share,
        "phone": (Rule(s.otp_per_phone_ceiling_day, DAY),),
        "global": (Rule(s.otp_global_hour, HOUR),),
        # code attempts
        "verify_ip": (Rule(s.verify_per_ip_hour, HOUR),),
        "verify_nas": (Rule(s.verify_per_nas_hour, HOUR),),
        "verify_device": (Rule(s.verify_per_device_day, DAY),),
        "verify_phone": (Rule(s.verify_per_phone_day, DAY),),
        # page views, credentials
        "page": (Rule(s.page_per_ip_minute, 60),),
        "mint": (Rule(s.logins_per_device_hour * max_devices, HOUR),),
    }


def code_dims(address: str, nas: str, device: str, pid: str) -> list[tuple[str, str]]:
    """The dimensions one SMS-code request counts in (``device`` and ``pid`` are opaque)."""
    return [
        *source_buckets(address),
        ("nas", nas),
        ("device", device),
        ("phone_device", f"{pid}:{device}"),
        ("phone_network", f"{pid}:{network_bucket(address)}"),
        ("phone", pid),
        ("global", "all"),
    ]


def verify_dims(address: str, nas: str, device: str, pid: str) -> list[tuple[str, str]]:
    """The dimensions one code attempt counts in."""
    return [
        ("verify_ip", ip_bucket(address)),
        ("verify_nas", nas),
        ("verify_device", f"{pid}:{device}"),
        ("verify_phone", pid),
    ]


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


# The address arithmetic of every portal request (each parses the address several times);
# memoised per address, a bounded cache of pure functions of their argument.
@functools.lru_cache(maxsize=4096)
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


@functools.lru_cache(maxsize=4096)
def source_buckets(address: str) -> tuple[tuple[str, str], ...]:
    """Every source dimension of an address: an IPv4 address and its /24; an IPv6 /64,
    /48 and /32 (RFC 6177: a site gets a /48, an ISP a /32 -- one holder of a /48 can
    send from 65 536 /64s, so the wider prefixes are what bounds them)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (("ip", address),)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return (("ip", str(ip)), ("ip24", str(ipaddress.IPv4Network((ip, 24), strict=False))))
    wider = (str(ipaddress.IPv6Network((ip, bits), strict=False)) for bits in (48, 32))
    return (("ip", ip_bucket(address)), *zip(("ip48", "ip32"), wider, strict=True))


@functools.lru_cache(maxsize=4096)
def network_bucket(address: str) -> str:
    """The network an address is part of, for a phone's per-network share: IPv4 /24,
    IPv6 /48 (one stranger rarely holds more than one of either)."""
    buckets = dict(source_buckets(address))
    return buckets.get("ip24") or buckets.get("ip48") or buckets["ip"]


def retry_after_seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


class RateLimiter:
    def __init__(self, store: Store, settings: PortalSettings, max_devices: int = 2) -> None:
        self.store = store
        self.rules = rules_for(settings, max_devices)
        # (limit, window ms) per dimension, as the store passes them to Redis
        self.windows = {
            dimension: [(r.limit, r.window * 1000) for r in rules]
            for dimension, rules in self.rules.items()
        }

    async def hit(self, dims: Sequence[tuple[str, str]], now_ms: int) -> None:
        """Admit one event or raise ``rate_limited`` (429) naming the wait and the limit.

        ``dims`` are (dimension, value) pairs; empty values are skipped. The event is
        recorded in every dimension only if all allow it (``Store.rate_admit``)."""
        member = f"{now_ms}:{secrets.token_hex(6)}"
        rules = self.windows
        checks = [(dimension, ident, rules[dimension]) for dimension, ident in dims if ident]
        waits = await self.store.rate_admit(checks, now_ms, member)
        if any(waits):
            wait = max(waits)
            dimension = checks[waits.index(wait)][0]
            seconds = retry_after_seconds(wait)
            raise PortalError(
                "rate_limited", 429, retry_after=seconds, seconds=seconds, limit=dimension
            )
