"""Who may read reports and audit exports: bearer tokens with roles, and the report page's
session cookie.

Tokens are configured as the sha256 of the token (``[[api_tokens]]``); a presented token is
hashed and compared with every configured digest in constant time. No token or an unknown
one is 401, a token without the route's role 403. Roles do not imply one another: the
audit export needs ``audit`` even for an ``admin`` token.

The page signs in with the same token through a form and gets a cookie (Secure, HttpOnly,
SameSite=Strict) naming the token, its expiry and a fingerprint of its digest, signed with
a key derived from the person-id key; replacing or removing the token ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from controller.config import ApiToken, Config
from controller.domain.accounts import token_live

SESSION_COOKIE = "cw_reports"
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]


class HttpProblem(Exception):
    """An answer other than success, with its status and stable error code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"error": code, "message": message}, ensure_ascii=False).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api(handler: Handler) -> Handler:
    """Map ``HttpProblem`` to the JSON error answer (DESIGN: errors are JSON)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpProblem as exc:
            return json_error(exc.status, exc.code, exc.message, exc.headers)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


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
        raise HttpProblem(403, "forbidden", f"this token lacks the role '{role}'")
    return principal


def bearer(request: web.Request, config: Config, role: str) -> Principal:
    """The caller of an API route, who must hold ``role``; else 401 / 403."""
    challenge = {"WWW-Authenticate": 'Bearer realm="citywifi"'}
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpProblem(
            401, "unauthorized", "send the API token as 'Authorization: Bearer …'", challenge
        )
    found = token_for(token.strip(), config)
    if found is None:
        raise HttpProblem(401, "invalid_token", "unknown API token", challenge)
    return require_role(Principal(found.name, found.roles), role)


# --------------------------------------------------------------------------- page sessions


def session_key(person_key: bytes) -> bytes:
    return hmac.new(person_key, b"citywifi report-page session v1", hashlib.sha256).digest()


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, _octets(payload), hashlib.sha256).hexdigest()


def issue_session(token: ApiToken, key: bytes, now: float) -> str:
    payload = f"{token.name}~{int(now) + SESSION_SECONDS}~{token.sha256[:16]}"
    return f"{payload}~{_sign(key, payload)}"


def session_principal(value: str, config: Config, key: bytes, now: float) -> Principal | None:
    parts = value.split("~")
    if len(parts) != 4:
        return None
    name, expires, fingerprint, signature = parts
    if not hmac.compare_digest(_octets(_sign(key, "~".join(parts[:3]))), _octets(signature)):
        return None
    if not expires.isdigit() or int(expires) < now:
        return None
    for token in config.api_tokens:
        if (
            token.name == name
            and hmac.compare_digest(_octets(token.sha256[:16]), _octets(fingerprint))
            and token_live(token.expires, now)
        ):
            return Principal(token.name, token.roles)
    return None
