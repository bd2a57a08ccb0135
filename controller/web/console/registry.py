"""``GET /console/registry``: venues, access points and clients as loaded, and config
reload status (``controller.services.registry_view``); operator accounts see their own."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from controller.domain.accounts import operator_scope
from controller.services.registry_view import registry_view
from controller.storage.accounts import AccountStore
from controller.storage.store import StoreUnavailable
from controller.storage.trace import TraceStore
from controller.web.console import guard, pages
from controller.web.console.common import brand, forbidden, read_form
from controller.web.resources import CLOCK, LIVE, STORE

PATH = f"{guard.PATH}/registry"
TRACE_PATH = f"{PATH}/trace"


async def registry_page(request: web.Request) -> web.Response:
    account = await guard.signed_in(request)
    if account is None:
        raise web.HTTPSeeOther(f"{guard.PATH}/login")
    token, nonce, new = guard.form_token(request)
    if not guard.may(account, request.method, request.path):
        return forbidden(request, account, token)
    scope = operator_scope(account)
    view = registry_view(request.app[LIVE].config, scope)
    try:
        traced = await TraceStore(request.app[STORE]).active([c.id for c in view.clients])
    except StoreUnavailable:
        traced = frozenset()
    response = pages.html(
        pages.render(
            "registry.html",
            title="Registry",
            brand=brand(request),
            user=account.name,
            csrf=token,
            r=view,
            scope=sorted(scope) if scope is not None else None,
            traced=traced,
            can_trace=guard.may(account, "POST", TRACE_PATH),
            notice=request.query.get("notice", "")[:200],
        )
    )
    if new:
        guard.set_nonce(response, nonce)
    return response


async def trace_switch(request: web.Request) -> web.Response:
    """``POST /console/registry/trace`` (form: client, minutes 0-60, csrf; admin,
    operations): turn one client's RADIUS trace on for N minutes (0: off); what it
    traces is read with ``citywifi trace --client ID`` or in the ``radius.trace`` logs."""
    account = await guard.signed_in(request)
    if account is None:
        raise web.HTTPSeeOther(f"{guard.PATH}/login")
    if not guard.may(account, request.method, request.path):
        return forbidden(request, account, guard.form_token(request)[0])
    form = await read_form(request)
    if form is None or not guard.form_ok(request, form):
        return pages.html("The form expired; go back and try again.", status=403)
    client, minutes = form.get("client", ""), form.get("minutes", "").strip()
    if client not in {c.id for c in request.app[LIVE].config.clients}:
        return pages.html("No such RADIUS client.", status=400)
    if not (minutes.isascii() and minutes.isdigit() and int(minutes) <= 60):
        return pages.html("Minutes is 0 to 60.", status=400)
    db = TraceStore(request.app[STORE])
    try:
        if int(minutes):
            await db.on(client, int(minutes) * 60, f"console:{account.name}")
        else:
            await db.off(client)
        await AccountStore(request.app[STORE]).audit(
            {
                "t": str(int(request.app[CLOCK]())),
                "user": account.name,
                "action": "trace",
                "target": client,
                "result": f"{minutes} min" if int(minutes) else "off",
                "address": guard.address(request),
            }
        )
    except StoreUnavailable:
        return pages.html("Redis is not answering; retry shortly.", status=503)
    notice = f"Trace of {client}: " + (f"on for {minutes} min" if int(minutes) else "off")
    raise web.HTTPSeeOther(f"{PATH}?{urlencode({'notice': notice})}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, registry_page)
    app.router.add_post(TRACE_PATH, trace_switch)
