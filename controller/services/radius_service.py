"""The domain side of the RADIUS server: Access-Request and Accounting-Request handling.

Per request: read what the packet says (pure), one Redis round trip for the person's
state, decide (pure, in controller.domain.access), and on acceptance a second one that holds
the device's slot and consumes the credential atomically (plus one to look a MAC up),
encode. Redis errors become "no answer" so the NAS retransmits.

Accounting is tied to a person only by a Class this server signed for the sending client
(controller.domain.identity), or by a credential username issued for that client; anything
else is recorded for an anonymous person of that client.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from controller.config import Client, Config
from controller.domain import quota
from controller.domain.access import AccessDecision, Outcome, decide_access, reject
from controller.domain.audit import login_event
from controller.domain.identity import (
    chargeable_identity,
    class_key,
    new_nonce,
    person_of_username,
    sign_class,
    verify_class,
)
from controller.domain.mac import normalize_mac
from controller.domain.registry import Registry
from controller.domain.state import AccountingResult, AccountingWrite, Origin
from controller.storage import keys
from controller.storage.store import Store, StoreUnavailable
from radius import metrics
from radius.attrs import AcctStatus, Attr, Code, TerminateCause
from radius.packet import (
    PacketError,
    Request,
    attr,
    attr_int,
    attr_text_split,
    chap_challenge,
    chap_matches,
    decrypt_user_password,
)
from radius.server import Reply, request_source

log = structlog.get_logger("citywifi.radius")

MAX_DELAY = 86400  # an Acct-Delay-Time beyond a day is not believed
MAX_GENERATIONS_KEPT = 65536  # reused session ids whose generation this process remembers
STATUS_NAMES: dict[int, str] = {
    AcctStatus.START: "start",
    AcctStatus.STOP: "stop",
    AcctStatus.INTERIM_UPDATE: "interim",
    AcctStatus.ACCOUNTING_ON: "accounting_on",
    AcctStatus.ACCOUNTING_OFF: "accounting_off",
}


_COMMIT_REJECTS = {  # commit_login.lua's refusals
    "used": Outcome.CREDENTIAL_USED,
    "gone": Outcome.UNKNOWN_CREDENTIAL,
    "device_limit": Outcome.DEVICE_LIMIT,
}


@dataclass(frozen=True, slots=True)
class Admission:
    """The decision on an Access-Request, whom it is about, how they log in (credential
    or MAC), and the nonce of the login an acceptance starts (signed into its Class)."""

    decision: AccessDecision
    person: str | None = None
    credential: bool = False
    nonce: str = ""


def anonymous_person(client_id: str, user: str) -> str:
    """A stable stand-in id for accounting we cannot tie to a person (still recorded)."""
    return hashlib.sha256(f"anon|{client_id}|{user}".encode()).hexdigest()[:20]


def octets(request: Request, low: Attr, giga: Attr) -> int:
    return (request.integer(low) or 0) + ((request.integer(giga) or 0) << 32)


class AccountingObserver(Protocol):
    """Told of every recorded Start/Interim/Stop, before the Accounting-Response goes out:
    the quota enforcer (the person's due time, from the result's snapshot) and the online
    count (the NAS's last-seen time). Called synchronously: it must not block or await."""

    def accounted(self, write: AccountingWrite, result: AccountingResult) -> None: ...


class RadiusService:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        person_key: bytes,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = new_nonce,
        observers: Sequence[AccountingObserver] = (),
    ) -> None:
        self.store = store
        self.clock = clock
        self.nonce = nonce
        self.person_key = person_key  # keys the Chargeable-User-Identity (RFC 4372)
        self.class_key = class_key(person_key)  # signs and verifies Class (identity.py)
        self.registry = Registry(config)
        # told after each recorded Start/Interim/Stop, in order (see AccountingObserver)
        self.observers: tuple[AccountingObserver, ...] = tuple(observers)
        # "pid|client/Acct-Session-Id" -> its current generation, when above 1 (a reused
        # id): the next report goes to it in one round trip (Store.account checks it)
        self._generations: dict[str, int] = {}
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Swap in a new config (SIGHUP): precomputed reply parts are rebuilt once here."""
        self.config = config
        self.registry = Registry(config)
        q = config.quota
        self.policy = q
        self._accept_tail = attr_int(Attr.ACCT_INTERIM_INTERVAL, q.interim_interval) + (
            attr_int(Attr.IDLE_TIMEOUT, q.idle_timeout) if q.idle_timeout > 0 else b""
        )
        self._remember = q.remember_device_days * 86400
        level = getattr(logging, config.log.level.upper(), logging.INFO)
        self.log_requests = config.log.requests and level <= logging.INFO
        self.days = quota.DayClock(q.timezone)
        self._stale = quota.StaleRule(math.ceil(q.stale_grace), q.interim_interval)

    def peer_for(self, host: str) -> Client | None:
        return self.registry.client_for(host)

    # -- Access-Request -----------------------------------------------------------------

    async def access(self, client: Client, request: Request) -> Reply | None:
        now = int(self.clock())
        try:
            admission = await self._decide(client, request, now)
        except StoreUnavailable as exc:
            log.warning("radius.store_unavailable", port="auth", client=client.id, error=str(exc))
            return None
        except PacketError:
            admission = Admission(reject(Outcome.BAD_REQUEST))
        decision, pid = admission.decision, admission.person
        # the login record of the audit log (controller.services.audit), queued before answering
        event = login_event(self.registry, client, request, decision.outcome.value, pid, now)
        try:
            await self.store.outbox_add(event)
        except StoreUnavailable as exc:
            log.warning("radius.store_unavailable", port="auth", client=client.id, error=str(exc))
            return None
        venue = event["venue"]
        if decision.accept:
            assert pid is not None
            kind = "c" if admission.credential else "m"
            klass = sign_class(self.class_key, pid, kind, client.id, admission.nonce)
            attrs = (
                attr_int(Attr.SESSION_TIMEOUT, decision.session_timeout)
                + self._accept_tail
                + attr(Attr.CLASS, klass)
            )
            if request.get(Attr.CHARGEABLE_USER_IDENTITY) is not None:
                # RFC 4372 §2.1: a NAS that supports CUI asks with a nul value; the answer
                # is the person's, per venue operator (the same on every re-login)
                operator = self.config.venues[venue].operator if venue else ""
                cui = chargeable_identity(pid, operator, self.person_key)
                attrs += attr(Attr.CHARGEABLE_USER_IDENTITY, cui)
            return Reply(Code.ACCESS_ACCEPT, attrs, (pid, venue, "", "accept"))
        reason = decision.outcome.value
        metrics.REJECTS.labels(reason).inc()
        if not self.log_requests:  # else the request event says it
            log.info("radius.reject", client=client.id, person=pid, reason=reason)
        return Reply(
            Code.ACCESS_REJECT,
            attr_text_split(Attr.REPLY_MESSAGE, decision.message),
            (pid or "", venue, "", reason),
        )

    async def _decide(self, client: Client, request: Request, now: int) -> Admission:
        """The decision, the person it is about, whether a credential (not a MAC), and
        on acceptance the login's nonce."""
        user = request.text(Attr.USER_NAME)
        if not user:
            return Admission(reject(Outcome.BAD_REQUEST))
        mac = normalize_mac(request.text(Attr.CALLING_STATION_ID) or "") or ""
        pid = person_of_username(user)
        credential = pid is not None
        if pid is None:
            user_mac = normalize_mac(user)
            if user_mac is None:
                return Admission(reject(Outcome.UNKNOWN_CREDENTIAL))
            pid = await self.store.mac_owner(user_mac)
            if pid is None:
                return Admission(reject(Outcome.UNKNOWN_DEVICE))
            mac = mac or user_mac
        username = user if credential else ""
        host, port = request_source.get(("", 0))
        origin = Origin(
            client.id,
            request.text(Attr.ACCT_SESSION_ID) or "",
            request.authenticator.hex(),
            f"{host}:{port}",
        )
        today = self.days.key(now)
        stale_before = now - int(self.policy.stale_grace)
        state = await self.store.auth_state(pid, username, mac, today, stale_before, now)
        password_ok = False
        if credential and state.password:
            password_ok = self._password_ok(client, request, state.password.encode())
        decision = decide_access(
            state,
            credential=credential,
            password_ok=password_ok,
            mac=mac,
            policy=self.policy,
            now=now,
            origin=origin,
        )
        if not decision.accept:
            return Admission(decision, pid, credential)
        # the atomic gate: single use, and the device slot counted and held in one call
        committed = await self.store.commit_login(
            pid,
            username,
            mac,
            now=now,
            origin=origin,
            nonce=self.nonce(),
            max_devices=self.policy.max_devices,
            stale_before=stale_before,
            remember_seconds=self._remember,
        )
        if committed.status != "ok":
            outcome = _COMMIT_REJECTS.get(committed.status, Outcome.UNKNOWN_CREDENTIAL)
            return Admission(reject(outcome, limit=self.policy.max_devices), pid, credential)
        return Admission(decision, pid, credential, committed.nonce)

    @staticmethod
    def _password_ok(client: Client, request: Request, password: bytes) -> bool:
        hidden = request.get(Attr.USER_PASSWORD)
        if hidden is not None:
            given = decrypt_user_password(hidden, client.secret, request.authenticator)
            return hmac.compare_digest(given, password)
        chap = request.get(Attr.CHAP_PASSWORD)
        if chap is not None:
            return chap_matches(chap, chap_challenge(request), password)
        return False

    # -- Accounting-Request ---------------------------------------------------------------

    async def accounting(self, client: Client, request: Request) -> Reply | None:
        status = request.integer(Attr.ACCT_STATUS_TYPE)
        if status is None:  # RFC 2866 §5.1: required; nothing to record, so no answer
            log.info("radius.acct_without_status_type", client=client.id)
            return None
        try:
            if status in (AcctStatus.ACCOUNTING_ON, AcctStatus.ACCOUNTING_OFF):
                cause = (
                    TerminateCause.NAS_REBOOT
                    if status == AcctStatus.ACCOUNTING_ON
                    else (TerminateCause.NAS_REQUEST)
                )
                delay = min(request.integer(Attr.ACCT_DELAY_TIME) or 0, MAX_DELAY)
                closed = await self.store.close_client_sessions(
                    client.id, str(int(cause)), now=int(self.clock()) - delay
                )
                log.info("radius.nas_restart", client=client.id, status=status, closed=closed)
                return Reply(Code.ACCOUNTING_RESPONSE, b"", ("", "", "", STATUS_NAMES[status]))
            if status not in (AcctStatus.START, AcctStatus.STOP, AcctStatus.INTERIM_UPDATE):
                # other types (tunnel, failed): nothing to keep
                return Reply(Code.ACCOUNTING_RESPONSE, b"", ("", "", "", f"ignored:{status}"))
            write = await self._write_for(client, request, status)
            if write is None:
                return None
            result = await self.store.account(write)
            self._note_generation(write, result)
            for observer in self.observers:
                observer.accounted(write, result)
        except StoreUnavailable as exc:
            log.warning("radius.store_unavailable", port="acct", client=client.id, error=str(exc))
            return None
        return Reply(
            Code.ACCOUNTING_RESPONSE,
            b"",
            (write.pid, write.fields["venue"], result.sid, STATUS_NAMES[status]),
        )

    def _note_generation(self, write: AccountingWrite, result: AccountingResult) -> None:
        """Remember a reused id's generation; log reuse and re-opening (both rare)."""
        key = f"{write.pid}|{write.sid}"
        if result.generation > write.generation:
            log.info("radius.session_id_reused", session=result.sid, person=write.pid)
        if result.reopened:
            log.info("radius.session_reopened", session=result.sid, person=write.pid)
        if result.generation > 1:
            if len(self._generations) >= MAX_GENERATIONS_KEPT:
                self._generations.clear()  # only a hint: Store.account finds the right one
            self._generations[key] = result.generation

    async def _write_for(
        self, client: Client, request: Request, status: int
    ) -> AccountingWrite | None:
        acct_session_id = request.text(Attr.ACCT_SESSION_ID)
        if not acct_session_id:
            log.info("radius.acct_without_session_id", client=client.id)
            return None
        user = request.text(Attr.USER_NAME) or ""
        mac = normalize_mac(request.text(Attr.CALLING_STATION_ID) or "") or ""
        pid, nonce = await self._login_of(client, request, user)
        known = pid is not None
        if pid is None:
            pid = anonymous_person(client.id, user or mac)
        delay = min(request.integer(Attr.ACCT_DELAY_TIME) or 0, MAX_DELAY)
        event_time = int(self.clock()) - delay
        reported = request.integer(Attr.ACCT_SESSION_TIME) or 0
        boundaries = self.days.boundaries(event_time - reported, event_time)
        called = request.text(Attr.CALLED_STATION_ID) or ""
        nas_id = request.text(Attr.NAS_IDENTIFIER) or ""
        venue = self.registry.venue_for(client, called, nas_id)
        framed = request.get(Attr.FRAMED_IP_ADDRESS)
        nas_ip = request.get(Attr.NAS_IP_ADDRESS)
        nas_ipv6 = request.get(Attr.NAS_IPV6_ADDRESS)
        cause = request.integer(Attr.ACCT_TERMINATE_CAUSE)
        fields = {
            "pid": pid,
            "known": "1" if known else "0",
            "client": client.id,
            "acct_session_id": acct_session_id,
            "user": user,
            "mac": mac,
            "ip": ".".join(map(str, framed)) if framed and len(framed) == 4 else "",
            "nas_ip": ".".join(map(str, nas_ip)) if nas_ip and len(nas_ip) == 4 else "",
            # RFC 3162 §2.1: echoed in RFC 5176 requests to an IPv6 NAS
            "nas_ipv6": str(ipaddress.IPv6Address(nas_ipv6))
            if nas_ipv6 and len(nas_ipv6) == 16
            else "",
            "nas_id": nas_id,
            "login": nonce,  # the login's nonce (Class), "" for an anonymous session
            # for RFC 5176 requests: the Calling-Station-Id as sent, and where the NAS is
            "calling": request.text(Attr.CALLING_STATION_ID) or "",
            "nas_src": request_source.get(("", 0))[0],
            "ap": called,
            "venue": venue.id,
            "venue_type": venue.type,
            "district": venue.district,
            "operator": venue.operator,
        }
        operator_name = request.text(Attr.OPERATOR_NAME)
        if operator_name:  # RFC 5580 §4.1: who runs the access network, as the NAS says
            fields["operator_name"] = "".join(c for c in operator_name if c.isprintable())
        sid = keys.session_id(client.id, acct_session_id)
        return AccountingWrite(
            pid=pid,
            sid=sid,
            client_id=client.id,
            status=status,
            reported=reported,
            event_time=event_time,
            input_octets=octets(request, Attr.ACCT_INPUT_OCTETS, Attr.ACCT_INPUT_GIGAWORDS),
            output_octets=octets(request, Attr.ACCT_OUTPUT_OCTETS, Attr.ACCT_OUTPUT_GIGAWORDS),
            cause=str(cause) if cause is not None else "",
            boundaries=boundaries,
            fields=fields,
            generation=self._generations.get(f"{pid}|{sid}", 1),
            stale=self._stale,
        )

    async def _login_of(
        self, client: Client, request: Request, user: str
    ) -> tuple[str | None, str]:
        """Person and login nonce of an Accounting-Request, only from what this client was
        issued: a Class we signed for it, else a credential username issued for it. A
        forged or foreign Class, a made-up ``<pid>.xxxx`` or a MAC as User-Name gives
        (None, ""): the session is recorded, but for an anonymous person."""
        claim = verify_class(self.class_key, request.get(Attr.CLASS), client.id)
        if claim is not None:
            return claim.person, claim.nonce
        pid = person_of_username(user)
        if pid is not None:
            issued = await self.store.credential_issue(pid, user)
            if issued is not None and issued.client == client.id:
                return pid, issued.nonce
        return None, ""
