"""The one CSRF mechanism of every HTML form (the portal's, the report page's): a
signed double-submit token bound to what the form carries (OWASP CSRF cheat sheet,
"signed double-submit cookie"; finding 14).

A random nonce lives in an HttpOnly cookie; every form carries ``csrf = HMAC(key,
"csrf" ‖ nonce ‖ binding)`` (``controller.services.signing``), where the binding is
what the form must not be replayed without: the portal binds the page's sealed NAS
context (``ctx``), the report page nothing more than the nonce. A post is accepted only
when that tag matches the cookie's nonce *and* the binding it came with, and, if the
browser sent an ``Origin`` (RFC 6454), it is this host. So a cookie planted from
elsewhere (cookie tossing on the captive network) is of no use without a tag only the
server can make, and a tag from one page cannot carry another page's context.

JSON endpoints are protected differently: they require ``Content-Type:
application/json``, which a cross-site form cannot send and a cross-site ``fetch``
cannot send without a CORS preflight that this server never approves; the APIs with
bearer tokens need no CSRF token (a browser never adds the header on its own).

The portal's nonce also names the browser as a *device* for the SMS limits (random,
HttpOnly, so a stranger can neither read nor choose it for someone else).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from aiohttp import web

from controller.services.signing import Signer

FIELD: Final = "csrf"  # the form field of every form
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Csrf:
    """The CSRF cookie of one part of the site: its name, path and SameSite policy."""

    cookie: str
    path: str = "/"
    samesite: Literal["Lax", "Strict"] = "Lax"

    def nonce_of(self, request: web.Request) -> str:
        """The browser's nonce from its cookie, or "" (none, or a malformed one)."""
        current = request.cookies.get(self.cookie, "")
        return current if _NONCE.fullmatch(current) else ""

    def nonce_for(self, request: web.Request) -> tuple[str, bool]:
        """The request's nonce and whether it is new (then ``set_cookie`` must be called)."""
        current = self.nonce_of(request)
        return (current, False) if current else (secrets.token_urlsafe(32), True)

    def set_cookie(
        self, response: web.StreamResponse, nonce: str, *, secure: bool, max_age: int | None = None
    ) -> None:
        response.set_cookie(
            self.cookie,
            nonce,
            max_age=max_age,
            path=self.path,
            secure=secure,
            httponly=True,
            samesite=self.samesite,
        )

    def check(self, request: web.Request, signer: Signer, sent: str, binding: str = "") -> bool:
        """The post carries the tag of this browser's nonce and of the ``binding`` it
        was sent with, from this host (when the browser says where it comes from)."""
        nonce = self.nonce_of(request)
        if not nonce or not sent or not origin_ok(request):
            return False
        expected = form_token(signer, nonce, binding)
        # form bytes that are not UTF-8 arrive as lone surrogates: compare them, never raise
        return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogatepass"))


def form_token(signer: Signer, nonce: str, binding: str = "") -> str:
    """The ``csrf`` field of a form shown to the browser with ``nonce``, bound to
    ``binding`` (the portal's ``ctx``)."""
    return signer.digest("csrf", f"{nonce}\x00{binding}")


def origin_ok(request: web.Request) -> bool:
    """No ``Origin`` (or the opaque ``null`` of privacy modes), or this host's."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()
