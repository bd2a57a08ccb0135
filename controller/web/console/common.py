"""Helpers the console's route modules share (kept apart so they import no route module)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from controller.domain.accounts import Account
from controller.services.errors import RequestError
from controller.web.console import guard, lang, pages
from controller.web.errors import render_json
from controller.web.resources import LIVE


def brand(request: web.Request) -> str:
    """The programme's name in the page's language (English when it has none in it)."""
    names = request.app[LIVE].config.brand.name
    return names.get(lang.of(request)) or names["en"]


async def read_form(request: web.Request) -> dict[str, str] | None:
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


def forbidden(
    request: web.Request, account: Account, csrf: str, route: tuple[str, str] | None = None
) -> web.Response:
    """The 403 page naming the roles ``route`` (method, path; default: the request's own)
    needs."""
    language = lang.of(request)
    needed = lang.text(language, "list.or").join(
        sorted(guard.ROUTE_ROLES[route or (request.method, request.path)])
    )
    return pages.html(
        pages.render(
            "forbidden.html",
            lang=language,
            title=lang.text(language, "forbidden.title"),
            brand=brand(request),
            user=account.name,
            csrf=csrf,
            needed=needed,
        ),
        status=403,
    )


async def allowed(
    request: web.Request, route: tuple[str, str] | None = None
) -> Account | web.Response:
    """A page's account: the sign-in form (303) without a session, the 403 page when the
    account has no role for ``route`` (method, path in ``guard.ROUTE_ROLES``; default: the
    request's own method and path)."""
    account = await guard.signed_in(request)
    if account is None:
        raise web.HTTPSeeOther(f"{guard.PATH}/login")
    method, path = route or (request.method, request.path)
    if not guard.may(account, method, path):
        return forbidden(request, account, guard.form_token(request)[0], (method, path))
    return account


async def allowed_form(request: web.Request) -> tuple[Account, dict[str, str]] | web.Response:
    """A form post's account and fields: as ``allowed``, and a 403 "form expired" page when
    the form cannot be read or its CSRF field is not this browser's."""
    account = await allowed(request)
    if isinstance(account, web.Response):
        return account
    form = await read_form(request)
    if form is None or not guard.form_ok(request, form):
        return pages.html(lang.text(lang.of(request), "error.form_expired"), status=403)
    return account, form


def polled_page(
    request: web.Request, account: Account, template: str, title: str, **values: Any
) -> web.Response:
    """A page that polls its JSON twin: rendered with the form token, a script nonce and
    the refresh period; sets the CSRF nonce cookie when new and remembers the language."""
    token, nonce, new = guard.form_token(request)
    script_nonce = pages.nonce()
    response = pages.html(
        pages.render(
            template,
            lang=lang.of(request),
            title=title,
            brand=brand(request),
            user=account.name,
            csrf=token,
            nonce=script_nonce,
            refresh=pages.REFRESH_SECONDS,
            **values,
        ),
        script_nonce,
    )
    if new:
        guard.set_nonce(response, nonce)
    lang.remember(request, response)
    return response


def unavailable(request: web.Request) -> web.Response:
    """A page's 503 when Redis is not answering."""
    return pages.html(lang.text(lang.of(request), "error.unavailable"), status=503)


def unavailable_json(request: web.Request) -> web.Response:
    """A console API's 503 when Redis is not answering."""
    return render_json(
        request, RequestError("store_unavailable", 503, "Redis is not answering; retry")
    )


def no_store_json(body: dict[str, Any]) -> web.Response:
    """A polled figure set as JSON, never cached."""
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response
