"""The console's pages, rendered on the server (Jinja2, ``portal_pages/console``; no
outside assets: styles inline, one small inline script with a per-response nonce)."""

from __future__ import annotations

import secrets
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from controller.services.overview import CityOverview, memory_text
from controller.web.console import lang as lang_

REFRESH_SECONDS = 3  # the overview's polling period


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("portal_pages", "console"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def html(text: str, nonce: str = "", status: int = 200) -> web.Response:
    response = web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
    script = f"script-src 'nonce-{nonce}'; " if nonce else ""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'unsafe-inline'; {script}connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


def render(template: str, *, lang: str | None = None, **values: Any) -> str:
    """A page in ``lang`` (``controller.web.console.lang``): its templates say each text
    as ``t("key")``. A page rendered without a ``lang`` is an untranslated one: English,
    and no language switch in the header (it would not change the page)."""
    chosen = lang or lang_.DEFAULT
    return (
        environment()
        .get_template(template)
        .render(
            t=lang_.translator(chosen),
            code=lambda prefix, c: lang_.code_name(chosen, prefix, c),
            lang=chosen,
            html_lang=lang_.HTML_LANG[chosen],
            lang_switch=lang is not None,
            venue_type=lambda type_id: lang_.venue_type(chosen, type_id),
            **values,
        )
    )


def overview_json(o: CityOverview, tz: ZoneInfo, lang: str = lang_.DEFAULT) -> dict[str, Any]:
    """What the page shows, as its polling fetch reads it (and the first render), with
    its words in ``lang`` (the page's language: the figures polled match the page)."""
    t = lang_.translator(lang)

    def clock(at: int | None) -> str:
        return datetime.fromtimestamp(at, tz).strftime("%H:%M:%S") if at else t("time.never")

    def figure(n: int | None) -> int | str:
        return "—" if n is None else n

    return {
        "scope": sorted(o.scope) if o.scope is not None else None,
        "persons": figure(o.persons),
        "sessions": figure(o.sessions),
        "by_type": [[lang_.venue_type(lang, t_id), n] for t_id, n in o.sessions_by_type],
        "counted": clock(o.counted_at),
        "redis_memory": memory_text(o.redis_used, o.redis_limit) if o.scope is None else "—",
        "outbox_backlog": figure(o.outbox_backlog),
        "nas": [
            {
                "client": n.client,
                "seen": clock(n.last_seen)
                + (t("overview.silent_for", minutes=n.silent_for // 60) if n.silent_for else ""),
                "silent": n.silent_for is not None,
            }
            for n in o.nas
        ],
    }


def nonce() -> str:
    return secrets.token_urlsafe(16)
