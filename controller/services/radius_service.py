"""The domain side of the RADIUS server: Access-Request and Accounting-Request handling.

Per request: read what the packet says (pure). A MAC re-authentication is one Redis call
on one Redis or Sentinel (mac_login.lua: the MAC's owner, the person's state, the decision
of controller.domain.access by its rules, the device's slot held, the audit record
queued); on a Cluster the owner's GET, that script, then the record's XADD. A credential
login: one round trip for the person's state, decide (pure, in controller.domain.access:
the password is checked here), and on acceptance a second one that holds the device's
slot and consumes the credential atomically, the audit record queued; encode: the answer
only once the record is in Redis. Redis
errors become "no answer" so the NAS retransmits. ``access_soon`` takes the same steps
from the Redis replies' callbacks (controller.services.access_flow), without a Task.

Accounting is tied to a person only by a Class this server signed for the sending client
(controller.domain.identity), or by a credential username issued for that client; anything
else is recorded for an anonymous person of that client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import structlog

from controller.config import Client, Config
from controller.domain import quota
from controller.domain.access import (
    AccessDecision,
    Outcome,
    decide_access,
    mac_decision,
    reject,
)
from controller.domain.audit import login_event, login_fields
from controller.domain.identity import (
    ClassVerifier,
    chargeable_identity,
    class_key,
    new_nonce,
    person_of_username,
    sign_class,
)
from controller.domain.mac import normalize_mac
from controller.domain.radsec_peers import RadsecPeers
from controller.domain.registry import Registry
from controller.domain.state import (
    AccountingResult,
    AccountingWrite,
    CommitStatus,
    Committed,
    DueRule,
    MacLoginAsk,
    MacLoginDone,
    Origin,
    PersonState,
    SessionFields,
)
from controller.services.access_flow import AccessFlow, Admission, Login
from controller.services.eap_service import EapLogins
from controller.storage import keys
from controller.storage.store import Store, StoreUnavailable
from radius import metrics
from radius.addresses import PortBlock, vendor_block
from radius.attrs import AcctStatus, Attr, TerminateCause
from radius.events import (
    AccessAccept,
    AccessReject,
    AccessReply,
    AccessRequest,
    AccountingRequest,
    AccountingResponse,
    NoReply,
)
from radius.packet import attr, attr_int, attr_text_split, chap_matches
from radius.radsec import PeerCertificate
from radius.running_loop import running_loop

log = structlog.get_logger("citywifi.radius")

MAX_DELAY = 86400  # an Acct-Delay-Time beyond a day is not believed
MAX_GENERATIONS_KEPT = 65536  # reused session ids whose generation this process remembers
STATUS_NAMES: dict[AcctStatus, str] = {
    AcctStatus.START: "start",
    AcctStatus.STOP: "stop",
    AcctStatus.INTERIM_UPDATE: "interim",
    AcctStatus.ACCOUNTING_ON: "accounting_on",
    AcctStatus.ACCOUNTING_OFF: "accounting_off",
}


_COMMIT_OUTCOMES: dict[CommitStatus, Outcome] = {  # commit_login.lua's statuses
    "ok": Outcome.ACCEPT,
    "used": Outcome.CREDENTIAL_USED,
    "gone": Outcome.UNKNOWN_CREDENTIAL,
    "device_limit": Outcome.DEVICE_LIMIT,
}


def nat_block(client: Client, event: AccountingRequest) -> PortBlock | None:
    """The NAT port block of a request: in the client's ``port_block_vsa`` when it has
    one and the NAS sent it, else as ``radius.addresses.port_block`` read it."""
    if client.port_block_vsa is not None and event.vsas:
        found = vendor_block(event.vsas, *client.port_block_vsa)
        if found is not None:
            return found
    return event.port_block


def client_public(client: Client) -> str:
    """The NAS's public addresses as the session record keeps them (comma-separated)."""
    return ",".join(str(n) for n in client.public_addresses)


def anonymous_person(client_id: str, user: str) -> str:
    """A stable stand-in id for accounting we cannot tie to a person (still recorded)."""
    return hashlib.sha256(f"anon|{client_id}|{user}".encode()).hexdigest()[:20]


class AccountingObserver(Protocol):
    """Told of every recorded Start/Interim/Stop, before the Accounting-Response goes out:
    the quota enforcer (the person's due time, from the result's snapshot) and the online
    count (the NAS's last-seen time). Called synchronously: it must not block or await."""

    def accounted(self, write: AccountingWrite, result: AccountingResult) -> None: ...


@runtime_checkable
class DuePlanner(Protocol):
    """An observer that plans the person after each report (the quota enforcer): its rule
    rides in the write, so account.lua computes the due time in the same call."""

    def due_rule(self, event_time: int) -> DueRule: ...


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
        eap: EapLogins | None = None,
    ) -> None:
        self.store = store
        self.eap = eap  # EAP-TTLS logins ([passpoint] enabled), else None
        self.clock = clock
        self.nonce = nonce
        self.person_key = person_key  # keys the Chargeable-User-Identity (RFC 4372)
        self.class_key = class_key(person_key)  # signs and verifies Class (identity.py)
        self.classes = ClassVerifier(self.class_key)  # each session's Class verified once
        self.registry = Registry(config)
        # told after each recorded Start/Interim/Stop, in order (see AccountingObserver)
        self.observers: tuple[AccountingObserver, ...] = tuple(observers)
        planners = [o for o in observers if isinstance(o, DuePlanner)]
        self._due_rule = planners[0].due_rule if planners else None
        # "pid|client/Acct-Session-Id" -> its current generation, when above 1 (a reused
        # id): the next report goes to it in one round trip (Store.account checks it)
        self._generations: dict[str, int] = {}
        # "pid|client/Acct-Session-Id" of open sessions this process recorded: their next
        # Interim/Stop is sent without the session's description (account.lua asks for
        # it if the record is gone); only a hint, bounded like _generations
        self._described: set[str] = set()
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Swap in a new config (SIGHUP): precomputed reply parts are rebuilt once here."""
        self.config = config
        self.registry = Registry(config)
        self.radsec_peers = RadsecPeers(config.clients)
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

    def radsec_peer(self, certificate: PeerCertificate) -> Client | None:
        """The client a RadSec connection's certificate names (controller.domain.radsec_peers)."""
        return self.radsec_peers.client_for(certificate.fingerprint, certificate.names)

    # -- Access-Request -----------------------------------------------------------------

    async def access(self, event: AccessRequest) -> AccessReply | NoReply | None:
        """The answer to an Access-Request, None to send none (the store is down: the
        NAS retransmits, or fails over). Sent only once its audit record is queued."""
        client = self.registry.clients_by_id.get(event.client)
        if client is None:  # removed by a reload while the request waited
            return None
        if event.eap is not None:  # an EAP round (RFC 3579): controller.services.eap_service
            if self.eap is None:
                return AccessReject(attr(Attr.REPLY_MESSAGE, b"EAP is off"), result="eap_off")
            return await self.eap.access(self, client, event)
        now = int(self.clock())
        try:
            admission = await self._admit(client, event, now)
        except StoreUnavailable as exc:
            log.warning("radius.store_unavailable", port="auth", client=client.id, error=str(exc))
            return None
        return self.access_reply(client, event, admission)

    def access_soon(
        self, event: AccessRequest
    ) -> AccessReply | NoReply | asyncio.Future[AccessReply | NoReply | None] | None:
        """``access(event)`` without a Task per request (issue 16): a MAC or credential
        login continues from each Redis reply's callback (controller.services.access_flow)
        and the future's result is the answer, set once the audit record is queued. EAP
        and a client removed by a reload run the coroutine in a task."""
        client = self.registry.clients_by_id.get(event.client)
        if client is None or event.eap is not None:
            return asyncio.ensure_future(self.access(event))
        return AccessFlow(self, client, event, int(self.clock())).start()

    def access_reply(
        self, client: Client, event: AccessRequest, admission: Admission
    ) -> AccessReply:
        """The Access-Accept (Session-Timeout, signed Class, CUI) or Access-Reject of an
        admission whose audit record is queued."""
        decision, pid, venue = admission.decision, admission.person, admission.venue
        if decision.accept:
            assert pid is not None
            kind = "c" if admission.credential else "m"
            klass = sign_class(self.class_key, pid, kind, client.id, admission.nonce)
            attrs = (
                attr_int(Attr.SESSION_TIMEOUT, decision.session_timeout)
                + self._accept_tail
                + attr(Attr.CLASS, klass)
            )
            if event.wants_cui:
                # RFC 4372 §2.1: a NAS that supports CUI asks with a nul value; the answer
                # is the person's, per venue operator (the same on every re-login)
                operator = self.config.venues[venue].operator if venue else ""
                cui = chargeable_identity(pid, operator, self.person_key)
                attrs += attr(Attr.CHARGEABLE_USER_IDENTITY, cui)
            return AccessAccept(attrs, pid, venue)
        reason = decision.outcome.value
        metrics.REJECTS.labels(reason).inc()
        if not self.log_requests:  # else the request event says it
            log.info("radius.reject", client=client.id, person=pid, reason=reason)
        return AccessReject(
            attr_text_split(Attr.REPLY_MESSAGE, decision.message), pid or "", venue, "", reason
        )

    def login_record(
        self, client: Client, event: AccessRequest, outcome: str, pid: str | None, now: int
    ) -> dict[str, str]:
        """The login record of the audit log (controller.services.audit)."""
        return login_event(self.registry, client, event, outcome, pid, now)

    def login_fields(self, client: Client, event: AccessRequest, now: int) -> dict[str, str]:
        """The login record's fields known before the decision (all but pid and result)."""
        return login_fields(self.registry, client, event, now)

    def mac_login_ask(
        self, login: Login, pid: str | None, now: int, record: dict[str, str] | None
    ) -> MacLoginAsk:
        """``Store.mac_login``'s question for a MAC login: the decision's zone-dependent
        thresholds as integers from ``now`` (controller.domain.quota), a new nonce."""
        q = self.policy
        return MacLoginAsk(  # positional (a keyword call of a record builds a dict)
            pid,
            login.user_mac,
            login.mac,
            now,
            login.today,
            login.stale_before,
            q.daily_seconds,  # daily
            quota.next_midnight(now, q.timezone) - now,  # to_midnight
            max(1, q.min_grant_seconds),  # min_grant
            q.max_devices,
            self.nonce(),
            record,
        )

    def mac_admission(self, done: MacLoginDone, now: int, venue: str) -> Admission:
        """The admission of a MAC login mac_login.lua decided (and committed)."""
        decision = mac_decision(done.outcome, done.session_timeout, done.block, self.policy, now)
        return Admission(decision, done.pid, False, done.nonce, venue)

    def login_start(self, client: Client, event: AccessRequest, now: int) -> Admission | Login:
        """What an Access-Request asks before Redis: a reject already (no User-Name, a
        User-Name that is neither a credential nor a MAC), or the login to look at."""
        user = event.user_name
        if not user:
            return Admission(reject(Outcome.BAD_REQUEST))
        mac = normalize_mac(event.calling_station_id) or ""
        pid = person_of_username(user)
        user_mac = ""
        if pid is None:
            user_mac = normalize_mac(user) or ""
            if not user_mac:
                return Admission(reject(Outcome.UNKNOWN_CREDENTIAL))
            mac = mac or user_mac
        origin = Origin(
            client.id, event.acct_session_id, event.authenticator.hex(), str(event.source)
        )
        return Login(  # positional (a keyword call of a record builds a dict)
            pid,
            user_mac,
            user if pid is not None else "",  # username
            mac,
            origin,
            self.days.key(now),  # today
            now - int(self.policy.stale_grace),  # stale_before
        )

    def login_decision(
        self, event: AccessRequest, login: Login, state: PersonState, now: int
    ) -> AccessDecision:
        """The pure decision on a login from the person's state (controller.domain.access)."""
        credential = login.credential
        password_ok = False
        if credential and state.password:
            checked = self._password_ok(event, state.password.encode())
            if checked is None:  # RFC 2865 §5.2: not a User-Password
                return reject(Outcome.BAD_REQUEST)
            password_ok = checked
        return decide_access(
            state,
            credential=credential,
            password_ok=password_ok,
            mac=login.mac,
            policy=self.policy,
            now=now,
            origin=login.origin,
        )

    def commit_args(self, login: Login, pid: str, now: int) -> dict[str, Any]:
        """``Store.commit_login``'s keyword arguments for a login (a new nonce)."""
        return {
            "now": now,
            "origin": login.origin,
            "nonce": self.nonce(),
            "max_devices": self.policy.max_devices,
            "stale_before": login.stale_before,
            "remember_seconds": self._remember,
        }

    def committed(
        self, decision: AccessDecision, committed: Committed, pid: str, login: Login, venue: str
    ) -> Admission:
        """The admission after the atomic gate said ``committed``."""
        if committed.status != "ok":
            outcome = _COMMIT_OUTCOMES.get(committed.status, Outcome.UNKNOWN_CREDENTIAL)
            limited = reject(outcome, limit=self.policy.max_devices)
            return Admission(limited, pid, login.credential, venue=venue)
        return Admission(decision, pid, login.credential, committed.nonce, venue)

    async def _admit(self, client: Client, event: AccessRequest, now: int) -> Admission:
        """The decision, the person it is about, whether a credential (not a MAC), on
        acceptance the login's nonce; its audit record queued in Redis."""
        login = self.login_start(client, event, now)
        if isinstance(login, Admission):
            return await self._queued(client, event, login, now)
        pid = login.pid
        if pid is None:  # a MAC re-authentication: decided and committed in one call
            store = self.store
            if store.login_in_one_call:  # the owner read and the record queued in it too
                fields = self.login_fields(client, event, now)
                done = await store.mac_login(self.mac_login_ask(login, None, now, fields))
                return self.mac_admission(done, now, fields["venue"])
            pid = await store.mac_owner(login.user_mac)  # a Cluster: on another slot
            if pid is None:
                return await self._queued(
                    client, event, Admission(reject(Outcome.UNKNOWN_DEVICE)), now
                )
            done = await store.mac_login(self.mac_login_ask(login, pid, now, None))
            return await self._queued(client, event, self.mac_admission(done, now, ""), now)
        state = await self.store.auth_state(
            pid, login.username, login.mac, login.today, login.stale_before, now
        )
        decision = self.login_decision(event, login, state, now)
        if not decision.accept:
            return await self._queued(
                client, event, Admission(decision, pid, login.credential), now
            )
        # the atomic gate: single use, and the device slot counted and held in one call
        committed = await self.store.commit_login(
            pid, login.username, login.mac, **self.commit_args(login, pid, now)
        )
        return await self._queued(
            client, event, self.committed(decision, committed, pid, login, ""), now
        )

    async def _queued(
        self, client: Client, event: AccessRequest, admission: Admission, now: int
    ) -> Admission:
        """Queue the audit record of a decision; with its venue."""
        pid = admission.person
        record = self.login_record(client, event, admission.decision.outcome.value, pid, now)
        await self.store.outbox_add(record)
        return dataclasses.replace(admission, venue=record["venue"])

    @staticmethod
    def _password_ok(event: AccessRequest, password: bytes) -> bool | None:
        """PAP (RFC 2865 §5.2) first, else CHAP (§5.3); None for a User-Password that is
        not one (bad length)."""
        if event.user_password is not None:
            given = event.user_password.reveal()
            return None if given is None else hmac.compare_digest(given, password)
        if event.chap_password is not None:
            return chap_matches(event.chap_password, event.chap_challenge, password)
        return False

    # -- Accounting-Request ---------------------------------------------------------------

    async def accounting(self, event: AccountingRequest) -> AccountingResponse | None:
        """The answer to an Accounting-Request, sent only once it is recorded; None to
        send none (nothing to record, or the store is down: the NAS retransmits)."""
        client = self.registry.clients_by_id.get(event.client)
        if client is None:  # removed by a reload while the request waited
            return None
        status = event.status
        if event.status_type is None:  # RFC 2866 §5.1: required; nothing to record
            log.info("radius.acct_without_status_type", client=client.id)
            return None
        try:
            if status is AcctStatus.ACCOUNTING_ON or status is AcctStatus.ACCOUNTING_OFF:
                cause = (
                    TerminateCause.NAS_REBOOT
                    if status is AcctStatus.ACCOUNTING_ON
                    else TerminateCause.NAS_REQUEST
                )
                delay = min(event.delay, MAX_DELAY)
                closed = await self.store.close_client_sessions(
                    client.id, str(int(cause)), now=int(self.clock()) - delay
                )
                log.info("radius.nas_restart", client=client.id, status=int(status), closed=closed)
                return AccountingResponse(result=STATUS_NAMES[status])
            if status is None:
                # other types (tunnel, failed): nothing to keep
                return AccountingResponse(result=f"ignored:{event.status_type}")
            write = await self._write_for(client, event, status)
            if write is None:
                return None
            result = await self.store.account(write)
            self._note_generation(write, result)
            for observer in self.observers:
                observer.accounted(write, result)
        except StoreUnavailable as exc:
            log.warning("radius.store_unavailable", port="acct", client=client.id, error=str(exc))
            return None
        return AccountingResponse(
            b"", write.pid, write.session.venue, result.sid, STATUS_NAMES[status]
        )

    def accounting_soon(
        self, event: AccountingRequest
    ) -> AccountingResponse | asyncio.Future[AccountingResponse | None] | None:
        """``accounting(event)`` without a Task per request (issue 16): a Start, Interim
        or Stop whose person is known without Redis (a Class we signed, or none to look
        up) is written through ``Store.account_soon`` and answered from its reply's
        callback: the future's result is the reply (None: not recorded). Anything else
        (Accounting-On/Off, a credential username to look up, a malformed report) runs
        the coroutine in a task. An answer still means the write was acknowledged."""
        client = self.registry.clients_by_id.get(event.client)
        status = event.status
        if (
            client is None
            or event.status_type is None
            or status is None
            or status is AcctStatus.ACCOUNTING_ON
            or status is AcctStatus.ACCOUNTING_OFF
        ):
            return asyncio.ensure_future(self.accounting(event))
        if not event.session_id:
            log.info("radius.acct_without_session_id", client=client.id)
            return None
        login = self._login_known(client, event, event.user_name)
        if login is None:  # a credential username: its issue is read from Redis first
            return asyncio.ensure_future(self.accounting(event))
        write = self._write_of(client, event, status, *login)
        answer: asyncio.Future[AccountingResponse | None] = running_loop().create_future()

        def recorded(pending: asyncio.Future[AccountingResult]) -> None:
            if answer.done():
                return
            try:
                result = pending.result()
                self._note_generation(write, result)
                for observer in self.observers:
                    observer.accounted(write, result)
            except StoreUnavailable as exc:
                log.warning(
                    "radius.store_unavailable", port="acct", client=write.client_id, error=str(exc)
                )
                answer.set_result(None)
                return
            except Exception as exc:  # the shell logs it and drops the request
                answer.set_exception(exc)
                return
            answer.set_result(
                AccountingResponse(
                    b"", write.pid, write.session.venue, result.sid, STATUS_NAMES[status]
                )
            )

        self.store.account_soon(write).add_done_callback(recorded)
        return answer

    def _note_generation(self, write: AccountingWrite, result: AccountingResult) -> None:
        """Remember a reused id's generation; log reuse and re-opening (both rare)."""
        key = f"{write.pid}|{write.sid}"
        if write.status is AcctStatus.STOP:
            self._described.discard(key)
        else:
            if len(self._described) >= MAX_GENERATIONS_KEPT:
                self._described.clear()
            self._described.add(key)
        if result.generation > write.generation:
            log.info("radius.session_id_reused", session=result.sid, person=write.pid)
        if result.reopened:
            log.info("radius.session_reopened", session=result.sid, person=write.pid)
        if result.generation > 1:
            if len(self._generations) >= MAX_GENERATIONS_KEPT:
                self._generations.clear()  # only a hint: Store.account finds the right one
            self._generations[key] = result.generation

    async def _write_for(
        self, client: Client, event: AccountingRequest, status: AcctStatus
    ) -> AccountingWrite | None:
        """The write of a Start, Interim-Update or Stop: whose it is (``_login_of``), its
        event time (now less Acct-Delay-Time, RFC 2866 §5.2, believed up to a day), its
        span split at local midnights, the venue (registry), the session's fields."""
        if not event.session_id:
            log.info("radius.acct_without_session_id", client=client.id)
            return None
        pid, nonce = await self._login_of(client, event, event.user_name)
        return self._write_of(client, event, status, pid, nonce)

    def _write_of(
        self,
        client: Client,
        event: AccountingRequest,
        status: AcctStatus,
        pid: str | None,
        nonce: str,
    ) -> AccountingWrite:
        """``_write_for``'s write once the person (None: anonymous) and login are known."""
        acct_session_id = event.session_id
        user = event.user_name
        calling = event.calling_station_id
        mac = normalize_mac(calling) or ""
        known = pid is not None
        if pid is None:
            pid = anonymous_person(client.id, user or mac)
        event_time = int(self.clock()) - min(event.delay, MAX_DELAY)
        reported = event.session_time
        boundaries = self.days.boundaries(event_time - reported, event_time)
        called = event.called_station_id
        nas_id = event.nas_identifier
        venue = self.registry.venue_for(client, called, nas_id)
        operator_name = event.operator_name
        # positional, in the order the records declare: keyword calls of these wide
        # records cost ~2 µs more per request (issue 16; tests/test_radius_core.py
        # test_every_session_field_comes_from_its_attribute holds the order)
        session = SessionFields(
            pid,
            known,
            client.id,
            acct_session_id,
            user,
            mac,
            event.framed_ip_address,  # ip
            event.nas_ip_address,
            event.nas_ipv6_address,
            nas_id,
            nonce,  # login: the login's nonce (Class), "" for an anonymous session
            calling,
            event.source.host,  # nas_src
            called,  # ap
            venue.id,
            venue.type,
            venue.district,
            venue.operator,
            # operator_name, RFC 5580 §4.1: who runs the access network, as the NAS says
            "".join(c for c in operator_name if c.isprintable()) if operator_name else "",
            event.framed_ipv6_address,  # ipv6
            event.framed_ipv6_prefix,
            event.delegated_ipv6_prefix,  # ipv6_delegated
            client_public(client),  # nas_public
            block.public_ip if (block := nat_block(client, event)) else "",  # nat_ip
            block.ports if block else "",  # nat_ports
        )
        sid = keys.session_id(client.id, acct_session_id)
        cause = event.terminate_cause
        return AccountingWrite(
            pid,
            sid,
            client.id,
            status,
            reported,
            event_time,
            event.input_octets,
            event.output_octets,
            str(cause) if cause is not None else "",
            boundaries,
            session,
            self._generations.get(f"{pid}|{sid}", 1),  # generation
            self._stale,
            status is AcctStatus.START or f"{pid}|{sid}" not in self._described,  # describe
            self._due_rule(event_time) if known and self._due_rule is not None else None,
        )

    async def _login_of(
        self, client: Client, event: AccountingRequest, user: str
    ) -> tuple[str | None, str]:
        """Person and login nonce of an Accounting-Request, only from what this client was
        issued: a Class we signed for it, else a credential username issued for it. A
        forged or foreign Class, a made-up ``<pid>.xxxx`` or a MAC as User-Name gives
        (None, ""): the session is recorded, but for an anonymous person."""
        known = self._login_known(client, event, user)
        if known is not None:
            return known
        pid = person_of_username(user)
        if pid is not None:
            issued = await self.store.credential_issue(pid, user)
            if issued is not None and issued.client == client.id:
                return pid, issued.nonce
        return None, ""

    def _login_known(
        self, client: Client, event: AccountingRequest, user: str
    ) -> tuple[str | None, str] | None:
        """``_login_of``'s answer when it needs no Redis: a Class we signed for this
        client, or a User-Name that is no credential (anonymous); None when a credential
        username's issue must be read."""
        claim = self.classes.verify(event.klass, client.id)
        if claim is not None:
            return claim.person, claim.nonce
        if person_of_username(user) is not None:
            return None
        return None, ""
