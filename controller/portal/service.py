"""The portal's flows, free of HTTP: ask for a code, log in with it (or with a
remembered device), a person's standing today, log out, what an address is doing.

Pages (``routes``) and the JSON API call the same methods, so both behave alike. Every
refusal is a ``PortalError``; the edge turns it into a page or a JSON error.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import structlog
from prometheus_client import Counter

from controller import quota
from controller.access import Outcome, blocked_until, decide_access
from controller.config import Client, Config, Venue
from controller.identity import person_id
from controller.logins import issue_login
from controller.phone import PhoneError, normalize_phone
from controller.portal.errors import PortalError
from controller.portal.handoff import Handoff, NasRedirect, build_handoff, chilli_md_ok
from controller.portal.i18n import Catalog
from controller.portal.otp import CODE_TTL, OtpBook, Verdict
from controller.portal.ratelimit import RateLimiter, ip_bucket
from controller.portal.signing import Signer, load_portal_key
from controller.portal.sms import SmsSender, make_sender
from controller.registry import Registry
from controller.store import Store

if TYPE_CHECKING:
    from controller.app import Controller

log = structlog.get_logger("citywifi.portal")

CONTEXT_TTL: Final = 12 * 3600  # a NAS redirect context is good for this long
CLIENT_MEMORY_TTL: Final = 86400  # what an address did, for RFC 8908 answers and logout

CODE_REQUESTS = Counter(
    "citywifi_portal_code_requests_total",
    "SMS code requests, by result (sent, rate_limited, invalid_phone, sms_failed, …)",
    ["result"],
)
LOGINS = Counter(
    "citywifi_portal_logins_total",
    "Credentials issued by the portal, by NAS vendor and how the person was recognised",
    ["vendor", "method"],
)
REFUSED = Counter("citywifi_portal_refused_total", "Portal logins refused, by reason", ["reason"])

_OUTCOME_ERRORS: Final = {
    Outcome.BLOCKED: ("blocked", 403),
    Outcome.EXHAUSTED: ("allowance_used_up", 403),
    Outcome.DEVICE_LIMIT: ("device_limit", 409),
}


@dataclass(frozen=True, slots=True)
class Place:
    """The NAS a redirect came from and the venue it serves (both None: no NAS named)."""

    client: Client | None = None
    venue: Venue | None = None

    @property
    def vendor(self) -> str:
        return self.client.vendor if self.client else "generic"


@dataclass(frozen=True, slots=True)
class Standing:
    """A person's day: what is left, until when, and which sessions are open."""

    pid: str
    used_today: int
    seconds_remaining: int
    daily_seconds: int
    resets_at: datetime
    max_devices: int
    sessions: list[dict[str, str]] = field(default_factory=list)

    @property
    def devices_online(self) -> int:
        return len(self.sessions)


@dataclass(frozen=True, slots=True)
class LoginResult:
    pid: str
    username: str
    password: str
    expires_in: int
    seconds_remaining: int
    resets_at: datetime
    handoff: Handoff
    place: Place


class Portal:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        cfg = controller.config
        self.signer = Signer(load_portal_key(cfg.portal.cookie_key, cfg.redis.data_dir))
        self.catalog = Catalog.load()
        self.sms: SmsSender = make_sender(cfg.sms)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what the controller holds now (SIGHUP swaps config and registry) ----------------

    @property
    def config(self) -> Config:
        return self.controller.config

    @property
    def store(self) -> Store:
        store = self.controller.store
        if store is None:
            raise PortalError("unavailable", 503)
        return store

    @property
    def registry(self) -> Registry:
        service = self.controller.service
        if service is None:
            raise PortalError("unavailable", 503)
        return service.registry

    def now(self) -> float:
        return float(self.controller.clock())

    # -- NAS redirect context -------------------------------------------------------

    def place(self, redirect: NasRedirect) -> Place:
        """Client and venue named by the redirect; ``unknown_venue`` for a NAS not ours."""
        if not redirect.nas_id:
            return Place()
        client = self.registry.client_by_nas(redirect.nas_id)
        if client is None:
            raise PortalError("unknown_venue", 404)
        return Place(client, self.registry.venue_for(client, redirect.called, redirect.nas_id))

    def check_signature(self, place: Place, md: str, candidates: list[str]) -> None:
        """CoovaChilli signs its redirect with the UAM secret (``md``): verify it."""
        client = place.client
        if client is None or client.vendor != "chilli" or not client.uam_secret:
            return
        if not chilli_md_ok(candidates, md, client.uam_secret):
            log.warning("portal.bad_md", client=client.id)
            raise PortalError("bad_redirect", 400, detail="md")

    def seal(self, redirect: NasRedirect) -> str:
        """The redirect as a signed token carried by the portal's forms and links."""
        payload = json.dumps({"r": redirect.to_dict(), "t": int(self.now())}, separators=(",", ":"))
        return self.signer.sign("ctx", payload.encode())

    def unseal(self, token: str) -> NasRedirect:
        if not token:
            return NasRedirect()
        payload = self.signer.unsign("ctx", token)
        try:
            data = json.loads(payload) if payload is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("r"), dict):
            raise PortalError("bad_redirect", 400, detail="context")
        if self.now() - float(data.get("t", 0)) > CONTEXT_TTL:
            raise PortalError("bad_redirect", 400, detail="expired")
        return NasRedirect.from_dict(data["r"])

    async def remember_address(self, address: str, redirect: NasRedirect, place: Place) -> None:
        """Note what the NAS said about this client (for RFC 8908 answers and logout)."""
        values = {
            "nas": place.client.id if place.client else "",
            "venue": place.venue.id if place.venue else "",
            "mac": redirect.mac,
            "ip": redirect.ip,
            "seen": str(int(self.now())),
        }
        for addr in {address, redirect.ip} - {""}:
            await self.store.remember_client(addr, values, CLIENT_MEMORY_TTL)

    # -- codes ----------------------------------------------------------------------

    def phone(self, raw: str) -> str:
        try:
            return normalize_phone(raw or "")
        except PhoneError:
            raise PortalError("invalid_phone", 400) from None

    async def request_code(
        self, phone_raw: str, redirect: NasRedirect, address: str, lang: str
    ) -> int:
        """Send a code to the number; returns seconds until another may be requested.

        Whether the number was seen before changes nothing in the answer."""
        try:
            e164 = self.phone(phone_raw)
            place = self.place(redirect)
            now = self.now()
            pid = person_id(e164, self.controller.person_key)
            limiter = RateLimiter(self.store, self.config.portal)
            await limiter.hit(
                [
                    ("ip", ip_bucket(address)),
                    ("nas", place.client.id if place.client else ""),
                    ("mac", redirect.mac),
                    ("phone", pid),
                ],
                int(now * 1000),
            )
            code = await OtpBook(self.store, self.signer).issue(pid, int(now))
            brand = self.config.brand.name.get(lang) or self.config.brand.ssid
            minutes = CODE_TTL // 60
            text = self.catalog.text(lang, "sms_text", brand=brand, code=code, minutes=minutes)
            sent_at = datetime.fromtimestamp(now, self.config.quota.timezone)
            await self.sms.send(e164, text, sent_at)
        except PortalError as exc:
            CODE_REQUESTS.labels(exc.code).inc()
            raise
        CODE_REQUESTS.labels("sent").inc()
        log.info("portal.code_sent", person=pid, nas=place.client.id if place.client else None)
        return self.config.portal.otp_resend_seconds

    # -- logins ---------------------------------------------------------------------

    async def login_with_code(
        self, phone_raw: str, code: str, redirect: NasRedirect, address: str
    ) -> LoginResult:
        e164 = self.phone(phone_raw)
        place = self.place(redirect)
        pid = person_id(e164, self.controller.person_key)
        outcome = await OtpBook(self.store, self.signer).verify(pid, code)
        if outcome.verdict is not Verdict.OK:
            REFUSED.labels(f"code_{outcome.verdict.value}").inc()
            log.info("portal.code_refused", person=pid, verdict=outcome.verdict.value)
            if outcome.verdict is Verdict.GONE:
                raise PortalError("code_expired", 410)
            if outcome.verdict is Verdict.LOCKED:
                raise PortalError("code_locked", 403)
            raise PortalError("wrong_code", 401, attempts_left=outcome.attempts_left)
        return await self._issue(e164, pid, place, redirect, address, "code")

    async def login_remembered(self, pid: str, redirect: NasRedirect, address: str) -> LoginResult:
        """A device with the portal cookie: no SMS step."""
        e164 = await self.store.person_phone(pid)
        if not e164:
            raise PortalError("not_logged_in", 401)
        return await self._issue(e164, pid, self.place(redirect), redirect, address, "remembered")

    async def _issue(
        self,
        e164: str,
        pid: str,
        place: Place,
        redirect: NasRedirect,
        address: str,
        method: str,
    ) -> LoginResult:
        policy = self.config.quota
        now = int(self.now())
        today = quota.day_key(quota.local_day(now, policy.timezone))
        state = await self.store.auth_state(
            pid, "", redirect.mac, today, now - int(policy.stale_grace)
        )
        decision = decide_access(
            state, credential=False, password_ok=False, mac=redirect.mac, policy=policy, now=now
        )
        if not decision.accept:
            REFUSED.labels(decision.outcome.value).inc()
            log.info("portal.login_refused", person=pid, reason=decision.outcome.value)
            code, status = _OUTCOME_ERRORS.get(decision.outcome, ("unavailable", 503))
            until = blocked_until(state.block, policy) if state.block else None
            raise PortalError(
                code,
                status,
                resets_at=quota.reset_time(now, policy.timezone),
                limit=policy.max_devices,
                until=until,
            )
        client = place.client
        uam_secret = client.uam_secret if client else ""
        uam_auth = client.uam_auth if client else "pap"
        build_handoff(place.vendor, redirect, "u", "p", uam_secret=uam_secret, uam_auth=uam_auth)
        issued = await issue_login(
            self.store,
            phone_e164=e164,
            mac=redirect.mac,
            person_key=self.controller.person_key,
            ttl=policy.login_ttl,
            now=now,
        )
        handoff = build_handoff(
            place.vendor,
            redirect,
            issued.username,
            issued.password,
            uam_secret=uam_secret,
            uam_auth=uam_auth,
        )
        await self.remember_address(address, redirect, place)
        for addr in {address, redirect.ip} - {""}:
            await self.store.remember_client(addr, {"pid": pid}, CLIENT_MEMORY_TTL)
        LOGINS.labels(place.vendor, method).inc()
        log.info(
            "portal.login",
            person=pid,
            nas=client.id if client else None,
            vendor=place.vendor,
            method=method,
        )
        return LoginResult(
            pid=pid,
            username=issued.username,
            password=issued.password,
            expires_in=issued.expires_in,
            seconds_remaining=quota.remaining_today(state.used_today, policy.daily_seconds),
            resets_at=quota.reset_time(now, policy.timezone),
            handoff=handoff,
            place=place,
        )

    # -- standing, logout -----------------------------------------------------------

    async def standing(self, pid: str) -> Standing:
        """Time left today, counting open sessions' time since their last report."""
        policy = self.config.quota
        now = int(self.now())
        today = quota.day_key(quota.local_day(now, policy.timezone))
        used = await self.store.used_on(pid, today)
        stale_before = now - int(policy.stale_grace)
        sessions = []
        running = 0
        for sid, fields_ in (await self.store.open_sessions(pid)).items():
            last = int(fields_.get("last") or now)
            if last + int(fields_.get("slack") or 0) < stale_before:  # a slow NAS's cadence
                continue
            running += max(0, now - last)
            sessions.append({"id": sid, **fields_})
        return Standing(
            pid=pid,
            used_today=used,
            seconds_remaining=max(0, policy.daily_seconds - used - running),
            daily_seconds=policy.daily_seconds,
            resets_at=quota.reset_time(now, policy.timezone),
            max_devices=policy.max_devices,
            sessions=sorted(sessions, key=lambda s: s.get("start", "")),
        )

    async def logout(self, pid: str, address: str) -> dict[str, Any]:
        """End this device's portal login: forget its MAC for re-authentication and, when
        the controller runs an enforcer, have it disconnect the device's open session(s)
        at the NAS (RFC 5176) in the background: a NAS that does not answer must not hold
        up the page. ``disconnect`` says ``requested``, ``unsupported`` or ``none``."""
        memory = await self.store.client_at(address)
        mac = memory.get("mac", "") if memory.get("pid") == pid else ""
        standing = await self.standing(pid)
        mine = [
            s for s in standing.sessions if (mac and s.get("mac") == mac) or s.get("ip") == address
        ]
        for m in {mac, *(s.get("mac", "") for s in mine)} - {""}:
            await self.store.forget_mac(m, pid)
        await self.store.remember_client(address, {"pid": ""}, CLIENT_MEMORY_TTL)
        sids = [s["id"] for s in mine]
        disconnect = self._disconnector(pid, sids, [s["id"] for s in standing.sessions])
        if disconnect is not None:
            task = asyncio.create_task(disconnect)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        status = "none" if not sids else "requested" if disconnect else "unsupported"
        log.info("portal.logout", person=pid, sessions=len(sids), disconnect=status)
        return {"sessions": len(sids), "disconnect": status}

    def _disconnector(
        self, pid: str, sids: list[str], all_sids: list[str]
    ) -> Coroutine[Any, Any, None] | None:
        """How to ask the enforcer (controller.enforcer, RFC 5176) to disconnect this
        device's sessions, or None when it cannot: ``disconnect_sessions(pid, sids)`` when
        the enforcer offers it, else ``disconnect_now(pid)`` when these are all the
        person's sessions (it disconnects a whole person, so not while other devices of
        the person are online)."""
        enforcer = getattr(self.controller, "enforcer", None)
        if enforcer is None or not sids:
            return None
        per_session = getattr(enforcer, "disconnect_sessions", None)
        whole_person = getattr(enforcer, "disconnect_now", None)
        if per_session is not None:
            call = functools.partial(per_session, pid, sids, reason="logout")
        elif whole_person is not None and set(sids) == set(all_sids):
            call = functools.partial(whole_person, pid, reason="logout")
        else:
            return None

        async def run() -> None:
            try:
                outcomes = await call()
            except Exception as exc:  # the logout stands; Session-Timeout still ends it
                log.warning("portal.disconnect_failed", person=pid, error=type(exc).__name__)
                return
            results = [getattr(o, "result", "") for o in outcomes]
            log.info("portal.disconnected", person=pid, results=results)

        return run()

    async def close(self) -> None:
        """Stop background disconnects and close the SMS backend (app cleanup)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sms.close()
