"""Everything the console does about who is asking, in one place: the session cookie,
CSRF on every form, the client address, and the role each route needs.

This module uses the web layer's spine: the one CSRF mechanism (``controller.web.csrf``:
a signed double-submit token, here with its own ``cw_console_csrf`` cookie, SameSite=Strict,
keyed with the portal key's signer), the one error family (``RequestError``), and the
portal's client address rule (``clientaddr``).

The cookie ``cw_console`` holds only a random session id (256 bits); the session itself
is in Redis (``controller.services.accounts``), bound to the network the browser signed
in from and ending after its lifetime, at sign-out, a password change or a disable. It
is ``Secure; HttpOnly; SameSite=Strict; Path=/console``.

``ROUTE_ROLES`` is the table of every console route and the roles that may use it (any
one of them suffices); the route tests walk it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

from controller.domain.accounts import Account
from controller.services.accounts import Accounts
from controller.services.errors import RequestError
from controller.web.csrf import FIELD, Csrf
from controller.web.csrf import form_token as csrf_token
from controller.web.portal.clientaddr import client_address
from controller.web.resources import CLOCK, LIVE, PORTAL_SIGNER, STORE

COOKIE: Final = "cw_console"
PATH: Final = "/console"
CSRF_CONTEXT: Final = "console"
CSRF: Final = Csrf("cw_console_csrf", path=PATH, samesite="Strict")
WATCH: Final = frozenset(("admin", "operations", "reports", "operator"))  # "operator":
# any operator:<id> role; what such an account sees is scoped (domain.accounts.operator_scope)

ROUTE_ROLES: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("GET", "/console/overview"): WATCH,
    ("GET", "/console/api/overview"): WATCH,
    ("GET", "/console/nas"): WATCH,  # NAS health (web.console.nas; operators: their own)
    ("GET", "/console/nas/{client}"): WATCH,
    ("GET", "/console/api/nas"): WATCH,
    ("GET", "/console/api/nas/{client}"): WATCH,
    ("GET", "/console/sessions"): WATCH,
    ("GET", "/console/registry"): WATCH,
    ("POST", "/console/registry/trace"): frozenset(("admin", "operations")),
    ("POST", "/console/sessions/disconnect"): frozenset(("admin",)),
    ("POST", "/console/sessions/disconnect-person"): frozenset(("admin",)),
    ("GET", "/console/api/registry"): WATCH,
    ("GET", "/console/person"): frozenset(("admin", "audit")),
    ("POST", "/console/person"): frozenset(("admin", "audit")),  # a lookup (audited)
    ("POST", "/console/person/block"): frozenset(("admin",)),
    ("POST", "/console/person/unblock"): frozenset(("admin",)),
    ("POST", "/console/person/forget-devices"): frozenset(("admin",)),
    ("POST", "/console/person/revoke-eap"): frozenset(("admin",)),
}


def accounts(request: web.Request) -> Accounts:
    return Accounts(request.app[STORE], clock=request.app[CLOCK])


def address(request: web.Request) -> str:
    proxies = request.app[LIVE].config.portal.trusted_proxies
    return client_address(request.remote or "", request.headers.get("X-Forwarded-For"), proxies)


def session_id(request: web.Request) -> str:
    return request.cookies.get(COOKIE, "")


async def signed_in(request: web.Request) -> Account | None:
    return await accounts(request).session(session_id(request), address(request))


def may(account: Account, method: str, path: str) -> bool:
    return bool(account.role_kinds & ROUTE_ROLES[(method, path)])


async def require(
    request: web.Request, *, page: bool, route: tuple[str, str] | None = None
) -> Account:
    """The signed-in account allowed on ``route`` (method, path in ``ROUTE_ROLES``; default:
    the request's own). No session: a page goes to the sign-in form (303), the API answers
    401; a session without the route's role: 403."""
    account = await signed_in(request)
    if account is None:
        if page:
            raise web.HTTPSeeOther(f"{PATH}/login")
        raise RequestError("unauthorized", 401, "sign in on /console/login")
    method, path = route or (request.method, request.path)
    if not may(account, method, path):
        raise RequestError("forbidden", 403, "this account has no role for this page")
    return account


def set_session(response: web.StreamResponse, sid: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, sid, max_age=max_age, path=PATH, secure=True, httponly=True, samesite="Strict"
    )


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=PATH)


def form_token(request: web.Request) -> tuple[str, str, bool]:
    """(the ``csrf`` field for this browser's forms, its nonce, whether the nonce cookie
    must be set)."""
    nonce, new = CSRF.nonce_for(request)
    return csrf_token(request.app[PORTAL_SIGNER], nonce, CSRF_CONTEXT), nonce, new


def set_nonce(response: web.StreamResponse, nonce: str) -> None:
    CSRF.set_cookie(response, nonce, secure=True)


def form_ok(request: web.Request, form: Mapping[str, str]) -> bool:
    return CSRF.check(request, request.app[PORTAL_SIGNER], form.get(FIELD, ""), CSRF_CONTEXT)
