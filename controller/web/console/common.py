"""Helpers the console's route modules share (kept apart so they import no route module)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from controller.domain.accounts import Account
from controller.web.console import guard, lang, pages
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


def forbidden(request: web.Request, account: Account, csrf: str) -> web.Response:
    language = lang.of(request)
    needed = lang.text(language, "list.or").join(
        sorted(guard.ROUTE_ROLES[(request.method, request.path)])
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
