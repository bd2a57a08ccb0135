"""``POST /console/sessions/disconnect-person`` (form: ref, csrf; role ``admin``): every
open session of the person of the listed session ``ref`` gets an RFC 5176
Disconnect-Request (``controller.services.person_disconnect``); the live-sessions page is
shown again with what each NAS answered. Audited with the console account."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web

from controller.domain.accounts import AccountError, operator_scope
from controller.services.enforcer import SessionOutcome
from controller.services.person_disconnect import disconnect_person
from controller.storage.store import StoreUnavailable
from controller.web.console import guard, lang, pages
from controller.web.console.common import allowed_form
from controller.web.resources import CLOCK, ENFORCER, LIVE, STORE

PATH = f"{guard.PATH}/sessions/disconnect-person"

SessionsPage = Callable[..., Awaitable[web.Response]]


def handler(sessions_page: SessionsPage) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def disconnect_all(request: web.Request) -> web.Response:
        signed = await allowed_form(request)
        if isinstance(signed, web.Response):
            return signed
        account, form = signed
        language = lang.of(request)
        try:
            done = await disconnect_person(
                request.app[STORE],
                request.app[ENFORCER],
                request.app[LIVE].config,
                form.get("ref", ""),
                scope=operator_scope(account),
                by=account.name,
                address=guard.address(request),
                now=int(request.app[CLOCK]()),
            )
        except AccountError as exc:
            status = 400 if exc.code == "bad_session" else 409
            return pages.html(lang.text(language, f"error.{exc.code}"), status=status)
        except StoreUnavailable:
            return pages.html(lang.text(language, "error.unavailable"), status=503)
        counted = Counter(o.result for o in done.outcomes)
        summary = ", ".join(
            f"{lang.code_name(language, 'result.', r)} {n}" for r, n in sorted(counted.items())
        )
        notice = lang.text(
            language,
            "sessions.disconnected_person",
            person=done.person[:6] + "…",
            count=len(done.outcomes),
            summary=summary or lang.text(language, "sessions.summary_none"),
        )
        results: tuple[SessionOutcome, ...] = done.outcomes
        return await sessions_page(request, notice=notice, results=results)

    return disconnect_all


def add_routes(app: web.Application, sessions_page: SessionsPage) -> None:
    app.router.add_post(PATH, handler(sessions_page))
