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
from controller.services.live_sessions import SessionFilter, live_sessions
from controller.services.nas_stats import nas_detail, nas_rows, scope_figures, scoped
from controller.storage.store import Store, StoreUnavailable
from controller.web.console import guard, pages
from controller.web.console.common import brand
from controller.web.errors import render_json
from controller.web.resources import CLOCK, LIVE, STORE

PATH = f"{guard.PATH}/nas"
API = f"{guard.PATH}/api/nas"
ONE = "{client}"


def _clock(at: int | None, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(at, tz).strftime("%H:%M:%S") if at else "never"


def silent_text(h: NasHealth) -> str:
    if h.silent_for is None:
        return ""
    if h.never:
        return "silent: never heard from"
    return f"silent for {h.silent_for // 60} min"


def row_json(h: NasHealth, tz: ZoneInfo) -> dict[str, Any]:
    ratio = h.disconnect_ratio
    return {
        "client": h.client,
        "venue": h.venue,
        "operator": h.operator,
        "last_request": _clock(h.last_request, tz),
        "last_request_at": h.last_request,
        "silent": h.silent_for is not None,
        "silent_for": h.silent_for,
        "state": silent_text(h) or "talking",
        "per_second": h.per_second,
        "requests": h.requests,
        "drops": h.drops,
        "disconnects": h.disconnects,
        "disconnect_ratio": None if ratio is None else round(ratio, 3),
        "disconnect_text": "—" if ratio is None else f"{ratio:.0%}",
        "open_sessions": h.open_sessions,
    }


async def list_json(store: Store, config: Config, now: int, account: Account) -> dict[str, Any]:
    scope = operator_scope(account)
    rows = await nas_rows(store, config, now, scope)
    tz = config.quota.timezone
    return {
        "scope": sorted(scope) if scope is not None else None,
        "at": _clock(now, tz),
        "nas": [row_json(h, tz) for h in rows],
    }


def _chart(bins: list[tuple[int, int]], tz: ZoneInfo) -> str:
    return day_chart(
        [Line("req", "requests", bins)], tz, title="Requests, last 24 h (30 min)", unit="requests"
    )


async def detail_json(
    store: Store, config: Config, now: int, account: Account, client: str
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
    return {
        **row_json(d.health, tz),
        "totals": d.totals,
        "recent": [
            {"minute": datetime.fromtimestamp(m * 60, tz).strftime("%H:%M")}
            | {s: series.get(s, 0) for s in SERIES}
            for m, series in d.recent
        ],
        "chart": _chart(d.chart, tz),
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
    store: Store, config: Config, now: int, scope: frozenset[str] | None
) -> dict[str, Any]:
    f = await scope_figures(store, now, scope)
    tz = config.quota.timezone
    labels = {"accept": "logins", "reject": "rejects", "drop": "drops"}
    return {
        "logins_per_minute": f.logins_per_minute,
        "rejects": [[reason, n] for reason, n in sorted(f.rejects.items(), key=lambda x: -x[1])],
        "disconnects": {k: f.disconnects.get(k, 0) for k in ("ack", "nak", "timeout")},
        "sms": "—" if f.sms is None else {k: f.sms.get(k, 0) for k in ("ok", "failed")},
        "chart": day_chart(
            [Line(s, labels[s], bins) for s, bins in f.chart.items()],
            tz,
            title="Logins, rejects and drops, last 24 h (30 min)",
            unit="requests",
        ),
    }


async def _signed(request: web.Request, route: str) -> Account | web.Response:
    """The page's account; the sign-in form without a session, 403 without the role."""
    account = await guard.signed_in(request)
    if account is None:
        raise web.HTTPSeeOther(f"{guard.PATH}/login")
    if not guard.may(account, "GET", route):
        token = guard.form_token(request)[0]
        needed = " or ".join(sorted(guard.ROUTE_ROLES[("GET", route)]))
        return pages.html(
            pages.render(
                "forbidden.html",
                title="Not allowed",
                brand=brand(request),
                user=account.name,
                csrf=token,
                needed=needed,
            ),
            status=403,
        )
    return account


def _page(
    request: web.Request, account: Account, template: str, title: str, **values: Any
) -> web.Response:
    token, nonce, new = guard.form_token(request)
    script_nonce = pages.nonce()
    response = pages.html(
        pages.render(
            template,
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
    return response


def _now(request: web.Request) -> int:
    return int(request.app[CLOCK]())


async def nas_page(request: web.Request) -> web.Response:
    """``GET /console/nas``."""
    account = await _signed(request, PATH)
    if isinstance(account, web.Response):
        return account
    try:
        body = await list_json(request.app[STORE], request.app[LIVE].config, _now(request), account)
    except StoreUnavailable:
        return pages.html("Redis is not answering; retry shortly.", status=503)
    return _page(request, account, "nas.html", "NAS health", n=body)


async def nas_one_page(request: web.Request) -> web.Response:
    """``GET /console/nas/{client}``."""
    account = await _signed(request, f"{PATH}/{ONE}")
    if isinstance(account, web.Response):
        return account
    client = request.match_info["client"]
    try:
        body = await detail_json(
            request.app[STORE], request.app[LIVE].config, _now(request), account, client
        )
    except RequestError as exc:
        return pages.html(
            pages.render(
                "nas_refused.html",
                title="Not allowed" if exc.status == 403 else "No such NAS",
                brand=brand(request),
                user=account.name,
                csrf=guard.form_token(request)[0],
                message=exc.message,
                client=client,
            ),
            status=exc.status,
        )
    except StoreUnavailable:
        return pages.html("Redis is not answering; retry shortly.", status=503)
    return _page(request, account, "nas_one.html", f"NAS {client}", d=body)


async def _api(request: web.Request, route: str) -> tuple[Account, Store, Config, int]:
    account = await guard.signed_in(request)
    if account is None:
        raise RequestError("unauthorized", 401, "sign in on /console/login")
    if not guard.may(account, "GET", route):
        raise RequestError("forbidden", 403, "this account has no role for this page")
    return account, request.app[STORE], request.app[LIVE].config, _now(request)


def _json(body: dict[str, Any]) -> web.Response:
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


async def nas_api(request: web.Request) -> web.Response:
    """``GET /console/api/nas``: the NAS health page's figures."""
    try:
        account, store, config, now = await _api(request, API)
        return _json(await list_json(store, config, now, account))
    except RequestError as exc:
        return render_json(request, exc)
    except StoreUnavailable:
        return render_json(
            request, RequestError("store_unavailable", 503, "Redis is not answering; retry")
        )


async def nas_one_api(request: web.Request) -> web.Response:
    """``GET /console/api/nas/{client}``: one client's figures."""
    try:
        account, store, config, now = await _api(request, f"{API}/{ONE}")
        body = await detail_json(store, config, now, account, request.match_info["client"])
        return _json(body)
    except RequestError as exc:
        return render_json(request, exc)
    except StoreUnavailable:
        return render_json(
            request, RequestError("store_unavailable", 503, "Redis is not answering; retry")
        )


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, nas_page)
    app.router.add_get(f"{PATH}/{ONE}", nas_one_page)
    app.router.add_get(API, nas_api)
    app.router.add_get(f"{API}/{ONE}", nas_one_api)
