"""An Access-Request answered without a Task (issue 16): each Redis reply's callback takes
the next step, as ``RadiusService.access`` would await it.

The steps are the coroutine's, through the same pieces of ``RadiusService`` (the
decision, the audit record, the reply). A MAC re-authentication is one call on one
Redis (or Sentinel): mac_login.lua reads the MAC's owner and the person's state, decides
(``controller.domain.access.decide_access``'s rules), holds the device's slot on
acceptance and queues the audit record; on a Redis Cluster the owner and the outbox live
in other slots, so it is the owner's GET, mac_login.lua, then the record's XADD. A
credential login takes the person's state (auth_state.lua), the pure decision (the
password is checked here, in Python), on acceptance the atomic commit (commit_login.lua),
then the audit record. The answer future gets the reply only after the call that queued
the record was acknowledged: the audit record is in Redis before the Access-Accept/Reject
leaves. A store error makes it None (no answer: the NAS retransmits); NOSCRIPT is
handled by the store (it reloads, in a task).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Protocol

import structlog

from controller.config import Client
from controller.domain.access import AccessDecision, Outcome, reject
from controller.domain.state import Committed, MacLoginAsk, MacLoginDone, Origin, PersonState
from controller.storage.store import Store, StoreUnavailable
from radius.events import AccessReply, AccessRequest, NoReply
from radius.record import record
from radius.running_loop import running_loop

log = structlog.get_logger("citywifi.radius")

__all__ = ["AccessFlow", "AccessSteps", "Admission", "Login"]


@record
class Admission:
    """The decision on an Access-Request, whom it is about, how they log in (credential
    or MAC), and the nonce of the login an acceptance starts (signed into its Class)."""

    decision: AccessDecision
    person: str | None = None
    credential: bool = False
    nonce: str = ""
    venue: str = ""  # the venue of its audit record (once queued)


@record
class Login:
    """An Access-Request's login before Redis is asked: whose (``pid``; None: the MAC
    ``user_mac`` is looked up first), the credential username ("" for a MAC login), the
    device, where it comes from, today's usage key, the stale-session cut-off."""

    pid: str | None
    user_mac: str
    username: str
    mac: str
    origin: Origin
    today: str
    stale_before: int

    @property
    def credential(self) -> bool:
        return bool(self.username)


class AccessSteps(Protocol):
    """The pieces of ``RadiusService`` the flow runs (the coroutine ``access`` runs the same)."""

    store: Store

    def login_start(self, client: Client, event: AccessRequest, now: int) -> Admission | Login: ...
    def login_decision(
        self, event: AccessRequest, login: Login, state: PersonState, now: int
    ) -> AccessDecision: ...
    def commit_args(self, login: Login, pid: str, now: int) -> dict[str, Any]: ...
    def committed(
        self, decision: AccessDecision, committed: Committed, pid: str, login: Login, venue: str
    ) -> Admission: ...
    def login_record(
        self, client: Client, event: AccessRequest, outcome: str, pid: str | None, now: int
    ) -> dict[str, str]: ...
    def login_fields(self, client: Client, event: AccessRequest, now: int) -> dict[str, str]: ...
    def mac_login_ask(
        self, login: Login, pid: str | None, now: int, record: dict[str, str] | None
    ) -> MacLoginAsk: ...
    def mac_admission(self, done: MacLoginDone, now: int, venue: str) -> Admission: ...
    def access_reply(
        self, client: Client, event: AccessRequest, admission: Admission
    ) -> AccessReply: ...


class AccessFlow:
    """One Access-Request in progress; ``start`` returns the future of its answer."""

    __slots__ = (
        "admission",
        "answer",
        "client",
        "decision",
        "event",
        "login",
        "now",
        "pid",
        "svc",
        "venue",
    )

    def __init__(self, svc: AccessSteps, client: Client, event: AccessRequest, now: int) -> None:
        self.svc = svc
        self.client = client
        self.event = event
        self.now = now
        self.answer: asyncio.Future[AccessReply | NoReply | None] = running_loop().create_future()
        self.pid = ""

    def start(self) -> asyncio.Future[AccessReply | NoReply | None]:
        try:
            login = self.svc.login_start(self.client, self.event, self.now)
            if isinstance(login, Admission):
                self._queue(login)
            else:
                self.login = login
                if login.pid is None:  # a MAC re-authentication
                    store = self.svc.store
                    if store.login_in_one_call:  # owner, decision, record: one call
                        fields = self.svc.login_fields(self.client, self.event, self.now)
                        self.venue = fields["venue"]
                        ask = self.svc.mac_login_ask(login, None, self.now, fields)
                        store.mac_login_soon(ask).add_done_callback(self._mac_done)
                    else:  # a Cluster: the owner first (another slot)
                        owner = store.mac_owner_soon(login.user_mac)
                        owner.add_done_callback(self._owned)
                else:
                    self._look(login.pid)
        except Exception as exc:  # the shell logs it and drops the request
            self.answer.set_exception(exc)
        return self.answer

    def _failed(self, step: asyncio.Future[Any]) -> bool:
        """Whether ``step`` failed; if so the answer says so (a store error: no answer)."""
        if self.answer.done():
            return True
        if step.cancelled():
            self.answer.cancel()
            return True
        exc = step.exception()
        if exc is None:
            return False
        if isinstance(exc, StoreUnavailable):
            log.warning(
                "radius.store_unavailable", port="auth", client=self.client.id, error=str(exc)
            )
            self.answer.set_result(None)
        else:
            self.answer.set_exception(exc)
        return True

    def _owned(self, owner: asyncio.Future[str | None]) -> None:
        if self._failed(owner):
            return
        try:
            pid = owner.result()
            if pid is None:
                self._queue(Admission(reject(Outcome.UNKNOWN_DEVICE)))
            else:
                self.venue = ""  # the record is queued after the reply
                ask = self.svc.mac_login_ask(self.login, pid, self.now, None)
                self.svc.store.mac_login_soon(ask).add_done_callback(self._mac_done)
        except Exception as exc:
            self.answer.set_exception(exc)

    def _mac_done(self, done: asyncio.Future[MacLoginDone]) -> None:
        if self._failed(done):
            return
        try:
            result = done.result()
            admission = self.svc.mac_admission(result, self.now, self.venue)
            if result.recorded:  # the call that decided queued the record too
                self._answer(admission)
            else:
                self._queue(admission)
        except Exception as exc:
            self.answer.set_exception(exc)

    def _look(self, pid: str) -> None:
        self.pid = pid
        login = self.login
        state = self.svc.store.auth_state_soon(
            pid, login.username, login.mac, login.today, login.stale_before, self.now
        )
        state.add_done_callback(self._stated)

    def _stated(self, state: asyncio.Future[Any]) -> None:
        if self._failed(state):
            return
        try:
            svc, login, pid = self.svc, self.login, self.pid
            decision = svc.login_decision(self.event, login, state.result(), self.now)
            if not decision.accept:
                self._queue(Admission(decision, pid, login.credential))
                return
            self.decision = decision
            committed = svc.store.commit_login_soon(  # the atomic gate
                pid, login.username, login.mac, **svc.commit_args(login, pid, self.now)
            )
            committed.add_done_callback(self._committed)
        except Exception as exc:
            self.answer.set_exception(exc)

    def _committed(self, committed: asyncio.Future[Any]) -> None:
        if self._failed(committed):
            return
        try:
            admission = self.svc.committed(
                self.decision, committed.result(), self.pid, self.login, ""
            )
            self._queue(admission)
        except Exception as exc:
            self.answer.set_exception(exc)

    def _queue(self, admission: Admission) -> None:
        """Queue the audit record of a decision, then answer."""
        outcome = admission.decision.outcome.value
        record = self.svc.login_record(self.client, self.event, outcome, admission.person, self.now)
        self.admission = dataclasses.replace(admission, venue=record["venue"])
        self.svc.store.outbox_add_soon(record).add_done_callback(self._recorded)

    def _recorded(self, queued: asyncio.Future[None]) -> None:
        if self._failed(queued):
            return
        try:
            self._answer(self.admission)
        except Exception as exc:
            self.answer.set_exception(exc)

    def _answer(self, admission: Admission) -> None:
        self.answer.set_result(self.svc.access_reply(self.client, self.event, admission))
