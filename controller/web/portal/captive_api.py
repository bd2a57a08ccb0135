"""RFC 8908 Captive Portal API: the JSON a device fetches from the URI it learnt from
DHCPv4 option 114, DHCPv6 option 103 or the IPv6 RA option 37 (RFC 8910).

Answer (RFC 8908 §5): ``application/captive+json`` with ``captive`` (required),
``user-portal-url``, ``venue-info-url``, ``can-extend-session`` and
``seconds-remaining``; ``Cache-Control: private`` because the answer depends on the
client (§4.1). The client is recognised by its source address (``clientaddr``) in what
the portal remembered from the NAS redirect and the login, then checked against the
person's open RADIUS sessions: an open session at that address or MAC means online.
"""

from __future__ import annotations

from typing import Any, Final

CONTENT_TYPE: Final = "application/captive+json"


def captive_answer(
    *,
    captive: bool,
    user_portal_url: str,
    venue_info_url: str = "",
    seconds_remaining: int | None = None,
) -> dict[str, Any]:
    """The RFC 8908 §5 object. ``can-extend-session`` is false: the free allowance is a
    daily one, nothing can be bought or extended on the portal."""
    answer: dict[str, Any] = {"captive": captive, "user-portal-url": user_portal_url}
    if venue_info_url:
        answer["venue-info-url"] = venue_info_url
    answer["can-extend-session"] = False
    if not captive and seconds_remaining is not None:
        answer["seconds-remaining"] = max(0, int(seconds_remaining))
    return answer
