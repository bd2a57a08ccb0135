"""The "connect automatically" routes of the person this browser is logged in as (the
portal's device cookie: a person verified by SMS; never by source address, since the
answers are credentials). 404 when ``[passpoint]`` is off, 401 without a login.

- ``GET /api/v1/profile?kind=android|apple``: a new credential in the profile (400 for
  another kind), never cached (``controller.services.profiles``);
- ``GET /api/v1/profile/credentials``: the person's credentials (username, label,
  issued, expires; never a secret or hash);
- ``POST /api/v1/profile/revoke`` ``{"username": …}`` (JSON: the portal API's CSRF
  rule): revoke one of them (404 when it is not theirs);
- ``POST /portal/profile/revoke`` (the status page's form, CSRF token of
  ``controller.web.csrf``): the same, answered with the status page.

Revoking also disconnects the EAP sessions the credential opened (RFC 5176, through the
enforcer: ``controller.services.eap_revoke.revoke_credentials``).
"""

from __future__ import annotations

from aiohttp import web

from controller.services.eap_revoke import revoke_credentials
from controller.services.portal.errors import PortalError
from controller.services.profiles import KINDS, credentials_of, download
from controller.web.portal.routes import View, _form, _status, html_page, json_api
from controller.web.resources import CLOCK, ENFORCER

__all__ = ["add_routes"]

routes = web.RouteTableDef()


async def _person(view: View) -> str:
    if not view.config.passpoint.enabled:
        raise PortalError("not_found", 404)
    pid = await view.device_pid()  # the cookie only: the answers are credentials
    if pid is None:
        raise PortalError("not_logged_in", 401)
    return pid


@routes.get("/api/v1/profile")
@json_api
async def api_profile(request: web.Request, view: View) -> web.StreamResponse:
    settings = view.config.passpoint
    pid = await _person(view)
    kind = request.query.get("kind", "")
    if kind not in KINDS:
        raise PortalError("bad_request", 400)
    # the controller's clock, as the RADIUS side that checks the credential's times uses
    got = await download(view.store.redis, settings, pid, kind, int(request.app[CLOCK]()))
    return web.Response(
        body=got.body,
        content_type=got.content_type,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{got.filename}"',
        },
    )


@routes.get("/api/v1/profile/credentials")
@json_api
async def api_credentials(request: web.Request, view: View) -> web.StreamResponse:
    pid = await _person(view)
    found = await credentials_of(view.store.redis, pid)
    return web.json_response(
        {"credentials": [c.public() for c in found]},
        headers={"Cache-Control": "no-store"},
    )


@routes.post("/api/v1/profile/revoke")
@json_api
async def api_revoke(request: web.Request, view: View) -> web.StreamResponse:
    pid = await _person(view)
    body = await view.json_body()
    username = body.get("username")
    if not isinstance(username, str) or not username:
        raise PortalError("bad_request", 400, field="username")
    await _revoke(view, pid, username)
    return web.json_response({"revoked": username})


async def _revoke(view: View, pid: str, username: str) -> None:
    """Revoke the person's own credential ``username`` (404 when it is not theirs) and
    disconnect its EAP sessions."""
    result = await revoke_credentials(
        view.store,
        view.request.app[ENFORCER],
        pid,
        username,
        realm=view.config.passpoint.realm,
        now=int(view.portal.now()),
    )
    if not result.revoked:
        raise PortalError("not_found", 404)


@routes.post("/portal/profile/revoke")
@html_page
async def post_revoke(request: web.Request, view: View) -> web.StreamResponse:
    """The status page's "revoke" button: by the device cookie of the person verified
    in this browser (never a phone number in the request), CSRF-checked."""
    form = await _form(view)
    pid = await _person(view)
    username = form.get("username", "")
    if not username:
        raise PortalError("bad_request", 400, field="username")
    await _revoke(view, pid, username)
    return await _status(view, pid, notice=view.text("profile_revoked"))


def add_routes(app: web.Application) -> None:
    """Mount the profile routes on the citizen app (``controller.web.app.make_app``)."""
    app.add_routes(routes)
