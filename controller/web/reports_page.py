"""The IT bureau's report page: a calendar month (or a chosen range) at a glance,
rendered on the server (Jinja2 templates in ``portal_pages/reports``, SVG charts), in
Chinese or English, with a period picker that needs no JavaScript (two GET forms)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib import resources
from urllib.parse import urlencode

import jinja2

from controller.config import Config
from controller.domain.periods import FIRST_DAY, Period, month_period, month_start
from controller.domain.venue_types import VENUE_TYPES
from controller.services.reports.charts import series_by_key, stacked_bars
from controller.services.reports.dashboard import Dashboard

LANGUAGES = (("zh", "中文"), ("en", "English"))
MONTHS_OFFERED = 24  # the month picker's choices: this month and the 23 before it
EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Picker:
    """What the period picker shows: the chosen month ("" for a range) or range."""

    month: str  # YYYY-MM when the period is exactly one calendar month
    first: str  # the range fields' values (as given, when they were refused)
    last: str
    months: list[tuple[str, str]]  # (YYYY-MM, label), newest first
    max_days: int
    keep: str  # the period's query string (kept by the language links), "" for none


def month_label(first: date, lang: str) -> str:
    if lang == "zh":
        return f"{first.year}年{first.month}月"
    return f"{EN_MONTHS[first.month - 1]} {first.year}"


def picker(
    today: date,
    lang: str,
    max_days: int,
    period: Period | None,
    given: dict[str, str],
) -> Picker:
    """The picker for ``period`` (None: refused, the fields keep what was ``given``)."""
    month = ""
    if period is not None and month_period(period.first) == period:
        month = period.first.strftime("%Y-%m")
    months: list[tuple[str, str]] = []
    day = month_start(today)
    for _ in range(MONTHS_OFFERED):
        months.append((day.strftime("%Y-%m"), month_label(day, lang)))
        if day <= FIRST_DAY:
            break
        day = month_start(day - timedelta(days=1))
    if month and month not in {m for m, _ in months}:
        months.append((month, month_label(period.first, lang) if period else month))
    if period is not None:
        first, last = period.first.isoformat(), period.last.isoformat()
        keep = {"month": month} if month else {"from": first, "to": last}
    else:
        first, last = given.get("from", ""), given.get("to", "")
        keep = {}
    return Picker(month, first, last, months, max_days, urlencode(keep))


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


def render_dashboard(
    config: Config, d: Dashboard | None, lang: str, csrf: str, pick: Picker, error: str = ""
) -> str:
    """The page: the picker, then the figures of ``d`` (None: the period was refused
    and ``error`` says why)."""
    t = messages()[lang]
    common = {
        "t": t,
        "lang": lang,
        "languages": LANGUAGES,
        "brand": config.brand.name[lang],
        "tz": config.quota.timezone.key,
        "pick": pick,
        "error": error,
        "csrf": csrf,
    }
    template = environment().get_template("dashboard.html")
    if d is None:
        return template.render(**common, d=None, keep="")
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
    return template.render(
        **common,
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
        keep=pick.keep,
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
