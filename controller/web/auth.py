"""Who may call the reports, audit and admin APIs: bearer tokens with roles (RFC 6750),
the one mechanism, and the report page's session cookie.

A protected route is declared with ``requires(role)``: the check runs before the handler,
which finds its caller in ``request[PRINCIPAL]``, and the role is on the handler
(``role_of``) so that a test can walk the route table and try every protected route.

Tokens are configured as the sha256 of the token (``[[api_tokens]]``); a presented token is
hashed and compared with every configured digest in constant time. No token or an unknown
one is 401, a token without the route's role 403. Roles do not imply one another: the
audit export needs ``audit`` even for an ``admin`` token.

The page signs in with the same token through a form and gets a cookie (Secure, HttpOnly,
SameSite=Strict) naming the token, its expiry and a fingerprint of its digest, signed with
a key derived from the person-id key; replacing or removing the token ends its sessions.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar, cast

from aiohttp import web

from controller.config import ApiToken, Config
from controller.domain.accounts import token_live
from controller.services.errors import RequestError
from controller.services.signing import Signer
from controller.web.resources import LIVE

SESSION_COOKIE = "cw_reports"
SESSION_SECONDS = 8 * 3600
SESSION_PURPOSE = "reports-session"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]


def _octets(text: str) -> bytes:
    """Header and form text as bytes; bytes that were not UTF-8 arrive as lone surrogates
    (aiohttp decodes headers with ``surrogateescape``) and must not raise."""
    return text.encode("utf-8", "surrogatepass")


def token_for(token: str, config: Config) -> ApiToken | None:
    """The configured token whose sha256 is the presented token's, compared in constant
    time with every configured digest (no early exit)."""
    digest = hashlib.sha256(_octets(token)).hexdigest()
    found = None
    for candidate in config.api_tokens:  # no early exit: time does not depend on position
        if hmac.compare_digest(candidate.sha256, digest):
            found = candidate
    if found is not None and not token_live(found.expires, time.time()):
        return None  # past its `expires` (issue 17): as if unknown
    return found


def require_role(principal: Principal, role: str) -> Principal:
    if role not in principal.roles:
        raise RequestError("forbidden", 403, f"this token lacks the role '{role}'")
    return principal


PRINCIPAL: Final = web.RequestKey("principal", Principal)
_ROLE: Final = "__citywifi_role__"
H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def requires(role: str, *also: str) -> Callable[[H], H]:
    """A route that only a bearer token with ``role`` (or one of ``also``) may call (else
    401 / 403, with ``WWW-Authenticate`` on a 401, RFC 6750 §3), checked against the
    tokens in force; the handler tells the roles apart by ``request[PRINCIPAL].roles``."""

    def wrap(handler: H) -> H:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            request[PRINCIPAL] = bearer(request, request.app[LIVE].config, role, *also)
            return await handler(request)

        setattr(checked, _ROLE, (role, *also))
        return cast(H, checked)

    return wrap


def role_of(handler: object) -> str | None:
    """The role a route handler was declared with (``requires``), if any."""
    roles = roles_of(handler)
    return roles[0] if roles else None


def roles_of(handler: object) -> tuple[str, ...]:
    """Every role that may call a route handler (``requires(role, *also)``)."""
    roles = getattr(handler, _ROLE, ())
    return roles if isinstance(roles, tuple) else ()


def bearer(request: web.Request, config: Config, role: str, *also: str) -> Principal:
    """The caller of an API route, who must hold ``role`` or one of ``also``; else 401 /
    403 (naming ``role``)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="citywifi"'}
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(
            "unauthorized",
            401,
            "send the API token as 'Authorization: Bearer …'",
            headers=challenge,
        )
    found = token_for(token.strip(), config)
    if found is None:
        raise RequestError("invalid_token", 401, "unknown API token", headers=challenge)
    principal = Principal(found.name, found.roles)
    if any(r in principal.roles for r in also):
        return principal
    return require_role(principal, role)


# --------------------------------------------------------------------------- page sessions


def session_key(person_key: bytes) -> bytes:
    """The page-session key, derived from the person-id key (a key of its own, so that a
    session tag is never a tag of anything the person key signs)."""
    return hmac.new(person_key, b"citywifi report-page session v1", hashlib.sha256).digest()


def issue_session(token: ApiToken, key: bytes, now: float) -> str:
    """The session cookie of ``token``: its name and a fingerprint of its digest, signed
    (``controller.services.signing``) with an expiry ``SESSION_SECONDS`` from now."""
    payload = f"{token.name}~{token.sha256[:16]}".encode()
    return Signer(key).sign(SESSION_PURPOSE, payload, expires=int(now) + SESSION_SECONDS)


def session_principal(value: str, config: Config, key: bytes, now: float) -> Principal | None:
    """Who a session cookie names, while it has not expired and its token is configured
    with the same digest; else None."""
    payload = Signer(key).unsign(SESSION_PURPOSE, value, now=now)
    text = payload.decode("utf-8", "replace") if payload else ""
    name, sep, fingerprint = text.rpartition("~")
    if not sep:
        return None
    for token in config.api_tokens:
        if (
            token.name == name
            and hmac.compare_digest(_octets(token.sha256[:16]), _octets(fingerprint))
            and token_live(token.expires, now)
        ):
            return Principal(token.name, token.roles)
    return None
