"""``GET /console/registry``: venues, access points and clients as loaded, and config
reload status (``controller.services.registry_view``); operator accounts see their own."""

from __future__ import annotations

from aiohttp import web

from controller.domain.accounts import operator_scope
from controller.services.registry_view import registry_view
from controller.web.console import guard, pages
from controller.web.console.common import brand, forbidden
from controller.web.resources import LIVE

PATH = f"{guard.PATH}/registry"


async def registry_page(request: web.Request) -> web.Response:
    account = await guard.signed_in(request)
    if account is None:
        raise web.HTTPSeeOther(f"{guard.PATH}/login")
    token, nonce, new = guard.form_token(request)
    if not guard.may(account, request.method, request.path):
        return forbidden(request, account, token)
    scope = operator_scope(account)
    view = registry_view(request.app[LIVE].config, scope)
    response = pages.html(
        pages.render(
            "registry.html",
            title="Registry",
            brand=brand(request),
            user=account.name,
            csrf=token,
            r=view,
            scope=sorted(scope) if scope is not None else None,
        )
    )
    if new:
        guard.set_nonce(response, nonce)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, registry_page)
