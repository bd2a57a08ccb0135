"""``GET /api/v1/audit/who?ip=&port=&at=``: the person behind a public address and port
at an instant (controller.services.natlog.who; docs/audit.md). Role ``audit``: with the
phone number; role ``admin``: the person id only. Every lookup is logged."""

from __future__ import annotations

import asyncio

from aiohttp import web

from controller.services.natlog import WhoQueryError, parse_who, to_json, who
from controller.web.auth import HttpProblem, api, bearer
from controller.web.resources import ARCHIVE, ARCHIVER, CLOCK, LIVE


@api
async def handle_who(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[LIVE].config
    try:
        principal = bearer(request, config, "audit")
        with_phone = True
    except HttpProblem as exc:
        if exc.status != 403:
            raise
        principal = bearer(request, config, "admin")  # 403 names 'admin' if it lacks both
        with_phone = False
    try:
        q = parse_who(
            request.query.get("ip"), request.query.get("port"), request.query.get("at"), config
        )
    except WhoQueryError as exc:
        raise HttpProblem(400, exc.code, exc.message) from None
    await app[ARCHIVER].flush()  # sessions closed a moment ago are in the archive
    doc = await asyncio.to_thread(
        who, app[ARCHIVE], config, f"token:{principal.name}", q, app[CLOCK](), with_phone=with_phone
    )
    return web.Response(
        body=to_json(doc),
        headers={"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit/who", handle_who)
