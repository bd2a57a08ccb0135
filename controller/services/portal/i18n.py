"""Languages of the portal: zh-CN (default) and en.

Choice: an explicit ``lang`` (the page's switch link, a form field or the JSON body),
then the ``cw_lang`` cookie the switch leaves, then ``Accept-Language`` (RFC 9110
§12.5.4: weighted ranges, ``q=0`` means "not acceptable"), then zh-CN. Texts live in
``portal_pages/i18n/<tag>.json``; every key must exist in both catalogues.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final

LANGS: Final = ("zh", "en")
DEFAULT: Final = "zh"
HTML_LANG: Final = {"zh": "zh-CN", "en": "en"}
LANG_COOKIE: Final = "cw_lang"


def supported(tag: str | None) -> str | None:
    """``zh``, ``zh-CN``, ``zh-Hans-CN``, ``ZH_tw`` -> "zh"; ``en-GB`` -> "en"; else None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGS else None


def parse_accept_language(header: str) -> list[str]:
    """Language ranges by preference (highest q first, header order among equals)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(
    explicit: str | None = None, cookie: str | None = None, accept_language: str | None = None
) -> str:
    for candidate in (explicit, cookie):
        lang = supported(candidate)
        if lang:
            return lang
    for tag in parse_accept_language(accept_language or ""):
        if tag == "*":
            return DEFAULT
        lang = supported(tag)
        if lang:
            return lang
    return DEFAULT


class _Keep(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Catalog:
    """Both catalogues, loaded once; ``text(lang, key, **values)`` formats one message."""

    def __init__(self, messages: Mapping[str, Mapping[str, str]]) -> None:
        self.messages = messages
        missing = {
            lang: sorted(set(messages[DEFAULT]) ^ set(messages[lang]))
            for lang in LANGS
            if set(messages[lang]) != set(messages[DEFAULT])
        }
        if missing:
            raise ValueError(f"portal catalogues differ in keys: {missing}")

    @classmethod
    def load(cls) -> Catalog:
        folder = resources.files("portal_pages").joinpath("i18n")
        return cls(
            {
                lang: json.loads(folder.joinpath(f"{HTML_LANG[lang]}.json").read_text("utf-8"))
                for lang in LANGS
            }
        )

    def text(self, lang: str, key: str, **values: Any) -> str:
        return self.messages[lang][key].format_map(_Keep(values))

    def has(self, key: str) -> bool:
        return key in self.messages[DEFAULT]


def format_duration(seconds: int, lang: str) -> str:
    """``7140`` -> ``1小时59分钟`` / ``1 h 59 min``; ``7200`` -> ``2小时`` / ``2 h``
    (whole minutes, rounded down: never promise a minute that is not there)."""
    hours, minutes = divmod(max(0, seconds) // 60, 60)
    h, m = ("小时", "分钟") if lang == "zh" else (" h", " min")
    parts = ([f"{hours}{h}"] if hours else []) + ([f"{minutes}{m}"] if minutes or not hours else [])
    return ("" if lang == "zh" else " ").join(parts)
