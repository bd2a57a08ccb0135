"""MAC address normalisation: NASes write MACs in every notation; we keep one."""

from __future__ import annotations

import re
from functools import lru_cache

_HEX = re.compile(r"[0-9A-Fa-f]")
_SEPARATORS = re.compile(r"[-:.\s]")


@lru_cache(maxsize=65536)  # the same devices come back every interim: parse once
def normalize_mac(value: str) -> str | None:
    """Return ``AA-BB-CC-DD-EE-FF`` (RFC 3580 §3.21 / CoovaChilli style) or None.

    Accepts ``aa:bb:cc:dd:ee:ff``, ``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` (Cisco)
    and ``aabbccddeeff``.
    """
    digits = _SEPARATORS.sub("", value.strip())
    if len(digits) != 12 or len(_HEX.findall(digits)) != 12:
        return None
    d = digits.upper()
    return "-".join(d[i : i + 2] for i in range(0, 12, 2))


def called_station_mac(called_station_id: str) -> str | None:
    """The AP MAC of a Called-Station-Id (``AA-BB-CC-DD-EE-FF:SSID``, RFC 3580 §3.20)."""
    value = called_station_id.strip()
    return normalize_mac(value[:17]) or normalize_mac(value) or normalize_mac(value[:12])
