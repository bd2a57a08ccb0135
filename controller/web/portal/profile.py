"""``GET /api/v1/profile?kind=android|apple``: the "connect automatically" profile of the
person this browser is logged in as (the portal's device cookie: a person verified by
SMS). 404 when ``[passpoint]`` is off, 400 for another kind, 401 without a login; the
body is the profile (``controller.services.profiles``), never cached."""

from __future__ import annotations

import time

from aiohttp import web

from controller.services.portal.errors import PortalError
from controller.services.profiles import KINDS, download
from controller.web.portal.routes import View, json_api

__all__ = ["add_routes"]

routes = web.RouteTableDef()


@routes.get("/api/v1/profile")
@json_api
async def api_profile(request: web.Request, view: View) -> web.StreamResponse:
    settings = view.config.passpoint
    if not settings.enabled:
        raise PortalError("not_found", 404)
    kind = request.query.get("kind", "")
    if kind not in KINDS:
        raise PortalError("bad_request", 400)
    pid = await view.device_pid()  # the cookie only: a profile is a credential
    if pid is None:
        raise PortalError("not_logged_in", 401)
    got = await download(view.store.redis, settings, pid, kind, int(time.time()))
    return web.Response(
        body=got.body,
        content_type=got.content_type,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{got.filename}"',
        },
    )


def add_routes(app: web.Application) -> None:
    """Mount the profile route on the citizen app (``controller.web.app.make_app``)."""
    app.add_routes(routes)
