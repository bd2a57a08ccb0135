"""The web layer's spine without sockets: the one key-file loader (raced by real
processes), the one signer, the one CSRF mechanism, the one error middleware and the
bearer roles of every protected route.

Key files cross a process boundary, so they are raced by real processes; everything
else is pure logic, driven with ``aiohttp.test_utils.make_mocked_request``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from controller.config import load_config
from controller.domain.periods import PeriodError
from controller.services.admin import AdminError
from controller.services.errors import RequestError
from controller.services.live import LiveConfig
from controller.services.portal.errors import PortalError
from controller.services.signing import Signer, b64
from controller.storage.keyfiles import load_key, load_person_key, load_portal_key
from controller.storage.store import StoreUnavailable
from controller.web import admin, audit, person_erase, reports
from controller.web.auth import PRINCIPAL, Principal, requires, role_of, roles_of
from controller.web.csrf import Csrf, form_token
from controller.web.errors import (
    BodyTimeout,
    Handler,
    errors,
    render_json,
    renderer_of,
    renders_errors,
)
from controller.web.resources import LIVE
from tests.test_reports_helpers import TOKENS, city_config

# --------------------------------------------------------------------------- key files


def _race_key(
    path: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue[bytes]
) -> None:
    start.wait()  # every process calls load_key at the same moment
    out.put(load_key("", Path(path)))


def test_processes_creating_one_key_at_once_agree_on_it(tmp_path: Path) -> None:
    """Four processes, released together by a barrier, create the same missing key file
    (four rounds): each returns the same key, the file is 0600, no temporary is left."""
    ctx = multiprocessing.get_context("spawn")
    for n in range(4):
        path = tmp_path / f"round{n}" / "portal.key"
        start, out = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_race_key, args=(str(path), start, out)) for _ in range(4)]
        for p in procs:
            p.start()
        keys = {out.get(timeout=60) for _ in procs}
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        assert keys == {path.read_text().encode()} and len(path.read_text()) == 64
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert os.listdir(path.parent) == ["portal.key"]


def _load_at(
    path: Path, start: threading.Barrier, found: list[bytes], errors: list[BaseException]
) -> None:
    start.wait()
    try:
        found.append(load_key("", path))
    except BaseException as exc:
        errors.append(exc)


def test_threads_of_one_process_creating_one_key_agree_on_it(tmp_path: Path) -> None:
    """Same pid, so a temporary named after the pid would be shared (and unlinked under
    another thread's feet): the loader's temporary names are unique per call."""
    for n in range(20):
        path = tmp_path / f"round{n}" / "person.key"
        start = threading.Barrier(6)
        found: list[bytes] = []
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_load_at, args=(path, start, found, errors)) for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(set(found)) == 1 and len(found) == 6
        assert os.listdir(path.parent) == ["person.key"]


def test_a_configured_key_wins_and_both_keys_use_the_one_loader(tmp_path: Path) -> None:
    assert load_person_key("configured", tmp_path) == b"configured"
    assert not (tmp_path / "person.key").exists()
    person, portal = load_person_key("", tmp_path), load_portal_key("", tmp_path)
    assert person != portal and len(person) == len(portal) == 64
    assert load_person_key("", tmp_path) == person  # read back, not regenerated
    assert (tmp_path / "person.key").read_text().encode() == person


# --------------------------------------------------------------------------- the signer


def test_signer_tokens_are_bound_to_their_key_purpose_and_expiry() -> None:
    signer = Signer(b"k" * 32)
    plain = signer.sign("ctx", b"payload")
    assert signer.unsign("ctx", plain) == b"payload"
    assert signer.unsign("device", plain) is None  # wrong purpose
    assert Signer(b"x" * 32).unsign("ctx", plain) is None  # wrong key
    assert signer.unsign("ctx", plain, now=0) is None  # an expiry was expected
    timed = signer.sign("device", b"pid|tid", expires=1000)
    assert signer.unsign("device", timed, now=999) == b"pid|tid"
    assert signer.unsign("device", timed, now=1000) == b"pid|tid"  # the last second
    assert signer.unsign("device", timed, now=1000.5) is None  # expired
    assert signer.unsign("device", timed) is None  # no expiry was expected
    assert signer.unsign("csrf", timed, now=999) is None  # wrong purpose
    body, expires, tag = timed.split(".")
    assert signer.unsign("device", f"{body}.{int(expires) + 1}.{tag}", now=999) is None
    assert signer.unsign("device", f"{b64(b'pid|other')}.{expires}.{tag}", now=999) is None
    assert signer.unsign("device", f"{body}.{expires}.{tag[:-2]}AA", now=999) is None
    # a non-expiring token re-labelled as an expiring one (same payload and tag)
    pbody, ptag = plain.split(".")
    assert signer.unsign("ctx", f"{pbody}.99999999999.{ptag}", now=0) is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "no-dot", "a.b.c.d", "\udcff.\udcfe", "a.-1.b", "a.１２.b", "a." + "9" * 40 + ".b"],
)
def test_signer_refuses_malformed_tokens_without_raising(token: str) -> None:
    signer = Signer(b"k" * 32)
    assert signer.unsign("device", token) is None
    assert signer.unsign("device", token, now=0) is None


def test_signer_digests_are_per_purpose_and_take_any_form_text() -> None:
    signer = Signer(b"k" * 32)
    assert signer.digest("csrf", "n") != signer.digest("otp", "n")
    assert len(signer.digest("csrf", "\udcff")) == 32  # form bytes that were not UTF-8
    with pytest.raises(ValueError):
        signer.sign("Not a label\x00", b"")


# --------------------------------------------------------------------------- requests


def mocked(
    handler: Handler,
    *,
    method: str = "GET",
    path: str = "/x",
    headers: dict[str, str] | None = None,
    app: web.Application | None = None,
) -> web.Request:
    """A request without a socket, matched to ``handler`` as the router would."""
    app = app if app is not None else web.Application()
    request = make_mocked_request(method, path, headers=headers or {}, app=app)
    route = web.PlainResource(path).add_route(method, handler)
    match_info = UrlMappingMatchInfo({}, route)
    match_info.add_app(app)
    request._match_info = match_info
    return request


def raising(exc: BaseException) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    return handler


async def answer(handler: Handler, **kw: Any) -> tuple[int, dict[str, Any], web.StreamResponse]:
    response = await errors(mocked(handler, **kw), handler)
    assert isinstance(response, web.Response) and response.body is not None
    assert response.content_type == "application/json" and response.charset == "utf-8"
    body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    return response.status, body, response


# --------------------------------------------------------------------------- the middleware


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (RequestError("bad_phone", 400, "not a number"), 400, "bad_phone"),
        (AdminError(404, "not_found", "no such person"), 404, "not_found"),
        (PortalError("csrf", 403), 403, "csrf"),
        (StoreUnavailable("connection refused"), 503, "store_unavailable"),
        (PeriodError("bad_range", "'to' must not be before 'from'"), 400, "bad_range"),
        (web.HTTPRequestEntityTooLarge(max_size=10, actual_size=11), 413, "too_large"),
        (HttpProcessingError(message="bad chunk"), 400, "bad_request"),
        (KeyError("secret-detail"), 500, "internal"),
    ],
)
async def test_every_error_kind_becomes_its_status_and_the_documented_body(
    exc: Exception, status: int, code: str
) -> None:
    with structlog.testing.capture_logs() as events:
        got, body, _ = await answer(raising(exc))
    assert (got, body["error"]) == (status, code)
    assert set(body) == {"error", "message"} and body["message"]
    assert "secret-detail" not in json.dumps(body)  # never leaks
    logged = [e for e in events if e["event"].startswith("http.")]
    if status == 500:
        assert [e["event"] for e in logged] == ["http.internal_error"]
        assert logged[0]["log_level"] == "error" and logged[0].get("exc_info")
    elif status == 503:
        assert [e["event"] for e in logged] == ["http.store_unavailable"]
    else:
        assert logged == []


async def test_retry_after_and_www_authenticate_are_headers_of_the_answer() -> None:
    exc = RequestError("rate_limited", 429, "slow down", retry_after=42)
    status, body, response = await answer(raising(exc))
    assert (status, response.headers["Retry-After"]) == (429, "42")
    assert "retry_after" not in body  # the header; the portal's API adds the member itself
    challenge = {"WWW-Authenticate": 'Bearer realm="citywifi"'}
    status, _, response = await answer(raising(RequestError("x", 401, "y", headers=challenge)))
    assert response.headers["WWW-Authenticate"] == challenge["WWW-Authenticate"]


async def test_aiohttp_answers_and_body_timeouts_pass_through() -> None:
    with pytest.raises(web.HTTPSeeOther):
        await errors(mocked(raising(web.HTTPSeeOther("/r"))), raising(web.HTTPSeeOther("/r")))
    with pytest.raises(web.HTTPNotFound):
        await errors(mocked(raising(web.HTTPNotFound())), raising(web.HTTPNotFound()))
    with pytest.raises(BodyTimeout):  # http_edge.body_deadline answers it, and closes
        await errors(mocked(raising(BodyTimeout())), raising(BodyTimeout()))


async def test_success_passes_and_a_marked_route_has_its_own_renderer() -> None:
    async def fine(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    assert (await errors(mocked(fine), fine)).status == 200
    seen: list[str] = []

    def page(request: web.Request, error: RequestError) -> web.StreamResponse:
        seen.append(error.code)
        return web.Response(status=error.status, text="<p>sorry</p>", content_type="text/html")

    handler = renders_errors(page)(raising(StoreUnavailable("down")))
    response = await errors(mocked(handler), handler)
    assert (response.status, response.content_type, seen) == (
        503,
        "text/html",
        ["store_unavailable"],
    )
    assert renderer_of(mocked(raising(KeyError()))) is render_json


# --------------------------------------------------------------------------- CSRF

PAGE = Csrf("cw_test_csrf", path="/p", samesite="Strict")
NONCE = "n" * 43


async def _none(request: web.Request) -> web.StreamResponse:
    return web.Response()


def with_cookie(cookie: str = "", **headers: str) -> web.Request:
    if cookie:
        headers["Cookie"] = cookie
    return mocked(_none, method="POST", headers={"Host": "portal.example", **headers})


def test_csrf_token_is_bound_to_the_nonce_the_binding_and_the_host() -> None:
    signer = Signer(b"k" * 32)
    token = form_token(signer, NONCE, "ctx-a")
    good = with_cookie(f"cw_test_csrf={NONCE}")
    assert PAGE.check(good, signer, token, "ctx-a")
    assert not PAGE.check(good, signer, token, "ctx-b")  # another page's context
    assert not PAGE.check(good, Signer(b"x" * 32), token, "ctx-a")  # another key
    assert not PAGE.check(good, signer, "", "ctx-a")
    assert not PAGE.check(good, signer, token.upper(), "ctx-a")
    assert not PAGE.check(good, signer, "\udcff" * 32, "ctx-a")  # never raises
    other_nonce = with_cookie(f"cw_test_csrf={'m' * 43}")
    assert not PAGE.check(other_nonce, signer, token, "ctx-a")
    # cookie tossing: the planted cookie *is* the form value; a plain echo would pass
    planted = with_cookie(f"cw_test_csrf={NONCE}")
    assert not PAGE.check(planted, signer, NONCE, "ctx-a")
    assert not PAGE.check(with_cookie(), signer, token, "ctx-a")  # no cookie
    assert not PAGE.check(with_cookie("cw_test_csrf=short"), signer, token, "ctx-a")
    assert not PAGE.check(with_cookie("cw_csrf=" + NONCE), signer, token, "ctx-a")  # not ours
    cross = with_cookie(f"cw_test_csrf={NONCE}", Origin="https://evil.example")
    assert not PAGE.check(cross, signer, token, "ctx-a")
    same = with_cookie(f"cw_test_csrf={NONCE}", Origin="https://portal.example")
    assert PAGE.check(same, signer, token, "ctx-a")
    private = with_cookie(f"cw_test_csrf={NONCE}", Origin="null")
    assert PAGE.check(private, signer, token, "ctx-a")


def test_csrf_nonce_cookie_is_new_once_and_set_as_the_site_asks() -> None:
    nonce, new = PAGE.nonce_for(with_cookie())
    assert new and len(nonce) == 43
    assert PAGE.nonce_for(with_cookie(f"cw_test_csrf={nonce}")) == (nonce, False)
    response = web.Response()
    PAGE.set_cookie(response, nonce, secure=True, max_age=60)
    morsel = response.cookies["cw_test_csrf"]
    assert (morsel.value, morsel["path"], morsel["samesite"], morsel["max-age"]) == (
        nonce, "/p", "Strict", "60",
    )  # fmt: skip
    assert morsel["httponly"] and morsel["secure"]


# --------------------------------------------------------------------------- roles


@pytest.fixture
def api_app(tmp_path: Path) -> web.Application:
    """The reports, audit and admin route tables with the config in force, nothing
    else: the role check runs before any handler touches a resource."""
    app = web.Application()
    app[LIVE] = LiveConfig(load_config(city_config(tmp_path, "redis://127.0.0.1:1/0")))
    reports.add_routes(app)
    audit.add_routes(app)
    admin.add_routes(app)
    person_erase.add_routes(app)
    return app


def protected_routes(app: web.Application) -> list[tuple[str, str, Handler, str]]:
    found = []
    for route in app.router.routes():
        info = route.get_info()
        path = info.get("path") or info.get("formatter", "")
        role = role_of(route.handler)
        if path.startswith("/api/"):
            assert role is not None, f"{route.method} {path} is an API route without a role"
        if role is not None:
            found.append((route.method, path, route.handler, role))
    return found


async def test_every_api_route_declares_its_role(api_app: web.Application) -> None:
    roles = {(m, p): r for m, p, _, r in protected_routes(api_app) if m != "HEAD"}
    assert roles == {
        ("GET", "/api/v1/reports/subsidy"): "reports",
        ("GET", "/api/v1/audit/export"): "audit",
        ("GET", "/api/v1/audit/who"): "audit",  # and admin (without the phone)
        ("GET", "/api/v1/admin/sessions"): "admin",
        ("POST", "/api/v1/admin/disconnect"): "admin",
        ("POST", "/api/v1/admin/block"): "admin",
        ("POST", "/api/v1/admin/unblock"): "admin",
        ("POST", "/api/v1/admin/revoke-devices"): "admin",
        ("GET", "/api/v1/admin/eap/credentials"): "admin",
        ("POST", "/api/v1/admin/eap/revoke"): "admin",
        ("POST", "/api/v1/admin/erase"): "admin",
    }


async def test_every_protected_route_refuses_missing_bad_and_wrong_role_tokens(
    api_app: web.Application,
) -> None:
    for method, path, handler, role in protected_routes(api_app):
        for auth in ("", "Basic YWRtaW46YWRtaW4=", "Bearer ", "bearer"):
            status, body, response = await answer(
                handler, method=method, path=path, app=api_app, headers={"Authorization": auth}
            )
            assert (status, body["error"]) == (401, "unauthorized"), (path, auth)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for token in (TOKENS[role][:-1], TOKENS[role] + "x", TOKENS[role].upper()):
            headers = {"Authorization": f"Bearer {token}"}
            status, body, _ = await answer(
                handler, method=method, path=path, app=api_app, headers=headers
            )
            assert (status, body["error"]) == (401, "invalid_token"), (path, token)
        for other, token in TOKENS.items():
            if other in roles_of(handler):
                continue
            headers = {"Authorization": f"Bearer {token}"}
            status, body, _ = await answer(
                handler, method=method, path=path, app=api_app, headers=headers
            )
            assert (status, body["error"]) == (403, "forbidden"), (path, other)


async def test_the_right_token_reaches_the_handler_with_its_principal() -> None:
    seen: list[Principal] = []

    @requires("reports")
    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request[PRINCIPAL])
        return web.Response(text="ok")

    app = web.Application()
    app[LIVE] = LiveConfig(load_config(city_config(Path(tempfile.mkdtemp()), "redis://x:1/0")))
    headers = {"Authorization": f"Bearer {TOKENS['reports']}"}
    response = await errors(mocked(handler, app=app, headers=headers), handler)
    assert response.status == 200 and [p.name for p in seen] == ["it-bureau"]
    assert role_of(handler) == "reports"
