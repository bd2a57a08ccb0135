"""CSRF protection of the portal's form posts: double-submit token (OWASP CSRF cheat
sheet). A random token lives in the ``cw_csrf`` cookie (SameSite=Lax, HttpOnly) and in a
hidden ``csrf`` field of every form; a post is accepted only when both match (constant
time) and, if the browser sent an ``Origin``, it is this host. JSON endpoints are
protected differently: they require ``Content-Type: application/json``, which a
cross-site form cannot send and a cross-site ``fetch`` cannot send without a CORS
preflight that this server never approves.
"""

from __future__ import annotations

import hmac
import re
import secrets
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "cw_csrf"
FIELD = "csrf"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def token_for(request: web.Request) -> tuple[str, bool]:
    """The request's token and whether it is new (then ``set_cookie`` must be called)."""
    current = request.cookies.get(COOKIE, "")
    if _TOKEN.fullmatch(current):
        return current, False
    return secrets.token_urlsafe(32), True


def set_cookie(response: web.StreamResponse, token: str, secure: bool) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Lax", secure=secure, path="/")


def origin_ok(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def check(request: web.Request, submitted: str) -> bool:
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or not submitted or not origin_ok(request):
        return False
    # header bytes that are not UTF-8 arrive as lone surrogates: compare them, never raise
    return hmac.compare_digest(
        cookie.encode("utf-8", "surrogatepass"), submitted.encode("utf-8", "surrogatepass")
    )
