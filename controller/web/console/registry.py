"""``GET /console/registry`` (and its JSON, ``GET /console/api/registry``): venues,
access points and clients as loaded, which clients are traced (by config or by the
switch), and the config reload status: this process's counts
(``controller.services.registry_view``) and the last reload of any process as
``Controller.reload`` recorded it in Redis (``controller.services.reload_status``: when,
applied or refused with check-config's words, what changed). Operator accounts see their
own venues and clients, and of the reload only when and whether."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from controller.config import Config
from controller.domain.accounts import Account, operator_scope
from controller.services.errors import RequestError
from controller.services.registry_view import RegistryView, registry_view
from controller.services.reload_status import ReloadRecord, last_reload
from controller.storage.accounts import AccountStore
from controller.storage.store import StoreUnavailable
from controller.storage.trace import TraceStore
from controller.web.console import guard, lang, pages
from controller.web.console.common import allowed, allowed_form, brand
from controller.web.errors import render_json
from controller.web.resources import CLOCK, LIVE, STORE

PATH = f"{guard.PATH}/registry"
TRACE_PATH = f"{PATH}/trace"
API_PATH = f"{guard.PATH}/api/registry"


async def _read(
    request: web.Request, account: Account
) -> tuple[RegistryView, frozenset[str], frozenset[str], ReloadRecord | None, bool]:
    """The view, the clients traced by the switch, those traced by config, the last
    reload (scoped), and whether Redis answered."""
    config: Config = request.app[LIVE].config
    scope = operator_scope(account)
    view = registry_view(config, scope, lang.of(request))
    ids = [c.id for c in view.clients]
    by_config = frozenset(c.id for c in config.clients if c.trace and c.id in set(ids))
    try:
        switched = await TraceStore(request.app[STORE]).active(ids)
        reload = await last_reload(request.app[STORE])
        answered = True
    except StoreUnavailable:
        switched, reload, answered = frozenset(), None, False
    if reload is not None and scope is not None:
        reload = reload.scoped()
    return view, switched, by_config, reload, answered


def _clock(request: web.Request, at: int) -> str:
    tz = request.app[LIVE].config.quota.timezone
    return datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d %H:%M:%S") if at else ""


def change_lines(changes: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, what, ids) rows of a reload's changes, for the page."""
    rows: list[tuple[str, str, str]] = []
    for kind, diff in sorted(changes.items()):
        if kind == "settings":
            rows.append((kind, "changed", ", ".join(diff)))
            continue
        for what in ("added", "removed", "changed"):
            ids = diff.get(what)
            if not ids:
                continue
            if isinstance(ids, dict) and "first" in ids:
                text = ", ".join(ids["first"]) + f" (+{ids['more']})"
            elif isinstance(ids, dict):
                text = ", ".join(f"{k} ({', '.join(v)})" for k, v in ids.items())
            else:
                text = ", ".join(ids)
            rows.append((kind, what, text))
    return rows


async def registry_page(request: web.Request) -> web.Response:
    account = await allowed(request)
    if isinstance(account, web.Response):
        return account
    token, nonce, new = guard.form_token(request)
    scope = operator_scope(account)
    view, switched, by_config, reload, _ = await _read(request, account)
    language = lang.of(request)
    response = pages.html(
        pages.render(
            "registry.html",
            lang=language,
            title=lang.text(language, "registry.title"),
            brand=brand(request),
            user=account.name,
            csrf=token,
            r=view,
            scope=sorted(scope) if scope is not None else None,
            traced=switched | by_config,
            by_config=by_config,
            can_trace=guard.may(account, "POST", TRACE_PATH),
            notice=request.query.get("notice", "")[:200],
            last=reload,
            last_at=_clock(request, reload.at) if reload else "",
            changes=change_lines(dict(reload.changes)) if reload else [],
        )
    )
    if new:
        guard.set_nonce(response, nonce)
    lang.remember(request, response)
    return response


async def registry_api(request: web.Request) -> web.Response:
    """``GET /console/api/registry``: what the page shows, as JSON."""
    try:
        account = await guard.require(request, page=False)
    except RequestError as exc:
        return render_json(request, exc)
    view, switched, by_config, reload, answered = await _read(request, account)
    scope = operator_scope(account)
    last: dict[str, Any] | None = None
    if reload is not None:
        last = {**reload.to_json(), "at_local": _clock(request, reload.at)}
        if scope is not None:  # when and whether only
            last = {k: last[k] for k in ("at", "at_local", "result")}
    body = {
        "scope": sorted(scope) if scope is not None else None,
        "source": view.source if scope is None else None,
        "venues": [asdict(v) for v in view.venues],
        "clients": [
            {
                **asdict(c),
                "trace": "config" if c.id in by_config else "on" if c.id in switched else "off",
            }
            for c in view.clients
        ],
        "reload": {
            "process": asdict(view.reload),  # this process's counts (/metrics)
            "last": last,
            "redis": answered,
        },
    }
    response = web.json_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


async def trace_switch(request: web.Request) -> web.Response:
    """``POST /console/registry/trace`` (form: client, minutes 0-60, csrf; admin,
    operations): turn one client's RADIUS trace on for N minutes (0: off); what it
    traces is read with ``citywifi trace --client ID`` or in the ``radius.trace`` logs.
    A client with ``trace = true`` in the config stays traced whatever the switch says."""
    signed = await allowed_form(request)
    if isinstance(signed, web.Response):
        return signed
    account, form = signed
    language = lang.of(request)
    client, minutes = form.get("client", ""), form.get("minutes", "").strip()
    if client not in {c.id for c in request.app[LIVE].config.clients}:
        return pages.html(lang.text(language, "error.no_such_client"), status=400)
    if not (minutes.isascii() and minutes.isdigit() and int(minutes) <= 60):
        return pages.html(lang.text(language, "error.bad_minutes"), status=400)
    db = TraceStore(request.app[STORE])
    try:
        if int(minutes):
            await db.on(client, int(minutes) * 60, f"console:{account.name}")
        else:
            await db.off(client)
        await AccountStore(request.app[STORE]).audit(
            {
                "t": str(int(request.app[CLOCK]())),
                "user": account.name,
                "action": "trace",
                "target": client,
                "result": f"{minutes} min" if int(minutes) else "off",
                "address": guard.address(request),
            }
        )
    except StoreUnavailable:
        return pages.html(lang.text(language, "error.unavailable"), status=503)
    notice = (
        lang.text(language, "registry.trace_notice_on", client=client, minutes=int(minutes))
        if int(minutes)
        else lang.text(language, "registry.trace_notice_off", client=client)
    )
    raise web.HTTPSeeOther(f"{PATH}?{urlencode({'notice': notice})}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, registry_page)
    app.router.add_get(API_PATH, registry_api)
    app.router.add_post(TRACE_PATH, trace_switch)
