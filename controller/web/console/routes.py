"""The console's routes: sign in (password, then the TOTP code when the account has
one), sign out, and the city overview page with the JSON it polls.

Sign-in answers: 303 to the overview on success (and the session cookie); 403 for a form
without a valid CSRF token; 401 for a wrong name, password or code (one message for all:
which part was wrong helps a guesser); 429 with ``Retry-After`` while the account is
locked after too many failures. Every page and API route checks its roles
(``guard.ROUTE_ROLES``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from controller.domain.accounts import Account, AccountError, ConsoleSession, operator_scope
from controller.services.enforcer import SessionOutcome
from controller.services.errors import RequestError
from controller.services.live_sessions import (
    PAGE,
    SessionFilter,
    disconnect_one,
    filter_choices,
    live_sessions,
)
from controller.services.operator_online import operator_persons_online
from controller.services.overview import city_overview
from controller.storage.metered import MeteredStore
from controller.storage.store import StoreUnavailable
from controller.web.console import guard, lang, nas, pages, person, person_sessions, registry
from controller.web.console.common import (
    allowed,
    allowed_form,
    brand,
    no_store_json,
    polled_page,
    read_form,
    unavailable,
    unavailable_json,
)
from controller.web.errors import render_json
from controller.web.resources import CLOCK, ENFORCER, LIVE, MEMORY, STORE


def _login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    token, nonce, new = guard.form_token(request)
    language = lang.of(request)
    response = pages.html(
        pages.render(
            "login.html",
            lang=language,
            title=lang.text(language, "login.title"),
            brand=brand(request),
            user="",
            csrf=token,
            error=error,
        ),
        status=status,
    )
    if new:
        guard.set_nonce(response, nonce)
    lang.remember(request, response)
    return response


async def login_form(request: web.Request) -> web.Response:
    """``GET /console/login``."""
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    """``POST /console/login`` (form: user, password, code, csrf)."""
    form = await read_form(request)
    if form is None or not guard.form_ok(request, form):
        return _login_page(request, lang.text(lang.of(request), "error.form_expired"), 403)
    try:
        result = await guard.accounts(request).sign_in(
            form.get("user", ""),
            form.get("password", ""),
            form.get("code", ""),
            guard.address(request),
        )
    except StoreUnavailable:
        return _login_page(request, lang.text(lang.of(request), "error.unavailable"), 503)
    if not isinstance(result, ConsoleSession):
        if result.reason == "locked":
            minutes = -(-result.retry_after // 60)
            response = _login_page(
                request, lang.text(lang.of(request), "login.locked", minutes=minutes), 429
            )
            response.headers["Retry-After"] = str(result.retry_after)
            return response
        return _login_page(request, lang.text(lang.of(request), "login.bad"), 401)
    response = web.HTTPSeeOther(f"{guard.PATH}/overview")
    guard.set_session(response, result.id, result.expires - result.created)
    raise response


async def logout(request: web.Request) -> web.Response:
    """``POST /console/logout`` (form: csrf): ends the session on the server too."""
    form = await read_form(request)
    if form is None or not guard.form_ok(request, form):
        raise web.HTTPForbidden(text="bad form")
    await guard.accounts(request).sign_out(guard.session_id(request), guard.address(request))
    response = web.HTTPSeeOther(f"{guard.PATH}/login")
    guard.clear_session(response)
    raise response


async def index(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(f"{guard.PATH}/overview")


async def _overview(request: web.Request, account: Account) -> dict[str, object]:
    """The overview's figures, words in the request's language (``lang.of``)."""
    app = request.app
    language = lang.of(request)
    store = app[STORE]
    assert isinstance(store, MeteredStore)  # the composition root builds a metered store
    config = app[LIVE].config
    scope = operator_scope(account)
    o = await city_overview(store, app[MEMORY].latest, config, int(app[CLOCK]()), scope)
    body = pages.overview_json(o, config.quota.timezone, language)
    # an operator's persons online: at its own NAS (services.operator_online); city: None
    body["operator_persons"] = (
        await operator_persons_online(store, config, scope) if scope is not None else None
    )
    figures = await nas.overview_figures(store, config, int(app[CLOCK]()), scope, language)
    return body | figures  # + NAS health counters


async def overview_page(request: web.Request) -> web.Response:
    """``GET /console/overview``: the city now, refreshed by polling."""
    account = await allowed(request)
    if isinstance(account, web.Response):
        return account
    language = lang.of(request)
    try:
        o = await _overview(request, account)
    except StoreUnavailable:
        return unavailable(request)
    return polled_page(request, account, "overview.html", lang.text(language, "nav.overview"), o=o)


async def overview_api(request: web.Request) -> web.Response:
    """``GET /console/api/overview``: the page's figures as JSON (what it polls), words
    in the page's language (``?lang=``, the language cookie, ``Accept-Language``)."""
    try:
        account = await guard.require(request, page=False)
        body = await _overview(request, account)
    except RequestError as exc:
        return render_json(request, exc)
    except StoreUnavailable:
        return unavailable_json(request)
    return no_store_json(body)


async def sessions_page(
    request: web.Request,
    notice: str = "",
    results: tuple[SessionOutcome, ...] = (),
    status: int = 200,
) -> web.Response:
    """``GET /console/sessions?venue=&operator=&nas=&type=``: the open sessions (and,
    after an action, what each NAS answered: ``results``)."""
    account = await allowed(request, ("GET", "/console/sessions"))
    if isinstance(account, web.Response):
        return account
    token, nonce, new = guard.form_token(request)
    config = request.app[LIVE].config
    want = SessionFilter.of(request.query)
    scope = operator_scope(account)
    language = lang.of(request)
    try:
        found = await live_sessions(request.app[STORE], config, want, scope)
    except StoreUnavailable:
        return pages.html(lang.text(language, "error.unavailable"), status=503)
    response = pages.html(
        pages.render(
            "sessions.html",
            lang=language,
            title=lang.text(language, "sessions.title"),
            brand=brand(request),
            user=account.name,
            csrf=token,
            sessions=found,
            want=want,
            page=PAGE,
            scope=sorted(scope) if scope is not None else None,
            can_act=guard.may(account, "POST", "/console/sessions/disconnect"),
            notice=notice or request.query.get("notice", "")[:200],
            results=results,
            choices=filter_choices(config, scope),
            filters=want.query(),
        ),
        status=status,
    )
    if new:
        guard.set_nonce(response, nonce)
    lang.remember(request, response)
    return response


async def disconnect(request: web.Request) -> web.Response:
    """``POST /console/sessions/disconnect`` (form: ref, csrf; role admin): RFC 5176
    Disconnect-Request for that one session; back to the list saying what the NAS did."""
    signed = await allowed_form(request)
    if isinstance(signed, web.Response):
        return signed
    account, form = signed
    language = lang.of(request)
    try:
        outcome = await disconnect_one(
            request.app[STORE],
            request.app[ENFORCER],
            form.get("ref", ""),
            by=account.name,
            address=guard.address(request),
            now=int(request.app[CLOCK]()),
        )
    except AccountError as exc:
        status = 400 if exc.code == "bad_session" else 409
        return pages.html(lang.error_text(language, exc.code, exc.message), status=status)
    except StoreUnavailable:
        return pages.html(lang.text(language, "error.unavailable"), status=503)
    notice = (
        lang.text(
            language,
            "sessions.disconnected_one",
            result=lang.code_name(language, "result.", outcome.result),
        )
        if outcome
        else lang.text(language, "sessions.no_longer_open")
    )
    raise web.HTTPSeeOther(f"{guard.PATH}/sessions?{urlencode({'notice': notice})}")


def add_routes(app: web.Application) -> None:
    app.router.add_get(guard.PATH, index)
    app.router.add_get(f"{guard.PATH}/login", login_form)
    app.router.add_post(f"{guard.PATH}/login", login)
    app.router.add_post(f"{guard.PATH}/logout", logout)
    app.router.add_get(f"{guard.PATH}/overview", overview_page)
    app.router.add_get(f"{guard.PATH}/api/overview", overview_api)
    app.router.add_get(f"{guard.PATH}/sessions", sessions_page)
    app.router.add_post(f"{guard.PATH}/sessions/disconnect", disconnect)
    person.add_routes(app)
    person_sessions.add_routes(app, sessions_page)
    registry.add_routes(app)
    nas.add_routes(app)
