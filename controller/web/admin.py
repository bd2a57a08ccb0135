"""The admin API (bearer token with role ``admin``, under ``/api/v1/admin/``): a person's
sessions and usage, disconnect, block, unblock, revoke remembered devices, and a person's
EAP ("connect automatically") credentials: list, revoke (``/api/v1/admin/eap/…``). The
actions are ``controller.services.admin`` and ``controller.services.eap_revoke``; this
module reads the request and answers JSON."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from controller.services.admin import (
    AdminError,
    block,
    block_until,
    disconnect,
    person_status,
    resolve_person,
    revoke_devices,
    unblock,
)
from controller.services.eap_revoke import credentials_json, list_credentials, revoke_credentials
from controller.web.auth import PRINCIPAL, requires
from controller.web.resources import CLOCK, ENFORCER, LIVE, PERSON_KEY, STORE


async def _handle(request: web.Request, action: str) -> web.Response:
    """Refusals (``AdminError``) and a Redis outage are answered by
    ``controller.web.errors``; the token was checked by ``requires("admin")``."""
    if request.method == "GET":
        args: dict[str, Any] = dict(request.query)
    else:
        try:  # JSON is UTF-8 (RFC 8259 §8.1), whatever the charset parameter says
            args = json.loads((await request.read()).decode("utf-8"))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
            raise AdminError(400, "bad_json", "the body is not JSON") from None
        if not isinstance(args, dict):
            raise AdminError(400, "bad_json", "the body is a JSON object")
    if action.startswith("eap-"):
        return web.json_response(await _eap(request, action, args))
    return web.json_response(await _run(request.app, action, args))


async def _eap(request: web.Request, action: str, args: dict[str, Any]) -> dict[str, Any]:
    """``eap-credentials``: the person's credentials (never a secret or hash);
    ``eap-revoke``: one (``credential``) or all, and their EAP sessions disconnected."""
    app = request.app
    for key in ("phone", "person", "credential"):
        if args.get(key) is not None and not isinstance(args[key], str):
            raise AdminError(400, "bad_request", f"'{key}' is a string")
    pid = resolve_person(
        phone=args.get("phone"), person=args.get("person"), person_key=app[PERSON_KEY]
    )
    store = app[STORE]
    if action == "eap-credentials":
        return credentials_json(pid, await list_credentials(store, pid))
    credential = (args.get("credential") or "").strip() or None
    result = await revoke_credentials(
        store,
        app[ENFORCER],
        pid,
        credential,
        realm=app[LIVE].config.passpoint.realm,
        now=int(app[CLOCK]()),
        by=f"api:{request[PRINCIPAL].name}",
        address=request.remote or "",
    )
    if credential is not None and not result.revoked:
        raise AdminError(404, "not_found", "no such credential of this person")
    return result.to_json()


async def _run(app: web.Application, action: str, args: dict[str, Any]) -> dict[str, Any]:
    store, enforcer = app[STORE], app[ENFORCER]
    for key in ("phone", "person", "until", "reason"):
        if args.get(key) is not None and not isinstance(args[key], str):
            raise AdminError(400, "bad_request", f"'{key}' is a string")
    days = args.get("days")
    if days is not None:
        # a JSON integer or a query string of digits; not true, 2.5 or Infinity (int() of
        # which is 1, 2 or an OverflowError)
        text = days.strip() if isinstance(days, str) else ""
        if text.isascii() and text.isdigit() and len(text) <= 6:
            days = int(text)
        elif isinstance(days, bool) or not isinstance(days, int):
            raise AdminError(400, "bad_days", "'days' is an integer")
    pid = resolve_person(
        phone=args.get("phone"), person=args.get("person"), person_key=app[PERSON_KEY]
    )
    now = int(app[CLOCK]())
    policy = app[LIVE].config.quota
    if action == "sessions":
        return await person_status(store, policy, pid, now)
    if action == "disconnect":
        return await disconnect(enforcer, pid)
    if action == "block":
        until = block_until(now, policy.timezone, until=args.get("until"), days=days)
        return await block(
            store,
            enforcer,
            policy,
            pid,
            now=now,
            until=until,
            reason=args.get("reason") or "",
        )
    if action == "revoke-devices":
        return await revoke_devices(store, pid)
    return await unblock(store, pid)


@requires("admin")
async def sessions_route(request: web.Request) -> web.Response:
    """GET /api/v1/admin/sessions?phone=…|person=… — today's usage and open sessions."""
    return await _handle(request, "sessions")


@requires("admin")
async def disconnect_route(request: web.Request) -> web.Response:
    """POST /api/v1/admin/disconnect {"phone"|"person"} — end every session now."""
    return await _handle(request, "disconnect")


@requires("admin")
async def block_route(request: web.Request) -> web.Response:
    """POST /api/v1/admin/block {"phone"|"person", "until"?|"days"?, "reason"?}."""
    return await _handle(request, "block")


@requires("admin")
async def unblock_route(request: web.Request) -> web.Response:
    """POST /api/v1/admin/unblock {"phone"|"person"}."""
    return await _handle(request, "unblock")


@requires("admin")
async def revoke_devices_route(request: web.Request) -> web.Response:
    """POST /api/v1/admin/revoke-devices {"phone"|"person"} — forget remembered devices."""
    return await _handle(request, "revoke-devices")


@requires("admin")
async def eap_credentials_route(request: web.Request) -> web.Response:
    """GET /api/v1/admin/eap/credentials?phone=…|person=… — the person's EAP credentials."""
    return await _handle(request, "eap-credentials")


@requires("admin")
async def eap_revoke_route(request: web.Request) -> web.Response:
    """POST /api/v1/admin/eap/revoke {"phone"|"person", "credential"?} — revoke one or
    all, and disconnect the EAP sessions they opened (RFC 5176)."""
    return await _handle(request, "eap-revoke")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/sessions", sessions_route)
    app.router.add_post("/api/v1/admin/disconnect", disconnect_route)
    app.router.add_post("/api/v1/admin/block", block_route)
    app.router.add_post("/api/v1/admin/unblock", unblock_route)
    app.router.add_post("/api/v1/admin/revoke-devices", revoke_devices_route)
    app.router.add_get("/api/v1/admin/eap/credentials", eap_credentials_route)
    app.router.add_post("/api/v1/admin/eap/revoke", eap_revoke_route)
