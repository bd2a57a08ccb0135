"""HTTP routes of the reports: the subsidy API (bearer token, role ``reports``), the report
page with its sign-in form and session cookie, and the page's downloads.

The figures are computed in a worker thread (DuckDB) so RADIUS and the portal keep being
answered; the outbox is drained first, so what was closed before the request is in it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter

from controller.config import Config
from controller.domain.periods import PeriodError, choose_period
from controller.domain.quota import local_day
from controller.services.errors import RequestError
from controller.services.reports import writers
from controller.services.reports.dashboard import dashboard
from controller.services.reports.query import ReportRequest, ReportRequestError, parse_request
from controller.services.reports.signature import build_signed, key_id, public_pem, signing_key
from controller.services.signing import Signer
from controller.storage.archive import Archive
from controller.web import csrf
from controller.web.auth import (
    PRINCIPAL,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Principal,
    issue_session,
    require_role,
    requires,
    session_key,
    session_principal,
    token_for,
)
from controller.web.csrf import Csrf, form_token
from controller.web.reports_page import (
    messages,
    pick_language,
    picker,
    render_dashboard,
    render_login,
)
from controller.web.resources import ARCHIVE, ARCHIVER, CLOCK, LIVE, PERSON_KEY

log = structlog.get_logger("citywifi.reports")

EXPORTS = Counter(
    "citywifi_report_exports_total",
    "Subsidy report exports by format and result (ok, bad_request)",
    ["format", "result"],
)

# the nonce cookie of the page's forms (sign-in, sign-out, the period forms)
CSRF = Csrf("cw_reports_csrf", path="/reports", samesite="Strict")
PAGE_PATH = "/reports"


async def _flush(app: web.Application) -> None:
    """Archive what the outbox holds before reading (read-your-writes; never raises)."""
    await app[ARCHIVER].flush()


def render_report(
    archive: Archive, config: Config, req: ReportRequest, now: float
) -> tuple[bytes, str]:
    """(body, digest of the figures) — blocking; run it in a thread."""
    report = build_signed(archive, config, req, now)  # signed with the city's key
    return writers.render(report, req.format), writers.digest(report)


async def report_response(request: web.Request, principal: Principal) -> web.Response:
    app = request.app
    config = app[LIVE].config
    try:
        req = parse_request(dict(request.query), config)
    except ReportRequestError:
        EXPORTS.labels("none", "bad_request").inc()
        raise  # a 400 with its code (controller.web.errors)
    await _flush(app)
    body, figures = await asyncio.to_thread(render_report, app[ARCHIVE], config, req, app[CLOCK]())
    log.info(
        "reports.subsidy",
        who=principal.name,
        first=req.first.isoformat(),
        last=req.last.isoformat(),
        group=req.group,
        format=req.format,
        sha256=figures,
    )
    EXPORTS.labels(req.format, "ok").inc()
    name = f"citywifi-subsidy-{req.first}-{req.last}-{req.group}.{req.format}"
    body_digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return web.Response(
        body=body,
        headers={
            "Content-Type": writers.CONTENT_TYPES[req.format],
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Citywifi-Report-SHA256": figures,  # digest of the figures (all formats)
            "Repr-Digest": f"sha-256=:{body_digest}:",  # RFC 9530: of these bytes
            "Cache-Control": "no-store",
        },
    )


@requires("reports")
async def subsidy_api(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/reports/subsidy?from=&to=&format=csv|json|xlsx&group=…``"""
    return await report_response(request, request[PRINCIPAL])


# --------------------------------------------------------------------------- the page


def _cookie_principal(request: web.Request) -> Principal | None:
    app = request.app
    value = request.cookies.get(SESSION_COOKIE, "")
    if not value:
        return None
    return session_principal(value, app[LIVE].config, session_key(app[PERSON_KEY]), app[CLOCK]())


def _set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PAGE_PATH,
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def _signer(app: web.Application) -> Signer:
    """The page's signer (CSRF form tokens), keyed like its session cookie."""
    return Signer(session_key(app[PERSON_KEY]))


def _html(text: str, nonce: str, new_nonce: bool, status: int = 200) -> web.Response:
    response = web.Response(text=text, content_type="text/html", charset="utf-8", status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    if new_nonce:
        CSRF.set_cookie(response, nonce, secure=True, max_age=SESSION_SECONDS)
    return response


def _lang(request: web.Request) -> str:
    return pick_language(request.query.get("lang"), request.headers.get("Accept-Language", ""))


async def page(request: web.Request) -> web.Response:
    """``GET /reports[?month=YYYY-MM | ?from=&to=]``: the dashboard of a calendar month
    (default: the current one) or a range when signed in, else the sign-in form; a
    refused period is a 400 page that says why, with the picker to fix it."""
    app = request.app
    config = app[LIVE].config
    lang = _lang(request)
    nonce, new_nonce = CSRF.nonce_for(request)
    token = form_token(_signer(app), nonce)
    principal = _cookie_principal(request)
    if principal is None or "reports" not in principal.roles:
        return _html(render_login(config, lang, token), nonce, new_nonce)
    now = app[CLOCK]()
    today = local_day(int(now), config.quota.timezone)
    longest = config.reports.max_range_days
    given = {k: request.query.get(k, "") for k in ("month", "from", "to")}
    try:
        period = choose_period(
            given["month"], given["from"], given["to"],
            today=today, longest=longest, hint="reports.max_range_days",
        )  # fmt: skip
    except PeriodError as exc:
        log.info("reports.page_period_refused", code=exc.code)
        pick = picker(today, lang, longest, None, given)
        error = period_message(lang, exc, longest)
        return _html(
            render_dashboard(config, None, lang, token, pick, error), nonce, new_nonce, 400
        )
    await _flush(app)
    data = await asyncio.to_thread(dashboard, app[ARCHIVE], config, now, lang, period)
    pick = picker(today, lang, longest, period, given)
    return _html(render_dashboard(config, data, lang, token, pick), nonce, new_nonce)


def period_message(lang: str, exc: PeriodError, longest: int) -> str:
    """A refused period in the page's language (the English detail kept in English)."""
    text = messages()[lang].get(f"period_{exc.code}", exc.message).replace("{n}", str(longest))
    return f"{text} ({exc.message})" if lang == "en" else text


async def _checked_form(request: web.Request) -> dict[str, str] | None:
    """The posted form if its CSRF token is this browser's (``controller.web.csrf``);
    None for a mismatch and for a body that does not parse (no multipart boundary, not
    UTF-8, unknown charset)."""
    try:
        form = await request.post()
    except (ValueError, LookupError, HttpProcessingError):
        return None
    sent = form.get(csrf.FIELD)
    if not isinstance(sent, str) or not CSRF.check(request, _signer(request.app), sent):
        return None
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def login(request: web.Request) -> web.Response:
    """``POST /reports/login`` (form: token, csrf) -> session cookie, back to the page."""
    app = request.app
    config = app[LIVE].config
    lang = _lang(request)
    t = messages()[lang]
    nonce, new_nonce = CSRF.nonce_for(request)
    field = form_token(_signer(app), nonce)
    form = await _checked_form(request)
    if form is None:
        return _html(render_login(config, lang, field, t["bad_form"]), nonce, new_nonce, 403)
    token = token_for(form.get("token", "").strip(), config)
    if token is None:
        log.info("reports.login_refused", reason="unknown_token")
        return _html(render_login(config, lang, field, t["bad_token"]), nonce, new_nonce, 401)
    if "reports" not in token.roles:
        log.info("reports.login_refused", reason="no_role", who=token.name)
        return _html(render_login(config, lang, field, t["no_role"]), nonce, new_nonce, 403)
    log.info("reports.login", who=token.name)
    response = web.HTTPSeeOther(f"{PAGE_PATH}?lang={lang}")
    _set_cookie(
        response,
        SESSION_COOKIE,
        issue_session(token, session_key(app[PERSON_KEY]), app[CLOCK]()),
        SESSION_SECONDS,
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    lang = _lang(request)
    if await _checked_form(request) is None:
        raise web.HTTPSeeOther(f"{PAGE_PATH}?lang={lang}")
    response = web.HTTPSeeOther(f"{PAGE_PATH}?lang={lang}")
    response.del_cookie(SESSION_COOKIE, path=PAGE_PATH)
    raise response


async def download(request: web.Request) -> web.StreamResponse:
    """``GET /reports/download?…``: the API's exports for a signed-in page."""
    principal = _cookie_principal(request)
    if principal is None:
        raise RequestError("unauthorized", 401, "sign in on /reports first")
    return await report_response(request, require_role(principal, "reports"))


async def public_key(request: web.Request) -> web.StreamResponse:
    """``GET /reports/public-key``: the public half of the city's report signing key
    (PEM), published so that anyone handed a report can check it (``citywifi report
    verify FILE --public-key PEM``). Public on purpose: it proves, it does not admit."""
    config = request.app[LIVE].config
    key = (await asyncio.to_thread(signing_key, config)).public_key()
    return web.Response(
        body=public_pem(key),
        headers={
            "Content-Type": "application/x-pem-file",
            "X-Key-Id": key_id(key),
            "Cache-Control": "public, max-age=3600",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/reports/subsidy", subsidy_api)
    app.router.add_get(f"{PAGE_PATH}/public-key", public_key)
    app.router.add_get(PAGE_PATH, page)
    app.router.add_post(f"{PAGE_PATH}/login", login)
    app.router.add_post(f"{PAGE_PATH}/logout", logout)
    app.router.add_get(f"{PAGE_PATH}/download", download)
