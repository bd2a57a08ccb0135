"""Rendering portal pages: one Jinja2 environment over ``portal_pages/templates``
(autoescaped), the values every page needs, and the response headers of every page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from controller.config import Config, Venue
from controller.domain.venue_types import VENUE_TYPES
from controller.services.portal.i18n import HTML_LANG, LANGS, Catalog, format_duration

TEMPLATES: Final = Path(str(resources.files("portal_pages").joinpath("templates")))
STATIC: Final = Path(str(resources.files("portal_pages").joinpath("static")))

# No asset from elsewhere (a captive client cannot reach it); no framing; no Referer, so the
# hand-off URL (it carries the encoded password) never leaks to a third party.
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def other(lang: str) -> str:
    return LANGS[1 - LANGS.index(lang)]


def venue_view(venue: Venue, config: Config, lang: str) -> dict[str, str]:
    operator = config.operators.get(venue.operator)
    return {
        "id": venue.id,
        "name": venue.name.get(lang, venue.id),
        "type": VENUE_TYPES[venue.type][lang] if venue.type in VENUE_TYPES else venue.type,
        "district": venue.district,
        "operator": operator.name.get(lang, operator.id) if operator else venue.operator,
    }


def mask_phone(e164: str) -> str:
    """``+8613800138000`` -> ``138****8000``; other countries keep their prefix."""
    national = e164[3:] if e164.startswith("+86") else e164
    return f"{national[:3]}****{national[-4:]}" if len(national) > 7 else "****"


def moment(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} ({value.tzinfo})"


def render(
    catalog: Catalog,
    config: Config,
    template: str,
    *,
    lang: str,
    switch_url: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **values: Any,
) -> web.Response:
    """A page in ``lang`` with the brand, the language switch and the standard headers."""
    brand = config.brand

    def t(key: str, **kw: Any) -> str:
        return catalog.text(lang, key, **kw)

    context: dict[str, Any] = {
        "t": t,
        "lang": lang,
        "html_lang": HTML_LANG[lang],
        "other_html_lang": HTML_LANG[other(lang)],
        "other_lang_name": catalog.text(other(lang), "lang_name"),
        "switch_url": switch_url,
        "brand": brand.name.get(lang) or brand.ssid,
        "ssid": brand.ssid,
        "daily": format_duration(config.quota.daily_seconds, lang),
        "script": False,
        "footer_status": False,
    }
    context.update(values)
    body = _env.get_template(template).render(context)
    response = web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
