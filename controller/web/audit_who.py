"""``GET /api/v1/audit/who?ip=&port=&at=``: the person behind a public address and port
at an instant (controller.services.natlog.who_live; docs/audit.md). Role ``audit``: with the
phone number; role ``admin``: the person id only. Open sessions count (read from Redis).
Every lookup is logged."""

from __future__ import annotations

from aiohttp import web

from controller.services.errors import RequestError
from controller.services.natlog import WhoQueryError, parse_who, to_json, who_live
from controller.web.auth import PRINCIPAL, requires
from controller.web.resources import ARCHIVE, ARCHIVER, CLOCK, LIVE, STORE


@requires("audit", "admin")
async def handle_who(request: web.Request) -> web.StreamResponse:
    app = request.app
    config = app[LIVE].config
    principal = request[PRINCIPAL]
    with_phone = "audit" in principal.roles  # admin: the person id only
    try:
        q = parse_who(
            request.query.get("ip"), request.query.get("port"), request.query.get("at"), config
        )
    except WhoQueryError as exc:
        raise RequestError(exc.code, 400, exc.message) from None
    await app[ARCHIVER].flush()  # sessions closed a moment ago are in the archive
    doc = await who_live(  # closed sessions (archive) and open ones (Redis)
        app[ARCHIVE],
        app[STORE],
        config,
        f"token:{principal.name}",
        q,
        app[CLOCK](),
        with_phone=with_phone,
    )
    return web.Response(
        body=to_json(doc),
        headers={"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/audit/who", handle_who)
