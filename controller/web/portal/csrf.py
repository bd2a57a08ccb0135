"""CSRF protection of the portal's form posts: a signed double-submit token bound to the
page's signed NAS context (OWASP CSRF cheat sheet, "signed double-submit cookie").

A random nonce lives in the ``cw_csrf`` cookie (SameSite=Lax, HttpOnly); every form
carries ``csrf = HMAC(portal key, "csrf" ‖ nonce ‖ ctx)`` next to its ``ctx`` (the sealed
NAS redirect). A post is accepted only when that tag matches the cookie's nonce *and*
the ``ctx`` it came with, and, if the browser sent an ``Origin``, it is this host. So a
cookie planted from elsewhere (cookie tossing on the captive network) is of no use
without a tag only the portal can make, and a tag from one page cannot carry another
NAS context. JSON endpoints are protected differently: they require ``Content-Type:
application/json``, which a cross-site form cannot send and a cross-site ``fetch``
cannot send without a CORS preflight that this server never approves.

The nonce also names the browser as a *device* for the SMS limits (``service.py``):
random, HttpOnly, so a stranger can neither read nor choose it for someone else.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from controller.services.signing import Signer

COOKIE = "cw_csrf"
FIELD = "csrf"
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")


def nonce_of(request: web.Request) -> str:
    """The browser's nonce from its cookie, or "" when it has none (or a malformed one)."""
    current = request.cookies.get(COOKIE, "")
    return current if _NONCE.fullmatch(current) else ""


def nonce_for(request: web.Request) -> tuple[str, bool]:
    """The request's nonce and whether it is new (then ``set_cookie`` must be called)."""
    current = nonce_of(request)
    return (current, False) if current else (secrets.token_urlsafe(32), True)


def form_token(signer: Signer, nonce: str, ctx: str) -> str:
    """The ``csrf`` field of a form showing context ``ctx`` to the browser with ``nonce``."""
    return signer.digest("csrf", f"{nonce}\x00{ctx}")


def set_cookie(response: web.StreamResponse, nonce: str, secure: bool) -> None:
    response.set_cookie(COOKIE, nonce, httponly=True, samesite="Lax", secure=secure, path="/")


def origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def check(request: web.Request, signer: Signer, submitted: str, ctx: str) -> bool:
    """The post carries the tag of this browser's nonce and of the ``ctx`` it submits."""
    nonce = nonce_of(request)
    if not nonce or not submitted or not origin_ok(request):
        return False
    expected = form_token(signer, nonce, ctx)
    # form bytes that are not UTF-8 arrive as lone surrogates: compare them, never raise
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "surrogatepass"))
