"""MAC address notations: NASes write MACs in every notation; we keep one.

A MAC is recognised in each notation access points and controllers actually send
(docs/radius.md, "Vendor notations accepted"), upper or lower case:

- six groups of two hex digits, one separator throughout: ``00-11-22-33-44-55`` (RFC 3580
  §3.20/3.21, CoovaChilli, Ruckus, Ubiquiti, Cisco WLC), ``00:11:22:33:44:55`` (MikroTik,
  Aruba with ``delimiter colon``), ``00.11.22.33.44.55`` (Huawei ``dot-split mode2``);
- three groups of four: ``0011-2233-4455`` (Huawei and H3C default), ``0011.2233.4455``
  (Cisco IOS, FlexConnect), ``0011:2233:4455`` (Huawei ``colon-split mode1``);
- two groups of six: ``001122-334455`` (HP/Aruba switches);
- twelve bare digits: ``001122334455`` (Aruba ``delimiter none``, Huawei ``unformatted``).

A Called-Station-Id may carry the SSID after the MAC (RFC 3580 §3.20: ``MAC:SSID``); any
separator that is not a letter or digit is taken (``:``, ``;``, ``,``, ``-``, ``_``, space…).
Mixed separators, wrong group sizes and a MAC running on into more letters or digits are
not MACs.
"""

from __future__ import annotations

import re
from functools import lru_cache

_H2, _H4, _H6 = "[0-9A-Fa-f]{2}", "[0-9A-Fa-f]{4}", "[0-9A-Fa-f]{6}"
_MAC = re.compile(
    rf"(?:{_H2}(?P<s6>[-:. ]){_H2}(?:(?P=s6){_H2}){{4}}"  # 00-11-22-33-44-55
    rf"|{_H4}(?P<s4>[-:.]){_H4}(?P=s4){_H4}"  # 0011-2233-4455
    rf"|{_H6}[-:]{_H6}"  # 001122-334455
    rf"|[0-9A-Fa-f]{{12}})"  # 001122334455
)
_NOT_HEX = re.compile(r"[^0-9A-Fa-f]")


def _canonical(mac: str) -> str:
    d = _NOT_HEX.sub("", mac).upper()
    return "-".join(d[i : i + 2] for i in range(0, 12, 2))


@lru_cache(maxsize=65536)  # the same devices come back every interim: parse once
def normalize_mac(value: str) -> str | None:
    """Return ``AA-BB-CC-DD-EE-FF`` (RFC 3580 §3.21 / CoovaChilli style) or None.

    The whole value (surrounding white space aside) must be one MAC in one of the
    notations above: used for Calling-Station-Id, a MAC as User-Name, portal parameters
    and ``[[access_points]] match``.
    """
    m = _MAC.fullmatch(value.strip())
    return _canonical(m.group(0)) if m else None


@lru_cache(maxsize=65536)
def called_station_mac(called_station_id: str) -> str | None:
    """The AP MAC of a Called-Station-Id: a MAC in any notation above, alone or followed
    by a separator and the SSID (``00-11-22-33-44-55:SSID``, ``0011-2233-4455:SSID``,
    ``0011.2233.4455:SSID``, RFC 3580 §3.20). None when it does not start with a MAC
    (MikroTik sends its hotspot server name)."""
    value = called_station_id.strip()
    m = _MAC.match(value)
    if m is None:
        return None
    rest = value[m.end() :]
    if rest and rest[0].isalnum():
        return None  # the hex ran on: not a MAC followed by an SSID
    return _canonical(m.group(0))
