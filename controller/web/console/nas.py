"""The console's NAS health (issue 17): ``GET /console/nas`` (every configured client of
the account's view: last request seen, requests/s over the last minute, drops by
reason, Disconnect success ratio, open sessions, "silent for N min"), the drill-down
``GET /console/nas/{client}`` (its counters, the last 60 minute buckets, a day chart and
its open sessions), and their JSON twins under ``/console/api/nas`` that the pages poll.

The figures are those ``/metrics`` exports as ``citywifi_nas_*``, read from the same
Redis keys (``controller.services.nas_stats``). An operator-scoped account
(``operator:<id>``) sees only the clients at its operator's venues; another client's
drill-down is refused (403), an unknown one is 404.

Also here: the overview's extra figures (``overview_figures``: logins per minute,
rejects by reason, Disconnect results, SMS sent/failed, the day chart), merged into
``/console/api/overview`` by ``routes``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from controller.config import Config
from controller.domain.accounts import Account, operator_scope
from controller.domain.nas_health import SERIES, NasHealth
from controller.services.day_chart import Line, day_chart
from controller.services.errors import RequestError
from controller.services.live_sessions import LiveSession, SessionFilter, live_sessions
from controller.services.nas_stats import (
    NasDetail,
    ScopeFigures,
    nas_detail,
    nas_rows,
    scope_figures,
    scoped,
)
from controller.storage.store import Store, StoreUnavailable
from controller.web.console import guard, lang, pages
from controller.web.console.common import (
    allowed,
    brand,
    no_store_json,
    polled_page,
    unavailable,
    unavailable_json,
)
from controller.web.errors import render_json
from controller.web.resources import CLOCK, LIVE, STORE

PATH = f"{guard.PATH}/nas"
API = f"{guard.PATH}/api/nas"
ONE = "{client}"


def _clock(at: int | None, tz: ZoneInfo, language: str = lang.DEFAULT) -> str:
    if not at:
        return lang.text(language, "time.never")
    return datetime.fromtimestamp(at, tz).strftime("%H:%M:%S")


def silent_text(h: NasHealth, language: str = lang.DEFAULT) -> str:
    if h.silent_for is None:
        return ""
    if h.never:
        return lang.text(language, "nas.never_heard")
    return lang.text(language, "nas.silent_for", minutes=h.silent_for // 60)


def drops_text(drops: dict[str, int], language: str) -> str:
    """Drops by reason as the page says them ("overload 2, malformed 1"; none: "0")."""
    named = (f"{lang.code_name(language, 'drop.', r)} {k}" for r, k in drops.items())
    return lang.text(language, "list.separator").join(named) or "0"


def counter_name(field: str, language: str) -> str:
    """A counter field (``auth:accept``, ``reject:bad_password``, ``drop:overload``, …;
    ``radius.tally``) in words: its group, then the code named in its own namespace."""
    group, _, code = field.partition(":")
    spaces = {"reject": "reject.", "drop": "drop.", "dis": "dae.", "coa": "dae."}
    return lang.text(
        language,
        "nas.counter",
        group=lang.code_name(language, "counter.", group),
        what=lang.code_name(language, spaces.get(group, "answer."), code),
    )


def row_json(h: NasHealth, tz: ZoneInfo, language: str = lang.DEFAULT) -> dict[str, Any]:
    ratio = h.disconnect_ratio
    return {
        "client": h.client,
        "venue": h.venue,
        "operator": h.operator,
        "last_request": _clock(h.last_request, tz, language),
        "last_request_at": h.last_request,
        "silent": h.silent_for is not None,
        "silent_for": h.silent_for,
        "state": silent_text(h, language) or lang.text(language, "nas.talking"),
        "per_second": h.per_second,
        "requests": h.requests,
        "drops": h.drops,
        "drops_text": drops_text(h.drops, language),
        "disconnects": h.disconnects,
        "disconnect_ratio": None if ratio is None else round(ratio, 3),
        "disconnect_text": "—" if ratio is None else f"{ratio:.0%}",
        "open_sessions": h.open_sessions,
    }


async def list_json(
    store: Store, config: Config, now: int, account: Account, language: str = lang.DEFAULT
) -> dict[str, Any]:
    scope = operator_scope(account)
    rows = await nas_rows(store, config, now, scope)
    tz = config.quota.timezone
    return {
        "scope": sorted(scope) if scope is not None else None,
        "at": _clock(now, tz, language),
        "nas": [row_json(h, tz, language) for h in rows],
    }


def _chart(bins: list[tuple[int, int]], tz: ZoneInfo, language: str) -> str:
    t = lang.translator(language)
    return day_chart(
        [Line("req", t("chart.requests"), bins)],
        tz,
        title=t("chart.nas_title"),
        unit=t("chart.unit"),
    )


async def detail_json(
    store: Store,
    config: Config,
    now: int,
    account: Account,
    client: str,
    language: str = lang.DEFAULT,
) -> dict[str, Any]:
    """One client, or a ``RequestError``: 404 not configured, 403 not in the view."""
    scope = operator_scope(account)
    if client not in {c.id for c in config.clients}:
        raise RequestError("no_such_client", 404, "no such RADIUS client is configured")
    if client not in {c for c, _, _ in scoped(config, scope)}:
        raise RequestError("forbidden", 403, "this NAS is not at your operator's venues")
    d = await nas_detail(store, config, client, now)
    assert d is not None
    tz = config.quota.timezone
    sessions = await live_sessions(store, config, SessionFilter(client=client), scope)
    return detail_body(d, sessions, tz, language)


def detail_body(
    d: NasDetail, sessions: list[LiveSession], tz: ZoneInfo, language: str = lang.DEFAULT
) -> dict[str, Any]:
    """One client's drill-down as the page and its JSON say it (words in ``language``)."""
    return {
        **row_json(d.health, tz, language),
        "totals": d.totals,
        "totals_named": {k: counter_name(k, language) for k in d.totals},
        "recent": [
            {"minute": datetime.fromtimestamp(m * 60, tz).strftime("%H:%M")}
            | {s: series.get(s, 0) for s in SERIES}
            for m, series in d.recent
        ],
        "chart": _chart(d.chart, tz, language),
        "sessions": [
            {
                "ref": s.ref,
                "person": s.person,
                "mac": s.mac,
                "ip": s.ip,
                "venue": s.venue,
                "start": s.start,
                "last_report": s.last_report,
            }
            for s in sessions
        ],
    }


async def overview_figures(
    store: Store,
    config: Config,
    now: int,
    scope: frozenset[str] | None,
    language: str = lang.DEFAULT,
) -> dict[str, Any]:
    """The overview's counters. The rejects stay by reason code (``rejects``:
    ``[code, n]``, as ``/metrics`` labels them), named in ``language`` in
    ``reject_names``."""
    return figures_json(await scope_figures(store, now, scope), config.quota.timezone, language)


def figures_json(f: ScopeFigures, tz: ZoneInfo, language: str = lang.DEFAULT) -> dict[str, Any]:
    """``overview_figures`` from figures already read."""
    t = lang.translator(language)
    labels = {"accept": t("chart.logins"), "reject": t("chart.rejects"), "drop": t("chart.drops")}
    rejects = sorted(f.rejects.items(), key=lambda x: -x[1])
    return {
        "logins_per_minute": f.logins_per_minute,
        "rejects": [[reason, n] for reason, n in rejects],
        "reject_names": {r: lang.code_name(language, "reject.", r) for r, _ in rejects},
        "disconnects": {k: f.disconnects.get(k, 0) for k in ("ack", "nak", "timeout")},
        "sms": "—" if f.sms is None else {k: f.sms.get(k, 0) for k in ("ok", "failed")},
        "chart": day_chart(
            [Line(s, labels[s], bins) for s, bins in f.chart.items()],
            tz,
            title=t("chart.overview_title"),
            unit=t("chart.unit"),
        ),
    }


def _now(request: web.Request) -> int:
    return int(request.app[CLOCK]())


async def nas_page(request: web.Request) -> web.Response:
    """``GET /console/nas``."""
    account = await allowed(request, ("GET", PATH))
    if isinstance(account, web.Response):
        return account
    language = lang.of(request)
    try:
        body = await list_json(
            request.app[STORE], request.app[LIVE].config, _now(request), account, language
        )
    except StoreUnavailable:
        return unavailable(request)
    return polled_page(request, account, "nas.html", lang.text(language, "nas.title"), n=body)


async def nas_one_page(request: web.Request) -> web.Response:
    """``GET /console/nas/{client}``."""
    account = await allowed(request, ("GET", f"{PATH}/{ONE}"))
    if isinstance(account, web.Response):
        return account
    client = request.match_info["client"]
    language = lang.of(request)
    try:
        body = await detail_json(
            request.app[STORE], request.app[LIVE].config, _now(request), account, client, language
        )
    except RequestError as exc:
        title = "forbidden.title" if exc.status == 403 else "nas.no_such_title"
        response = pages.html(
            pages.render(
                "nas_refused.html",
                lang=language,
                title=lang.text(language, title),
                brand=brand(request),
                user=account.name,
                csrf=guard.form_token(request)[0],
                message=lang.error_text(language, f"nas.{exc.code}", exc.message),
                client=client,
            ),
            status=exc.status,
        )
        lang.remember(request, response)
        return response
    except StoreUnavailable:
        return unavailable(request)
    title = lang.text(language, "nas.one_title", client=client)
    return polled_page(request, account, "nas_one.html", title, d=body)


async def _api(request: web.Request, route: str) -> tuple[Account, Store, Config, int]:
    account = await guard.require(request, page=False, route=("GET", route))
    return account, request.app[STORE], request.app[LIVE].config, _now(request)


async def nas_api(request: web.Request) -> web.Response:
    """``GET /console/api/nas``: the NAS health page's figures (words in the page's
    language: ``?lang=``, the language cookie, ``Accept-Language``)."""
    try:
        account, store, config, now = await _api(request, API)
        return no_store_json(await list_json(store, config, now, account, lang.of(request)))
    except RequestError as exc:
        return render_json(request, exc)
    except StoreUnavailable:
        return unavailable_json(request)


async def nas_one_api(request: web.Request) -> web.Response:
    """``GET /console/api/nas/{client}``: one client's figures (language as above)."""
    try:
        account, store, config, now = await _api(request, f"{API}/{ONE}")
        client = request.match_info["client"]
        body = await detail_json(store, config, now, account, client, lang.of(request))
        return no_store_json(body)
    except RequestError as exc:
        return render_json(request, exc)
    except StoreUnavailable:
        return unavailable_json(request)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, nas_page)
    app.router.add_get(f"{PATH}/{ONE}", nas_one_page)
    app.router.add_get(API, nas_api)
    app.router.add_get(f"{API}/{ONE}", nas_one_api)
