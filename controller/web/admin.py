"""The admin API (bearer token with role ``admin``, under ``/api/v1/admin/``): a person's
sessions and usage, disconnect, block, unblock, revoke remembered devices. The actions
are ``controller.services.admin``; this module reads the request and answers JSON."""

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
from controller.web.auth import requires
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
    return web.json_response(await _run(request.app, action, args))


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


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/sessions", sessions_route)
    app.router.add_post("/api/v1/admin/disconnect", disconnect_route)
    app.router.add_post("/api/v1/admin/block", block_route)
    app.router.add_post("/api/v1/admin/unblock", unblock_route)
    app.router.add_post("/api/v1/admin/revoke-devices", revoke_devices_route)
