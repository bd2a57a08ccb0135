"""The client's address as the portal should believe it.

Behind a reverse proxy (TLS termination, load balancer) the socket peer is the proxy;
``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed only when the peer is one of
``[portal] trusted_proxies``, and then the right-most address not itself a trusted proxy
is the client (every proxy appends the peer it saw; earlier entries are client-supplied).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from controller.config import IPNetwork


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(peer: str, forwarded_for: str | None, proxies: Sequence[IPNetwork]) -> str:
    if not proxies or not _trusted(peer, proxies) or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


def client_scheme(
    peer: str, scheme: str, forwarded_proto: str | None, proxies: Sequence[IPNetwork]
) -> str:
    if forwarded_proto and proxies and _trusted(peer, proxies):
        proto = forwarded_proto.split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return scheme
