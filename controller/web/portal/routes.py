"""HTTP edge of the portal: pages (plain HTML forms, JS optional), the JSON API, the
RFC 8908 Captive Portal API and venue pages. Flows live in ``service``; this module
reads requests, maps ``PortalError`` to a page or a JSON error, and sets cookies.

Routes (also in docs/openapi.yaml):

- ``GET /portal`` (NAS redirect parameters or ``ctx``), ``POST /portal/otp``,
  ``POST /portal/login``, ``POST /portal/continue``, ``GET /portal/status``,
  ``POST /portal/logout``, ``GET /portal/terms``, ``GET /portal/privacy``,
  ``GET /portal/logo``, ``GET /portal/static/*``, ``GET /venue/{id}``
- ``POST /api/v1/otp``, ``POST /api/v1/login``, ``GET /api/v1/me``, ``POST /api/v1/logout``
- ``GET /captive-portal/api``, ``GET /captive-portal/api/{nas_id}`` (RFC 8908)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from controller.config import Config
from controller.services.errors import RequestError
from controller.services.portal.errors import PAGE_ERRORS, PortalError
from controller.services.portal.handoff import REDIRECT_PARAMS, parse_redirect, split_md
from controller.services.portal.i18n import LANG_COOKIE, choose_language, format_duration, supported
from controller.services.portal.otp import CODE_TTL, clean_code
from controller.services.portal.service import LoginResult, NasContext, Portal, Requester, Standing
from controller.services.profiles import credentials_of
from controller.services.signing import Signer
from controller.web import csrf
from controller.web.errors import STORE_UNAVAILABLE, Renderer, render_json, renders_errors
from controller.web.portal.captive_api import CONTENT_TYPE, captive_answer
from controller.web.portal.clientaddr import client_address, client_scheme
from controller.web.portal.pages import STATIC, mask_phone, moment, other, render, venue_view
from controller.web.resources import LIVE, PORTAL, PORTAL_SIGNER, STORE

log = structlog.get_logger("citywifi.portal")

DEVICE_COOKIE: Final = "cw_dev"
CSRF: Final = csrf.Csrf("cw_csrf")  # the nonce cookie of every portal form (SameSite=Lax)
routes = web.RouteTableDef()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ViewHandler = Callable[[web.Request, "View"], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application) -> None:
    """Mount the portal on the citizen app (``controller.web.app.make_app``); the
    ``Portal`` itself is a resource (``controller.web.resources.PORTAL``)."""
    app.add_routes(routes)
    app.router.add_static("/portal/static", STATIC, name="portal-static")


# --------------------------------------------------------------------------- request facts


class View:
    """One request as the portal sees it: client address and scheme (through trusted
    proxies), language, NAS context token, cookies; renders pages and errors."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.portal: Portal = request.app[PORTAL]
        self.signer = request.app[PORTAL_SIGNER]  # device cookie, CSRF
        self.store = request.app[STORE]
        self.live = request.app[LIVE]
        proxies = self.config.portal.trusted_proxies
        peer = request.remote or ""
        self.address = client_address(peer, request.headers.get("X-Forwarded-For"), proxies)
        self.scheme = client_scheme(
            peer, request.scheme, request.headers.get("X-Forwarded-Proto"), proxies
        )
        self.lang = ""
        self.lang_explicit = False
        self.ctx = ""  # the sealed NAS redirect, carried by forms and links
        self._device: tuple[str, str] | None = None
        self._device_known = False  # the cookie's token was looked up in Redis

    @property
    def config(self) -> Config:
        """The config in force (a SIGHUP reload swaps it)."""
        return self.live.config

    @property
    def secure(self) -> bool:
        return self.scheme == "https"

    @property
    def base_url(self) -> str:
        return self.config.portal.public_url or f"{self.scheme}://{self.request.host}"

    def choose(self, explicit: object = None) -> str:
        """Language: explicit ``lang``, the ``cw_lang`` cookie, Accept-Language, zh."""
        given = explicit if isinstance(explicit, str) else None
        self.lang = choose_language(
            given,
            self.request.cookies.get(LANG_COOKIE),
            self.request.headers.get("Accept-Language"),
        )
        self.lang_explicit = bool(supported(given))
        return self.lang

    def text(self, key: str, **values: Any) -> str:
        return self.portal.catalog.text(self.lang or self.choose(), key, **values)

    def error_text(self, exc: RequestError) -> str:
        values = dict(exc.values)
        key = f"error.{exc.code}"
        if isinstance(values.get("resets_at"), datetime):
            values["resets_at"] = moment(values["resets_at"])
        if exc.code == "blocked" and isinstance(values.get("until"), datetime):
            key, values["until"] = "error.blocked_until", moment(values["until"])
        if not self.portal.catalog.has(key):
            # a code of the HTTP spine (``too_large``) has its own message, else internal
            return exc.message or self.text("error.internal")
        return self.text(key, **values)

    def requester(self, ctx: NasContext) -> Requester:
        """The source address and the device (``Portal.device_of``) of this request."""
        device = self.portal.device_of(ctx, CSRF.nonce_of(self.request), self.address)
        return Requester(self.address, device)

    # -- remembered device (portal cookie naming a server-side token) -------------------

    async def device(self) -> tuple[str, str] | None:
        """(person, token id) of the remembered-device cookie, if it is ours, not expired
        and its token is not revoked (logout, admin); looked up once per request."""
        if self._device_known:
            return self._device
        self._device_known = True
        token = self.request.cookies.get(DEVICE_COOKIE, "")
        now = self.portal.now()
        payload = self.signer.unsign("device", token, now=now) if token else None
        parts = payload.decode("ascii", "replace").split("|") if payload else []
        if not parts and token:
            parts = _legacy_device(self.signer, token, now)
        if len(parts) == 2 and parts[0] and parts[1]:
            pid, tid = parts
            if await self.portal.device_valid(pid, tid):
                self._device = (pid, tid)
        return self._device

    async def device_pid(self) -> str | None:
        found = await self.device()
        return found[0] if found else None

    def set_device(self, response: web.StreamResponse, result: LoginResult) -> None:
        """Remember this browser for the person: a signed cookie naming the token the login
        stored (``LoginResult.device_token``; the same token while the browser keeps a
        valid one for the same person), honoured until it expires or is revoked."""
        days = self.config.portal.cookie_days
        if days <= 0 or result.device_token is None:
            return
        pid, (tid, expires) = result.pid, result.device_token
        token = self.signer.sign("device", f"{pid}|{tid}".encode(), expires=expires)
        self._device = (pid, tid)
        response.set_cookie(
            DEVICE_COOKIE,
            token,
            max_age=days * 86400,
            httponly=True,
            samesite="Lax",
            secure=self.secure,
            path="/",
        )

    async def pid_at_address(self) -> str | None:
        """The person with an open RADIUS session at this address (no cookie needed)."""
        pid = (await self.store.client_at(self.address)).get("pid")
        if not pid:
            return None
        standing = await self.portal.standing(pid)
        return pid if any(s.get("ip") == self.address for s in standing.sessions) else None

    # -- pages ------------------------------------------------------------------------

    def page(
        self,
        template: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> web.Response:
        lang = self.lang or self.choose()
        nonce, new = CSRF.nonce_for(self.request)
        if self.ctx:
            switch = f"/portal?ctx={quote(self.ctx)}&lang={other(lang)}"
        else:
            switch = f"{self.request.path}?lang={other(lang)}"
        response = render(
            self.portal.catalog,
            self.config,
            template,
            lang=lang,
            switch_url=switch,
            status=status,
            headers=headers,
            csrf=csrf.form_token(self.signer, nonce, self.ctx),
            ctx=self.ctx,
            **values,
        )
        if new:
            CSRF.set_cookie(response, nonce, secure=self.secure)
        if self.lang_explicit:
            response.set_cookie(
                LANG_COOKIE,
                lang,
                max_age=365 * 86400,
                samesite="Lax",
                secure=self.secure,
                path="/",
            )
        return response

    def message(
        self,
        title: str,
        text: str,
        *,
        kind: str = "ok",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        back = f"/portal?ctx={quote(self.ctx)}&lang={self.lang}" if self.ctx else ""
        return self.page(
            "message.html",
            status=status,
            headers=headers,
            title=title,
            text=text,
            kind=kind,
            back_url=back or f"/portal?lang={self.lang}",
            back_text=self.text("back_to_portal"),
        )

    def failure(self, exc: RequestError) -> web.Response:
        key = f"title.{exc.code}"
        title = self.text(key if self.portal.catalog.has(key) else "error.title")
        return self.message(
            title, self.error_text(exc), kind="err", status=exc.status, headers=retry_headers(exc)
        )

    def login_form(
        self,
        venue: dict[str, str] | None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> web.Response:
        fields: dict[str, Any] = {
            "error": "",
            "notice": "",
            "remembered": "",
            "phone": "",
            "code_step": False,
            "terms": False,
            "resend_after": 0,
        }
        fields.update(values)
        return self.page(
            "portal.html", status=status, headers=headers, venue=venue, script=True, **fields
        )

    def venue_of(self, ctx: NasContext) -> dict[str, str] | None:
        place = self.portal.place(ctx)
        return venue_view(place.venue, self.config, self.lang) if place.venue else None

    # -- JSON ---------------------------------------------------------------------------

    def json_error(self, exc: RequestError) -> web.Response:
        """The JSON error (``controller.web.errors.render_json``) with the message in the
        visitor's language and the members the API documents for some codes."""
        extra: dict[str, object] = {}
        if exc.code == "device_limit":
            extra["limit"] = exc.values.get("limit")
        if exc.retry_after is not None:
            extra["retry_after"] = exc.retry_after
        if exc.code == "allowance_used_up" and isinstance(exc.values.get("resets_at"), datetime):
            extra["resets_at"] = exc.values["resets_at"].isoformat()
        return render_json(self.request, exc, message=self.error_text(exc), extra=extra)

    async def json_body(self) -> dict[str, Any]:
        """A JSON object body; ``Content-Type: application/json`` is required (CSRF: a
        cross-site form cannot send it, a cross-site fetch needs a preflight we never
        allow)."""
        if self.request.content_type != "application/json":
            raise PortalError("unsupported_media_type", 415)
        raw = await self.request.read()  # JSON is UTF-8 (RFC 8259 §8.1), whatever charset says
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
            data = None
        if not isinstance(data, dict):
            raise PortalError("bad_json", 400)
        self.choose(data.get("lang"))
        return data


def _legacy_device(signer: Signer, token: str, now: float) -> list[str]:
    """(person, token id) of a device cookie issued before the signer carried expiries
    (payload ``pid|expires|tid``), so that upgrading does not forget remembered devices;
    such cookies are gone ``portal.cookie_days`` after the upgrade."""
    payload = signer.unsign("device", token)
    parts = payload.decode("ascii", "replace").split("|") if payload else []
    if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) >= now:
        return [parts[0], parts[2]]
    return []


def retry_headers(exc: RequestError) -> dict[str, str]:
    return {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}


VIEW: Final = web.RequestKey("portal_view", View)


def _portal_error(error: RequestError) -> RequestError:
    """A Redis outage is the portal's ``unavailable`` (its catalogues have the page)."""
    return PortalError("unavailable", 503) if error.code == STORE_UNAVAILABLE else error


def _view_of(request: web.Request) -> View:
    """The request's ``View`` (with the language it chose), or a new one."""
    return request.get(VIEW) or View(request)


def render_page_error(request: web.Request, error: RequestError) -> web.StreamResponse:
    """The error page of a portal page (``controller.web.errors`` calls it)."""
    return _view_of(request).failure(_portal_error(error))


def render_api_error(request: web.Request, error: RequestError) -> web.StreamResponse:
    """The JSON error of the portal's API, its message translated."""
    return _view_of(request).json_error(_portal_error(error))


def _with_view(handler: ViewHandler, renderer: Renderer) -> Handler:
    """``handler(request, view)`` as an aiohttp handler whose errors ``renderer`` draws."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        view = request[VIEW] = View(request)
        return await handler(request, view)

    return renders_errors(renderer)(wrapped)


def html_page(handler: ViewHandler) -> Handler:
    """Refusals become a clear page with the right status; Redis outages a 503 page."""
    return _with_view(handler, render_page_error)


def json_api(handler: ViewHandler) -> Handler:
    """Errors as ``{"error": code, "message": text}`` with the right status."""
    return _with_view(handler, render_api_error)


# --------------------------------------------------------------------------- pages


def _md_candidates(view: View, signed_query: str) -> list[str]:
    """URL spellings chilli may have signed: its ``uamserver`` is our public URL, seen
    here perhaps through a proxy (scheme, host) -- the secret is what proves the origin."""
    path = view.request.raw_path.split("?", 1)[0]
    hosts = {view.request.host}
    public = view.config.portal.public_url
    if public:
        hosts.add(urlsplit(public).netloc)
    schemes = ("http", "https")
    return [f"{scheme}://{host}{path}?{signed_query}" for scheme in schemes for host in hosts]


@routes.get("/portal")
@html_page
async def portal_page(request: web.Request, view: View) -> web.StreamResponse:
    """The login page, as the NAS redirects to it (or with the portal's own ``ctx``).

    Rate-limited per source; writes nothing to Redis but that count (finding 6): what
    the redirect says is only carried, signed, in ``ctx`` until a phone is proven."""
    portal = view.portal
    query = request.query
    view.choose(query.get("lang"))
    await portal.page_view(view.address)
    if "ctx" in query:
        ctx = portal.unseal(query["ctx"])
        view.ctx = query["ctx"]
        place = portal.place(ctx)
    else:
        covered, md, _ = split_md(request.rel_url.raw_query_string)
        params = dict(parse_qsl(covered, keep_blank_values=True)) if md else dict(query)
        redirect = parse_redirect(params)
        client = portal.client_of(redirect)
        ctx = NasContext(redirect, portal.verify_md(client, md, _md_candidates(view, covered)))
        place = portal.place(ctx)
        view.ctx = portal.seal(ctx)
    redirect = ctx.redirect
    if redirect.res in ("success", "already"):
        pid = await view.device_pid() or await view.pid_at_address()
        if pid:
            return await _status(view, pid, notice=view.text("already_online"))
        return view.message(view.text("already_online_title"), view.text("already_online"))
    error = notice = ""
    if redirect.res == "failed" or redirect.error:
        error = view.text("nas_failed", reply=redirect.reply or redirect.error or "-")
    elif redirect.res == "logoff":
        notice = view.text("nas_logoff")
    remembered = ""
    pid = await view.device_pid()
    if pid and query.get("other") != "1":
        phone = await view.store.person_phone(pid)
        remembered = mask_phone(phone) if phone else ""
    venue = venue_view(place.venue, view.config, view.lang) if place.venue else None
    return view.login_form(venue, error=error, notice=notice, remembered=remembered)


async def _form(view: View) -> dict[str, str]:
    """A portal form post: CSRF-checked (the token of this browser and of the ``ctx`` it
    posts), with its language and NAS context noted. A body that does not parse
    (multipart without a boundary or with broken part headers, bytes that are not UTF-8,
    an unknown charset) is a 400, not a server error."""
    try:
        data = await view.request.post()
    except (ValueError, LookupError, HttpProcessingError):
        raise PortalError("bad_request", 400, field="body") from None
    form = {k: v for k, v in data.items() if isinstance(v, str)}
    view.choose(form.get("lang"))
    view.ctx = form.get("ctx", "")
    if not CSRF.check(view.request, view.signer, form.get(csrf.FIELD, ""), view.ctx):
        raise PortalError("csrf", 403)
    return form


@routes.post("/portal/otp")
@html_page
async def post_otp(request: web.Request, view: View) -> web.StreamResponse:
    portal = view.portal
    form = await _form(view)
    ctx = portal.unseal(view.ctx)
    venue = view.venue_of(ctx)
    phone, terms = form.get("phone", ""), bool(form.get("terms"))
    try:
        resend = await portal.request_code(phone, ctx, view.requester(ctx), view.lang)
    except PortalError as exc:
        if exc.code in PAGE_ERRORS:
            raise
        return view.login_form(
            venue,
            status=exc.status,
            headers=retry_headers(exc),
            error=view.error_text(exc),
            phone=phone,
            terms=terms,
        )
    notice = view.text("code_sent", phone=mask_phone(portal.phone(phone)), minutes=CODE_TTL // 60)
    return view.login_form(
        venue, notice=notice, phone=phone, terms=terms, code_step=True, resend_after=resend
    )


@routes.post("/portal/login")
@html_page
async def post_login(request: web.Request, view: View) -> web.StreamResponse:
    portal = view.portal
    form = await _form(view)
    ctx = portal.unseal(view.ctx)
    venue = view.venue_of(ctx)
    phone, terms = form.get("phone", ""), bool(form.get("terms"))
    try:
        if not terms:
            raise PortalError("terms_required", 400)
        code = clean_code(form.get("code", ""))
        device = await view.device()
        result = await portal.login_with_code(phone, code, ctx, view.requester(ctx), device)
    except PortalError as exc:
        if exc.code in PAGE_ERRORS:
            raise
        return view.login_form(
            venue,
            status=exc.status,
            headers=retry_headers(exc),
            error=view.error_text(exc),
            phone=phone,
            terms=terms,
            code_step=True,
        )
    return await _success(view, result)


@routes.post("/portal/continue")
@html_page
async def post_continue(request: web.Request, view: View) -> web.StreamResponse:
    """A remembered device (portal cookie) logs in without the SMS step."""
    await _form(view)
    pid = await view.device_pid()
    if pid is None:
        raise PortalError("not_logged_in", 401)
    ctx = view.portal.unseal(view.ctx)
    device = await view.device()
    result = await view.portal.login_remembered(pid, ctx, view.requester(ctx), device)
    return await _success(view, result)


async def _success(view: View, result: LoginResult) -> web.Response:
    # "connect automatically" needs the device cookie this response sets (docs/eap.md)
    profiles = view.config.passpoint.enabled and view.config.portal.cookie_days > 0
    response = view.page(
        "success.html",
        handoff=result.handoff,
        delay=view.config.portal.handoff_delay,
        left=format_duration(result.seconds_remaining, view.lang),
        resets_at=moment(result.resets_at),
        script=True,
        profiles=profiles,
        credentials=[],
    )
    view.set_device(response, result)
    return response


async def _status(view: View, pid: str, notice: str = "") -> web.Response:
    config = view.config
    standing = await view.portal.standing(pid)
    sessions = []
    for s in standing.sessions:
        venue = config.venues.get(s.get("venue", ""))
        start = int(s.get("start") or 0)
        since = datetime.fromtimestamp(start, config.quota.timezone) if start else None
        sessions.append(
            {
                "venue": venue.name.get(view.lang, venue.id) if venue else s.get("nas_id", ""),
                "since": f"{since:%H:%M}" if since else "-",
            }
        )
    own = await view.device_pid() == pid  # this browser is the person's (cookie)
    profiles = own and config.passpoint.enabled
    return view.page(
        "status.html",
        profiles=profiles,
        credentials=await _credentials_view(view, pid) if profiles else [],
        notice=notice,
        left=format_duration(standing.seconds_remaining, view.lang),
        used=format_duration(standing.used_today, view.lang),
        resets_at=moment(standing.resets_at),
        devices=standing.devices_online,
        max_devices=standing.max_devices,
        sessions=sessions,
        can_logout=own,
    )


async def _credentials_view(view: View, pid: str) -> list[dict[str, str]]:
    """The person's EAP credentials as the status page lists them (each with a revoke
    form: ``POST /portal/profile/revoke``, ``controller.web.portal.profile``)."""
    tz = view.config.quota.timezone
    out = []
    for c in await credentials_of(view.store.redis, pid):
        kind = f"profile_kind_{c.label}"
        out.append(
            {
                "username": c.username,
                "kind": view.text(kind) if view.portal.catalog.has(kind) else c.label,
                "issued": f"{datetime.fromtimestamp(c.issued_at, tz):%Y-%m-%d}",
                "expires": f"{datetime.fromtimestamp(c.expires_at, tz):%Y-%m-%d}",
            }
        )
    return out


@routes.get("/portal/status")
@html_page
async def status_page(request: web.Request, view: View) -> web.StreamResponse:
    """Time left today, devices online, log out (by portal cookie, or by the address of
    an open session when the cookie is not there, e.g. in another browser)."""
    view.choose(request.query.get("lang"))
    pid = await view.device_pid() or await view.pid_at_address()
    if pid is None:
        return view.message(view.text("not_logged_in_title"), view.text("error.not_logged_in"))
    return await _status(view, pid)


@routes.post("/portal/logout")
@html_page
async def post_logout(request: web.Request, view: View) -> web.StreamResponse:
    await _form(view)
    device = await view.device()
    if device is None:
        raise PortalError("not_logged_in", 401)
    result = await view.portal.logout(device[0], view.address, device[1])
    done = result["disconnect"] == "requested" or not result["sessions"]
    view.ctx = ""
    response = view.message(
        view.text("logged_out_title"), view.text("logged_out" if done else "logged_out_pending")
    )
    response.del_cookie(DEVICE_COOKIE, path="/")
    return response


async def _document(request: web.Request, view: View, name: str) -> web.StreamResponse:
    view.choose(request.query.get("lang"))
    body = view.text(f"{name}_body")
    return view.page(
        "doc.html",
        title=view.text(f"{name}_title"),
        paragraphs=[p.strip() for p in body.split("\n\n") if p.strip()],
    )


@routes.get("/portal/terms")
@html_page
async def terms_page(request: web.Request, view: View) -> web.StreamResponse:
    return await _document(request, view, "terms")


def _privacy_facts(view: View) -> list[str]:
    """PIPL Art. 17: who handles the data, how to reach them, how long each record is
    kept (``[privacy]``, ``[audit]``, ``[natlog]``, ``[quota]``)."""
    config, lang = view.config, "en" if view.lang == "en" else "zh"
    privacy = config.privacy
    name = privacy.handler.get(lang) or config.brand.name.get(lang) or config.brand.ssid
    facts = [view.text("privacy_handler", name=name)]
    contact = [
        view.text(f"privacy_{kind}", value=value)
        for kind, value in (
            ("email", privacy.contact_email),
            ("phone", privacy.contact_phone),
            ("address", privacy.contact_address.get(lang, "")),
        )
        if value
    ]
    if contact:
        facts.append(
            view.text("privacy_contact", contact=("; " if lang == "en" else "；").join(contact))
        )
    facts.append(
        view.text(
            "privacy_retention",
            audit_days=config.audit.retention_days,
            phone_days=config.audit.phone_retention_days,
            nat_days=config.natlog.retention_days,
            device_days=config.quota.remember_device_days,
            cookie_days=config.portal.cookie_days,
            usage_days=config.privacy.usage_retention_days,
        )
    )
    return facts


@routes.get("/portal/privacy")
@html_page
async def privacy_page(request: web.Request, view: View) -> web.StreamResponse:
    view.choose(request.query.get("lang"))
    body = view.text("privacy_body")
    paragraphs = [p.strip() for p in body.split("\n\n") if p.strip()]
    return view.page(
        "doc.html", title=view.text("privacy_title"), paragraphs=paragraphs + _privacy_facts(view)
    )


@routes.get("/portal/logo")
async def logo(request: web.Request) -> web.StreamResponse:
    """The brand logo (``brand.logo``), else the built-in one."""
    path = request.app[PORTAL].config.brand.logo or STATIC / "logo.svg"
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


@routes.get("/venue/{id}")
@html_page
async def venue_page(request: web.Request, view: View) -> web.StreamResponse:
    """Public page of a venue: name, type, district, operator, brand."""
    view.choose(request.query.get("lang"))
    venue = view.config.venues.get(request.match_info["id"])
    if venue is None:
        raise PortalError("not_found", 404)
    return view.page("venue.html", venue=venue_view(venue, view.config, view.lang))


# --------------------------------------------------------------------------- JSON API


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise PortalError("bad_request", 400, field=name)
    return value


def _json_context(portal: Portal, body: dict[str, Any]) -> NasContext:
    """The NAS context of an API call: the page's ``ctx`` token or the redirect's own
    parameters (``nas_id``, ``mac``, ``ip``, ``url``, vendor parameters), which nobody
    signed: the body's ``ip`` and ``mac`` are never believed as the NAS's word."""
    ctx = _field(body, "ctx")
    if ctx:
        return portal.unseal(ctx)
    params = {k: v for k, v in body.items() if k in REDIRECT_PARAMS and isinstance(v, str)}
    return NasContext(parse_redirect(params), signed=False)


@routes.post("/api/v1/otp")
@json_api
async def api_otp(request: web.Request, view: View) -> web.StreamResponse:
    body = await view.json_body()
    ctx = _json_context(view.portal, body)
    phone = _field(body, "phone")
    resend = await view.portal.request_code(phone, ctx, view.requester(ctx), view.lang)
    return web.json_response({"resend_after": resend, "expires_in": CODE_TTL}, status=202)


@routes.post("/api/v1/login")
@json_api
async def api_login(request: web.Request, view: View) -> web.StreamResponse:
    """``{"phone", "code", …}``, or ``{…}`` alone from a remembered device (cookie)."""
    portal = view.portal
    body = await view.json_body()
    ctx = _json_context(portal, body)
    who = view.requester(ctx)
    if "phone" in body or "code" in body:
        code = clean_code(_field(body, "code"))
        device = await view.device()
        result = await portal.login_with_code(_field(body, "phone"), code, ctx, who, device)
    else:
        device = await view.device()
        if device is None:
            raise PortalError("not_logged_in", 401)
        result = await portal.login_remembered(device[0], ctx, who, device)
    handoff = result.handoff
    response = web.json_response(
        {
            "username": result.username,
            "password": result.password,
            "expires_in": result.expires_in,
            "seconds_remaining": result.seconds_remaining,
            "resets_at": result.resets_at.isoformat(),
            "redirect_url": handoff.url if handoff.method == "GET" else handoff.redirect_url,
            "handoff": handoff.to_json(),
            "venue": result.place.venue.id if result.place.venue else None,
        },
        headers={"Cache-Control": "no-store"},
    )
    view.set_device(response, result)
    return response


def _standing_json(config: Config, standing: Standing) -> dict[str, Any]:
    tz = config.quota.timezone

    def started(s: dict[str, str]) -> str | None:
        start = s.get("start")
        return datetime.fromtimestamp(int(start), tz).isoformat() if start else None

    return {
        "seconds_remaining": standing.seconds_remaining,
        "used_today": standing.used_today,
        "daily_seconds": standing.daily_seconds,
        "resets_at": standing.resets_at.isoformat(),
        "devices_online": standing.devices_online,
        "max_devices": standing.max_devices,
        "sessions": [
            {
                "venue": s.get("venue", ""),
                "nas": s.get("client", ""),
                "mac": s.get("mac", ""),
                "ip": s.get("ip", ""),
                "started_at": started(s),
            }
            for s in standing.sessions
        ],
    }


@routes.get("/api/v1/me")
@json_api
async def api_me(request: web.Request, view: View) -> web.StreamResponse:
    view.choose(request.query.get("lang"))
    pid = await view.device_pid() or await view.pid_at_address()
    if pid is None:
        raise PortalError("not_logged_in", 401)
    standing = await view.portal.standing(pid)
    return web.json_response(
        _standing_json(view.config, standing), headers={"Cache-Control": "no-store"}
    )


@routes.post("/api/v1/logout")
@json_api
async def api_logout(request: web.Request, view: View) -> web.StreamResponse:
    await view.json_body()
    device = await view.device()
    if device is None:
        raise PortalError("not_logged_in", 401)
    result = await view.portal.logout(device[0], view.address, device[1])
    response = web.json_response({"logged_out": True, **result})
    response.del_cookie(DEVICE_COOKIE, path="/")
    return response


# --------------------------------------------------------------------------- RFC 8908


@routes.get("/captive-portal/api")
@routes.get("/captive-portal/api/{nas_id}")
@json_api
async def captive_portal_api(request: web.Request, view: View) -> web.StreamResponse:
    """RFC 8908 §5. ``{nas_id}``: a per-NAS API URI (DHCP option 114 set per access
    controller) lets the answer name the venue before the portal has seen the client."""
    portal = view.portal
    memory = await view.store.client_at(view.address)
    captive, seconds = True, None
    pid = memory.get("pid")
    if pid:
        standing = await portal.standing(pid)
        mac = memory.get("mac", "")
        at_address = (
            s.get("ip") == view.address or (mac and s.get("mac") == mac) for s in standing.sessions
        )
        if any(at_address):
            captive, seconds = False, standing.seconds_remaining
    nas = memory.get("nas") or request.match_info.get("nas_id", "")
    venue_id = memory.get("venue", "")
    if not venue_id and nas:
        client = view.live.registry.client_by_nas(nas)
        venue_id, nas = (client.venue, nas) if client else ("", "")
    base = view.base_url
    if captive:
        user_portal = f"{base}/portal" + (f"?nas_id={quote(nas)}" if nas else "")
    else:
        user_portal = f"{base}/portal/status"
    answer = captive_answer(
        captive=captive,
        user_portal_url=user_portal,
        venue_info_url=f"{base}/venue/{quote(venue_id)}" if venue_id else "",
        seconds_remaining=seconds,
    )
    return web.json_response(
        answer, content_type=CONTENT_TYPE, headers={"Cache-Control": "private"}
    )
