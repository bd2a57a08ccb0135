"""The IT bureau's report page: the last 30 days at a glance, rendered on the server
(Jinja2 templates in ``portal_pages/reports``, SVG charts), in Chinese or English."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import jinja2

from controller.config import Config
from controller.domain.venue_types import VENUE_TYPES
from controller.services.reports.charts import series_by_key, stacked_bars
from controller.services.reports.dashboard import Dashboard

LANGUAGES = (("zh", "中文"), ("en", "English"))


@cache
def messages() -> dict[str, dict[str, str]]:
    text = resources.files("portal_pages").joinpath("reports", "messages.json").read_text("utf-8")
    data: dict[str, dict[str, str]] = json.loads(text)
    return data


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("portal_pages", "reports"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def pick_language(query: str | None, accept_language: str) -> str:
    if query in ("zh", "en"):
        return query
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


def render_dashboard(config: Config, d: Dashboard, lang: str, csrf: str) -> str:
    t = messages()[lang]
    type_keys = list(VENUE_TYPES)
    labels = {k: VENUE_TYPES[k][lang] for k in type_keys}
    series = series_by_key(d.days, d.hours_by_type, type_keys, labels)
    chart = stacked_bars(
        d.days,
        series,
        open_days=frozenset(d.open_days),
        title=t["chart_title"],
        unit=t["hours"],
        open_label=t["open"],
    )
    return (
        environment()
        .get_template("dashboard.html")
        .render(
            t=t,
            lang=lang,
            languages=LANGUAGES,
            brand=config.brand.name[lang],
            tz=config.quota.timezone.key,
            first=d.first.isoformat(),
            last=d.last.isoformat(),
            d=d,
            chart=chart,
            legend=[(s.color, s.label) for s in series],
            open_days=[x.isoformat() for x in d.open_days],
            groups=[
                ("venue", t["detail"]),
                ("venue_type", t["by_venue_type"]),
                ("district", t["by_district"]),
                ("operator", t["by_operator"]),
            ],
            formats=("csv", "xlsx", "json"),
            csrf=csrf,
        )
    )


def render_login(config: Config, lang: str, csrf: str, error: str = "") -> str:
    return (
        environment()
        .get_template("login.html")
        .render(
            t=messages()[lang],
            lang=lang,
            languages=LANGUAGES,
            brand=config.brand.name[lang],
            csrf=csrf,
            error=error,
        )
    )
