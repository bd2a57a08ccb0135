"""The console's person lookup (roles ``admin``, ``audit``): a person by mobile number,
today's usage, open sessions and block; and, for ``admin``, block (with a reason and a
number of days; their sessions are disconnected and their next Access-Request is
rejected), unblock, forget remembered devices, revoke the person's EAP ("connect
automatically") credentials, one or all, disconnecting the EAP sessions they opened
(issue 19). The actions are ``controller.services.admin``'s and
``controller.services.eap_revoke``'s, as for the admin API and CLI.

The number is posted, never put in a URL (browser history, proxy logs); every lookup
and every action is an audit record naming the console account (``lookup``, ``block``,
``unblock``, ``forget-devices``, ``eap_revoke``; the target is the person id, never the
number).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from controller.domain.accounts import Account
from controller.domain.eap_credentials import EapCredential
from controller.services.admin import (
    MAX_BLOCK_DAYS,
    AdminError,
    block,
    block_until,
    person_status,
    resolve_person,
    revoke_devices,
    unblock,
)
from controller.services.eap_revoke import list_credentials, revoke_credentials
from controller.storage.accounts import AccountStore
from controller.storage.store import StoreUnavailable
from controller.web.console import guard, lang, pages
from controller.web.console.common import allowed, brand, read_form
from controller.web.resources import CLOCK, ENFORCER, LIVE, PERSON_KEY, STORE

PATH = f"{guard.PATH}/person"


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """One live EAP credential as the page lists it (never its hash)."""

    username: str
    label: str
    expires: str  # local time, the city's zone


def credential_rows(
    credentials: list[EapCredential], now: int, tz: ZoneInfo
) -> list[CredentialRow]:
    return [
        CredentialRow(
            c.username,
            c.label,
            datetime.fromtimestamp(c.expires_at, tz).strftime("%Y-%m-%d %H:%M"),
        )
        for c in credentials
        if c.valid_at(now)
    ]


ACTIONS = ("block", "unblock", "forget-devices", "revoke-eap")


def _page(
    request: web.Request,
    account: Account,
    *,
    status: dict[str, Any] | None = None,
    credentials: list[CredentialRow] | None = None,
    notice: str = "",
    error: str = "",
    code: int = 200,
) -> web.Response:
    token, nonce, new = guard.form_token(request)
    language = lang.of(request)
    response = pages.html(
        pages.render(
            "person.html",
            lang=language,
            title=lang.text(language, "person.title"),
            brand=brand(request),
            user=account.name,
            csrf=token,
            p=status,
            credentials=credentials or [],
            notice=notice,
            error=error,
            can_act=guard.may(account, "POST", f"{PATH}/block"),
        ),
        status=code,
    )
    if new:
        guard.set_nonce(response, nonce)
    lang.remember(request, response)
    return response


async def search(request: web.Request) -> web.Response:
    """``GET /console/person``: the lookup form."""
    account = await allowed(request)
    return account if isinstance(account, web.Response) else _page(request, account)


async def act(request: web.Request) -> web.Response:
    """``POST /console/person`` (phone | person) and ``POST /console/person/<action>``."""
    account = await allowed(request)
    if isinstance(account, web.Response):
        return account
    language = lang.of(request)
    form = await read_form(request)
    if form is None or not guard.form_ok(request, form):
        return _page(request, account, error=lang.text(language, "error.form_expired"), code=403)
    app = request.app
    store, policy = app[STORE], app[LIVE].config.quota
    action = request.path.removeprefix(PATH).lstrip("/") or "lookup"
    now = int(app[CLOCK]())
    try:
        pid = resolve_person(
            phone=form.get("phone") or None,
            person=form.get("person") or None,
            person_key=app[PERSON_KEY],
        )
        notice = ""
        if action == "block":
            days = form.get("days", "1").strip()
            if not (days.isascii() and days.isdigit() and len(days) <= 4):
                raise AdminError(400, "bad_days", "days is a whole number")
            until = block_until(now, policy.timezone, until=None, days=int(days))
            done = await block(
                store,
                app[ENFORCER],
                policy,
                pid,
                now=now,
                until=until,
                reason=form.get("reason", ""),
            )
            notice = lang.text(language, "person.blocked_notice", count=len(done["disconnected"]))
        elif action == "unblock":
            was = (await unblock(store, pid))["was_blocked"]
            notice = lang.text(language, "person.unblocked" if was else "person.was_not_blocked")
        elif action == "forget-devices":
            revoked = (await revoke_devices(store, pid))["revoked"]
            notice = lang.text(language, "person.forgotten", count=revoked)
        if action == "revoke-eap":  # audited by revoke_credentials itself (eap_revoke)
            result = await revoke_credentials(
                store,
                app[ENFORCER],
                pid,
                form.get("credential") or None,
                realm=app[LIVE].config.passpoint.realm,
                now=now,
                by=account.name,
                address=guard.address(request),
            )
            notice = lang.text(
                language,
                "person.eap_revoked",
                count=len(result.revoked),
                sessions=len(result.disconnected),
            )
        else:
            await AccountStore(store).audit(
                {
                    "t": str(now),
                    "user": account.name,
                    "action": action,
                    "target": pid,
                    "result": "ok",
                    "address": guard.address(request),
                }
            )
        status = await person_status(store, policy, pid, now)
        credentials = credential_rows(await list_credentials(store, pid), now, policy.timezone)
    except AdminError as exc:  # its code named in the page's language, else its message
        error = lang.error_text(language, exc.code, exc.message, max=MAX_BLOCK_DAYS)
        return _page(request, account, error=error, code=exc.status)
    except StoreUnavailable:
        return _page(request, account, error=lang.text(language, "error.unavailable"), code=503)
    return _page(request, account, status=status, credentials=credentials, notice=notice)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, search)
    app.router.add_post(PATH, act)
    for action in ACTIONS:
        app.router.add_post(f"{PATH}/{action}", act)
