"""The console's languages: English (default) and Simplified Chinese.

Choice as the portal makes it (``controller.services.portal.i18n``): an explicit
``?lang=`` (the header's switch link; ``zh``, ``zh-CN``, ``en``, …), then the
``cw_console_lang`` cookie the switch leaves (``Path=/console``), then
``Accept-Language``; with none of them, English. Texts live in
``portal_pages/i18n/console.en.json`` and ``console.zh-CN.json``; both must hold the
same keys (checked when loaded), and templates say every text as ``t("key")``: an
unknown key is an error, never a silently English page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

from aiohttp import web

from controller.domain.venue_types import VENUE_TYPES
from controller.services.portal.i18n import parse_accept_language, supported

LANGS: Final = ("en", "zh")
DEFAULT: Final = "en"
HTML_LANG: Final = {"en": "en", "zh": "zh-CN"}
COOKIE: Final = "cw_console_lang"
COOKIE_AGE: Final = 365 * 86400

Translate = Callable[..., str]


class _Keep(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@cache
def catalogue() -> Mapping[str, Mapping[str, str]]:
    folder = resources.files("portal_pages").joinpath("i18n")
    messages = {
        lang: json.loads(folder.joinpath(f"console.{HTML_LANG[lang]}.json").read_text("utf-8"))
        for lang in LANGS
    }
    differ = set(messages["en"]) ^ set(messages["zh"])
    if differ:
        raise ValueError(f"console catalogues differ in keys: {sorted(differ)}")
    return messages


def text(lang: str, key: str, **values: Any) -> str:
    """One message in ``lang``; ``KeyError`` for a key the catalogues do not have."""
    return catalogue()[lang][key].format_map(_Keep(values))


def translator(lang: str) -> Translate:
    def t(key: str, **values: Any) -> str:
        return text(lang, key, **values)

    return t


def code_name(lang: str, prefix: str, code: str) -> str:
    """The name of a code the server produces (a NAS answer, a kind of change) in
    ``lang``: ``prefix + code`` from the catalogue, the code itself when it has none (a
    code added later must not break the page)."""
    return catalogue()[lang].get(prefix + code, code)


def venue_type(lang: str, type_id: str) -> str:
    """A venue type's name in ``lang`` (``VENUE_TYPES``), its id when it has none."""
    return VENUE_TYPES.get(type_id, {}).get(lang, type_id)


def error_text(lang: str, code: str, message: str, **values: Any) -> str:
    """A service error (``RequestError`` code and English message) in ``lang``: the
    catalogue's ``error.<code>`` when it has one, else the service's own message."""
    key = f"error.{code}"
    return text(lang, key, **values) if key in catalogue()[lang] else message


def choose(explicit: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (explicit, cookie):
        lang = supported(candidate)
        if lang in LANGS:
            return lang
    for tag in parse_accept_language(accept_language or ""):
        lang = supported(tag)
        if lang in LANGS:
            return lang
    return DEFAULT


def of(request: web.Request) -> str:
    """The language of this request's page."""
    return choose(
        request.query.get("lang"),
        request.cookies.get(COOKIE),
        request.headers.get("Accept-Language"),
    )


def remember(request: web.Request, response: web.StreamResponse) -> None:
    """An explicit, known ``?lang=`` is kept in the cookie for the next pages."""
    lang = supported(request.query.get("lang"))
    if lang in LANGS and request.cookies.get(COOKIE) != lang:
        response.set_cookie(
            COOKIE,
            str(lang),
            max_age=COOKIE_AGE,
            path="/console",
            secure=True,
            httponly=True,
            samesite="Strict",
        )
