"""The portal's flows, free of HTTP: ask for a code, log in with it (or with a
remembered device), a person's standing today, log out, what an address is doing.

Pages (``routes``) and the JSON API call the same methods, so both behave alike. Every
refusal is a ``PortalError``; the edge turns it into a page or a JSON error.

Trust (issue 13): every query parameter and body field is the citizen's to choose. So a
flow needs a configured NAS client (``nas_required``, ``unknown_venue``: no code, no
credential without one) and hands a credential only where that client allows
(``handoff.HandoffTargets``); an address is believed from the connection, or from the
NAS's redirect only when the NAS signed it (CoovaChilli ``md``); nothing is written to
Redis for a page view; the SMS and login limits count per ``Requester.device``, which
a stranger cannot choose for someone else.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog
from prometheus_client import Counter, Gauge

from controller.config import Client, Config, Venue
from controller.domain import quota
from controller.domain.access import Outcome, blocked_until, decide_access
from controller.domain.identity import person_id
from controller.domain.phone import CountryNotAllowed, PhoneError, normalize_phone
from controller.domain.registry import Registry
from controller.domain.state import PersonState
from controller.services.enforcer import Enforcer
from controller.services.live import LiveConfig
from controller.services.logins import issue_login
from controller.services.portal.errors import PortalError
from controller.services.portal.handoff import (
    Handoff,
    HandoffTargets,
    NasRedirect,
    build_handoff,
    check_targets,
    chilli_md_ok,
)
from controller.services.portal.i18n import Catalog
from controller.services.portal.otp import CODE_TTL, OtpBook, Verdict
from controller.services.portal.otp import Outcome as CodeOutcome
from controller.services.portal.ratelimit import RateLimiter, code_dims, ip_bucket, verify_dims
from controller.services.portal.sms import SmsSender, make_sender
from controller.services.signing import Signer
from controller.storage.store import Store

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
RATE_LIMITED = Counter(
    "citywifi_portal_rate_limited_total",
    "Portal requests refused by a rate limit, by the limit (ip, ip48, nas, phone, global, "
    "verify_ip, page, mint, …)",
    ["limit"],
)
SMS_CEILING = Counter(
    "citywifi_portal_sms_ceiling_reached_total",
    "Code requests refused because the city-wide hourly SMS ceiling was reached (alarm)",
)
SMS_CEILING_LIMIT = Gauge(
    "citywifi_portal_sms_global_hour_limit",
    "The configured city-wide ceiling of SMS codes per hour ([portal] otp_global_hour)",
)
DEVICE_TOKENS_KEPT = 20  # remembered-device cookies honoured per person (newest)

_OUTCOME_ERRORS: Final = {
    Outcome.BLOCKED: ("blocked", 403),
    Outcome.EXHAUSTED: ("allowance_used_up", 403),
    Outcome.DEVICE_LIMIT: ("device_limit", 409),
}


@functools.lru_cache(maxsize=1024)
def _normalized(raw: str, allowed: tuple[str, ...]) -> str:
    """``normalize_phone``, memoised: a login parses the number its code request parsed
    a moment before (refusals raise, and are not kept). Bounded, in this process only."""
    return normalize_phone(raw, allowed_countries=allowed)


def _settled(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a read that is no longer needed (no "never retrieved")."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class NasContext:
    """A NAS redirect as the portal carries it: ``signed`` when the NAS vouched for it
    (CoovaChilli ``md`` verified with the client's ``uam_secret``); then its ``mac``,
    ``ip`` and ``uamip`` are the NAS's word, otherwise only the citizen's."""

    redirect: NasRedirect = field(default_factory=NasRedirect)
    signed: bool = False


@dataclass(frozen=True, slots=True)
class Requester:
    """Who is asking, as far as a stranger cannot fake it for someone else: the source
    address (the connection, or ``X-Forwarded-For`` from a trusted proxy) and the device
    (``Portal.device_of``: the MAC of a signed redirect, else the browser's random
    ``cw_csrf`` nonce, else the source address)."""

    address: str
    device: str


@dataclass(frozen=True, slots=True)
class Place:
    """The configured client a redirect came from and the venue it serves."""

    client: Client
    venue: Venue | None = None

    @property
    def vendor(self) -> str:
        return self.client.vendor


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
    # the remembered-device token stored with the login (id, expiry), for the cookie;
    # None when ``[portal] cookie_days`` is 0
    device_token: tuple[str, int] | None = None


class Portal:
    """The portal's flows over the resources it is given: the live config and registry,
    the store, the person-id key, the clock and (for logout) the quota enforcer."""

    def __init__(
        self,
        live: LiveConfig,
        store: Store,
        *,
        person_key: bytes,
        signer: Signer,
        clock: Callable[[], float] = time.time,
        enforcer: Enforcer | None = None,
    ) -> None:
        self.live = live
        self.store = store
        self.person_key = person_key
        self.clock = clock
        self.enforcer = enforcer
        cfg = live.config
        self.signer = signer  # the portal key's (cli/serve loads it: storage/keyfiles)
        self.catalog = Catalog.load()
        self.sms: SmsSender = make_sender(cfg.sms)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rate: tuple[Config, RateLimiter] | None = None
        self._handoff_targets: dict[str, tuple[Client, HandoffTargets]] = {}
        SMS_CEILING_LIMIT.set(cfg.portal.otp_global_hour)

    # -- what is in force now (SIGHUP swaps config and registry) -------------------------

    @property
    def config(self) -> Config:
        return self.live.config

    @property
    def registry(self) -> Registry:
        return self.live.registry

    def now(self) -> float:
        return float(self.clock())

    # -- NAS redirect context -------------------------------------------------------

    def client_of(self, redirect: NasRedirect) -> Client:
        """The configured client the redirect names: ``nas_required`` when it names none
        (no code and no credential without a known NAS), ``unknown_venue`` when it is
        not one of ours."""
        if not redirect.nas_id:
            raise PortalError("nas_required", 400, ssid=self.config.brand.ssid)
        client = self.registry.client_by_nas(redirect.nas_id)
        if client is None:
            raise PortalError("unknown_venue", 404)
        return client

    def place(self, ctx: NasContext) -> Place:
        """Client and venue of a context, refusing a hand-off target its client does not
        allow (``handoff_not_allowed``) before anyone types a number."""
        redirect = ctx.redirect
        client = self.client_of(redirect)
        try:
            check_targets(client.vendor, redirect, self._targets(client), ctx.signed)
        except PortalError as exc:
            if exc.code == "handoff_not_allowed":
                log.warning("portal.handoff_refused", client=client.id, target=exc.values)
            raise
        return Place(client, self.registry.venue_for(client, redirect.called, redirect.nas_id))

    def _targets(self, client: Client) -> HandoffTargets:
        """The client's hand-off targets, made once per configured client (a SIGHUP's
        new config has new ``Client`` objects, so a reload is seen)."""
        known = self._handoff_targets.get(client.id)
        if known is None or known[0] is not client:
            known = self._handoff_targets[client.id] = (client, HandoffTargets.of(client))
        return known[1]

    def verify_md(self, client: Client, md: str, candidates: list[str]) -> bool:
        """CoovaChilli signs its redirect with the UAM secret (``md``): with a secret the
        signature is required; True when it verified (the redirect is the NAS's word)."""
        if client.vendor != "chilli" or not client.uam_secret:
            return False
        if not chilli_md_ok(candidates, md, client.uam_secret):
            log.warning("portal.bad_md", client=client.id)
            raise PortalError("bad_redirect", 400, detail="md")
        return True

    def seal(self, ctx: NasContext) -> str:
        """The context as a signed token carried by the portal's forms and links."""
        data = {"r": ctx.redirect.to_dict(), "t": int(self.now()), "s": int(ctx.signed)}
        return self.signer.sign("ctx", json.dumps(data, separators=(",", ":")).encode())

    def unseal(self, token: str) -> NasContext:
        if not token:
            return NasContext()
        payload = self.signer.unsign("ctx", token)
        try:
            data = json.loads(payload) if payload is not None else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("r"), dict):
            raise PortalError("bad_redirect", 400, detail="context")
        if self.now() - float(data.get("t", 0)) > CONTEXT_TTL:
            raise PortalError("bad_redirect", 400, detail="expired")
        return NasContext(NasRedirect.from_dict(data["r"]), data.get("s") == 1)

    def device_of(self, ctx: NasContext, nonce: str, address: str) -> str:
        """The device a request comes from, as a stranger cannot name it for someone
        else: the MAC of a NAS-signed redirect, else the browser's random nonce (the
        ``cw_csrf`` cookie), else the source address (an IPv6 one by its /64). Opaque."""
        if ctx.signed and ctx.redirect.mac:
            raw = f"mac:{ctx.redirect.mac}"
        elif nonce:
            raw = f"browser:{nonce}"
        else:
            raw = f"address:{ip_bucket(address)}"
        return self.signer.digest("device", raw)[:20]

    def _state_soon(self, pid: str, mac: str) -> asyncio.Future[PersonState]:
        """The person's state for a portal login's decision, queued in this tick's batch."""
        policy = self.config.quota
        now = int(self.now())
        today = quota.day_key(quota.local_day(now, policy.timezone))
        return self.store.auth_state_soon(pid, "", mac, today, now - int(policy.stale_grace), now)

    def _remember_address(
        self, who: Requester, ctx: NasContext, place: Place, pid: str
    ) -> asyncio.Future[None]:
        """At a login, note what this client is and who logged in (RFC 8908 answers,
        logout): by its connection address, and by the redirect's ``ip`` only when the NAS
        signed it. One unit of the store's batched link for both addresses, queued now."""
        redirect = ctx.redirect
        values = {
            "nas": place.client.id,
            "venue": place.venue.id if place.venue else "",
            "mac": redirect.mac,
            "ip": redirect.ip if ctx.signed else who.address,
            "seen": str(int(self.now())),
            "pid": pid,
        }
        addresses = sorted({who.address, redirect.ip if ctx.signed else ""} - {""})
        return self.store.remember_clients_soon(addresses, values, CLIENT_MEMORY_TTL)

    def _limiter(self) -> RateLimiter:
        """The limiter of the config in force (made again after a SIGHUP swapped it)."""
        config = self.config
        if self._rate is None or self._rate[0] is not config:
            limiter = RateLimiter(self.store, config.portal, config.quota.max_devices)
            self._rate = (config, limiter)
        return self._rate[1]

    async def _limit(self, dims: list[tuple[str, str]]) -> None:
        try:
            await self._limiter().hit(dims, int(self.now() * 1000))
        except PortalError as exc:
            limit = str(exc.values.get("limit", ""))
            RATE_LIMITED.labels(limit).inc()
            if limit == "global":
                SMS_CEILING.inc()
                log.warning("portal.sms_ceiling_reached", limit=self.config.portal.otp_global_hour)
            raise

    async def page_view(self, address: str) -> None:
        """Count a portal page view of a source (``rate_limited`` beyond the limit). The
        only Redis write of a page view: keyed by the connection, never a parameter."""
        await self._limit([("page", ip_bucket(address))])

    # -- codes ----------------------------------------------------------------------

    def phone(self, raw: str) -> str:
        try:
            return _normalized(raw or "", self.config.sms.allowed_country_codes)
        except CountryNotAllowed:
            codes = ", ".join(self.config.sms.allowed_country_codes)
            raise PortalError("country_not_allowed", 400, codes=codes) from None
        except PhoneError:
            raise PortalError("invalid_phone", 400) from None

    async def request_code(self, phone_raw: str, ctx: NasContext, who: Requester, lang: str) -> int:
        """Send a code to the number; returns seconds until another may be requested.

        Whether the number was seen before changes nothing in the answer."""
        SMS_CEILING_LIMIT.set(self.config.portal.otp_global_hour)
        try:
            e164 = self.phone(phone_raw)
            place = self.place(ctx)
            now = self.now()
            pid = person_id(e164, self.person_key)
            await self._limit(code_dims(who.address, place.client.id, who.device, pid))
            code = await OtpBook(self.store, self.signer).issue(pid, who.device, int(now))
            brand = self.config.brand.name.get(lang) or self.config.brand.ssid
            minutes = CODE_TTL // 60
            text = self.catalog.text(lang, "sms_text", brand=brand, code=code, minutes=minutes)
            sent_at = datetime.fromtimestamp(now, self.config.quota.timezone)
            await self.sms.send(e164, text, sent_at)
        except PortalError as exc:
            CODE_REQUESTS.labels(exc.code).inc()
            raise
        CODE_REQUESTS.labels("sent").inc()
        log.info("portal.code_sent", person=pid, nas=place.client.id)
        return self.config.portal.otp_resend_seconds

    # -- logins ---------------------------------------------------------------------

    async def login_with_code(
        self,
        phone_raw: str,
        code: str,
        ctx: NasContext,
        who: Requester,
        device: tuple[str, str] | None = None,
    ) -> LoginResult:
        """Verify the code of this phone *on this device*. Wrong, expired, used, locked
        or never sent: one answer (``wrong_code``), so a stranger learns nothing about a
        pending code; attempts are limited per source, NAS, device and phone.

        ``device``: the browser's remembered device (person, token id), if any; the login
        stores its token (the same one when it is this person's, ``remember_device``)."""
        e164 = self.phone(phone_raw)
        place = self.place(ctx)
        pid = person_id(e164, self.person_key)
        await self._limit(verify_dims(who.address, place.client.id, who.device, pid))
        book = OtpBook(self.store, self.signer)
        outcome = await book.check(pid, who.device, code)
        state: asyncio.Future[PersonState] | None = None
        if outcome.verdict is Verdict.OK:
            # the person's state rides in the same write as the code's single use (read
            # only: nothing is decided from it unless the code was this request's)
            state = self._state_soon(pid, ctx.redirect.mac)
            if not await book.consume(pid, who.device):  # a concurrent request used it
                outcome = CodeOutcome(Verdict.GONE)
        if outcome.verdict is not Verdict.OK:
            if state is not None:
                state.add_done_callback(_settled)
            REFUSED.labels(f"code_{outcome.verdict.value}").inc()
            log.info("portal.code_refused", person=pid, verdict=outcome.verdict.value)
            raise PortalError("wrong_code", 401)
        return await self._issue(e164, pid, place, ctx, who, "code", device, state)

    async def login_remembered(
        self, pid: str, ctx: NasContext, who: Requester, device: tuple[str, str] | None = None
    ) -> LoginResult:
        """A device with the portal cookie: no SMS step (``device`` as ``login_with_code``)."""
        e164 = await self.store.person_phone(pid)
        if not e164:
            raise PortalError("not_logged_in", 401)
        return await self._issue(e164, pid, self.place(ctx), ctx, who, "remembered", device)

    async def _issue(
        self,
        e164: str,
        pid: str,
        place: Place,
        ctx: NasContext,
        who: Requester,
        method: str,
        device: tuple[str, str] | None = None,
        state_soon: asyncio.Future[PersonState] | None = None,
    ) -> LoginResult:
        redirect = ctx.redirect
        policy = self.config.quota
        now = int(self.now())
        state = await (state_soon or self._state_soon(pid, redirect.mac))
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
        handoff_for = functools.partial(
            build_handoff,
            place.vendor,
            redirect,
            targets=self._targets(client),
            signed=ctx.signed,
            uam_secret=client.uam_secret,
            uam_auth=client.uam_auth,
            home_url=self.config.brand.home_url,
        )
        handoff_for("u", "p")  # refuse a bad hand-off before a credential exists
        # bounded minting: at most logins_per_device_hour x max_devices an hour (finding 9)
        await self._limit([("mint", pid)])
        # the address memory and the device token join the credential's write (one round
        # trip, no Task)
        token = self._device_token(pid, device, now)
        writes = [self._remember_address(who, ctx, place, pid)]
        if token is not None:
            tid, expires = token
            writes.append(
                self.store.device_token_put_soon(pid, tid, expires, now, DEVICE_TOKENS_KEPT)
            )
        try:
            issued = await issue_login(
                self.store,
                phone_e164=e164,
                mac=redirect.mac,
                client_id=client.id,
                person_key=self.person_key,
                ttl=policy.login_ttl,
                now=now,
            )
        except BaseException:
            for write in writes:
                write.add_done_callback(_settled)
            raise
        handoff = handoff_for(issued.username, issued.password)
        for write in writes:
            await write
        LOGINS.labels(place.vendor, method).inc()
        log.info("portal.login", person=pid, nas=client.id, vendor=place.vendor, method=method)
        return LoginResult(
            pid=pid,
            username=issued.username,
            password=issued.password,
            expires_in=issued.expires_in,
            seconds_remaining=quota.remaining_today(state.used_today, policy.daily_seconds),
            resets_at=quota.reset_time(now, policy.timezone),
            handoff=handoff,
            place=place,
            device_token=token,
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

    # -- remembered devices (the cw_dev cookie names a server-side token) ---------------

    def _device_token(
        self, pid: str, device: tuple[str, str] | None, now: int
    ) -> tuple[str, int] | None:
        """The remembered-device token a login stores: the browser's own while it has a
        valid one for the same person, else a new one; None without device cookies."""
        days = self.config.portal.cookie_days
        if days <= 0:
            return None
        tid = device[1] if device and device[0] == pid else secrets.token_urlsafe(12)
        return tid, now + days * 86400

    async def remember_device(self, pid: str, tid: str, expires: int) -> None:
        """Honour token ``tid`` of ``pid`` until ``expires`` (the newest few per person)."""
        await self.store.device_token_put(pid, tid, expires, int(self.now()), DEVICE_TOKENS_KEPT)

    async def device_valid(self, pid: str, tid: str) -> bool:
        return await self.store.device_token_valid(pid, tid, int(self.now()))

    async def logout(self, pid: str, address: str, tid: str = "") -> dict[str, Any]:
        """End this device's portal login: revoke its remembered-device token, forget
        its MAC for re-authentication and, when
        the controller runs an enforcer, have it disconnect the device's open session(s)
        at the NAS (RFC 5176) in the background: a NAS that does not answer must not hold
        up the page. ``disconnect`` says ``requested``, ``unsupported`` or ``none``."""
        if tid:
            await self.store.device_tokens_revoke(pid, tid)
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
        enforcer = self.enforcer
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
