"""EAP-TTLS logins through the RADIUS service: one Access-Request, one EAP round.

The protocol parts are sans-I/O (``radius.eap_ttls``, ``radius.eap_state``,
``radius.mppe``); this module is the edge that awaits the store and runs argon2 off the
event loop, then gives an EAP login **the same allowance decision as any other login**
(``Store.auth_state`` → ``domain.access.decide_access`` → ``Store.commit_login`` → the
audit outbox), as a MAC re-authentication does: the credential has already proven who
the person is, the allowance says whether they may go online now.

Per round (RFC 3579 §2.6.1):

- an Access-Request with a State continues the conversation that State names
  (``StateTable.take``: single use, bound to the RADIUS client); an unknown or expired
  State gets no answer (the NAS times out and the peer starts over, as RFC 3579 §2.6.1
  leaves to the server), counted as the drop reason ``unknown_state`` (``NoReply``);
- without State it must be an EAP-Response/Identity in our realm (RFC 7542 §2.4: the
  outer identity routes; we are no proxy), which opens a new ``TtlsSession``;
- ``Challenge`` → Access-Challenge with EAP-Message and a fresh State;
- ``CheckPassword`` → the stored credential, argon2id verified in the default executor
  (≈ 36 ms of CPU that must not stall the loop), then ``verdict``;
- ``Success`` → the credential looked up again and checked valid now (a resumed TLS
  session skipped phase 2, and a revoked credential must not resume), then the
  allowance; Access-Accept with EAP-Success, MS-MPPE-Recv/Send-Key (RFC 2548 §2.4),
  User-Name = the inner identity (RFC 5281 §8: else the NAS only knows the anonymous
  outer one), Session-Timeout, a signed Class of kind ``e`` and CUI when asked; an
  allowance refusal is an Access-Reject with EAP-Failure (RFC 3579 §2.6.3) and the
  reply message saying why (for a used-up day, the reset time);
- ``Failure`` → Access-Reject with EAP-Failure; like any refused login, a login record
  in the audit outbox (result ``reject:eap_<reason>``, the person when the username
  named a credential, revoked or not: ``reject:eap_wrong_password``).

A retransmitted round never reaches here: it has the same Request Authenticator and the
core's duplicate cache answers it with the cached Access-Challenge (RFC 5080 §2.2.2).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from controller.config import Client, Config, QuotaPolicy
from controller.config.passpoint import PasspointSettings
from controller.domain.access import AccessDecision, Outcome, decide_access, reject
from controller.domain.audit import login_event
from controller.domain.eap_credentials import (
    CredentialPolicy,
    EapCredential,
    realm_of,
    verify_credential,
)
from controller.domain.identity import chargeable_identity, sign_class
from controller.domain.mac import normalize_mac
from controller.domain.quota import DayClock
from controller.domain.registry import Registry
from controller.domain.state import Origin
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.redis_conn import RedisClient
from controller.storage.store import Store, StoreUnavailable
from radius import metrics
from radius.attrs import Attr
from radius.eap import EapCode, EapError, EapPacket, EapType, decode_eap, eap_message_attrs
from radius.eap_state import StateTable
from radius.eap_ttls import CheckPassword, Failure, Success, TtlsServer, TtlsSession
from radius.events import (
    AccessAccept,
    AccessChallenge,
    AccessReject,
    AccessReply,
    AccessRequest,
    NoReply,
)
from radius.mppe import mppe_key_attrs
from radius.packet import attr, attr_int, attr_text_split


class LoginHost(Protocol):
    """What an EAP login needs of ``RadiusService`` (which passes itself): the store,
    the registry and policy in force, the clock and nonce source, the keys, and the
    precomputed parts of an Accept. A Protocol, not an import: the service imports this
    module."""

    store: Store
    registry: Registry
    config: Config
    policy: QuotaPolicy
    days: DayClock
    clock: Callable[[], float]
    nonce: Callable[[], str]
    class_key: bytes
    person_key: bytes
    _accept_tail: bytes  # Acct-Interim-Interval, Idle-Timeout
    _remember: int  # seconds a device stays remembered


__all__ = ["EapLogins", "LoginHost", "eap_logins"]

log = structlog.get_logger("citywifi.radius")

SALT_OCTETS = 2  # RFC 2548 §2.4.2: a 2-octet Salt, its high bit set, unique per packet


def _salts() -> tuple[bytes, bytes]:
    """Two different MS-MPPE salts with the most significant bit set (RFC 2548 §2.4.2)."""
    while True:
        recv = bytes((secrets.randbelow(128) | 0x80, secrets.randbelow(256)))
        send = bytes((secrets.randbelow(128) | 0x80, secrets.randbelow(256)))
        if recv != send:
            return recv, send


def _identifier(eap: bytes) -> int:
    try:
        return decode_eap(eap).identifier
    except EapError:
        return 0


def _eap_failure(identifier: int) -> bytes:
    return EapPacket(EapCode.FAILURE, identifier).encode()


@dataclass(slots=True)
class EapLogins:
    """The EAP side of the RADIUS service: built once by the composition root (when
    ``[passpoint] enabled``) and handed to ``RadiusService(eap=…)``."""

    server: TtlsServer
    states: StateTable[TtlsSession]
    credentials: EapCredentialStore
    policy: CredentialPolicy

    async def access(
        self, svc: LoginHost, client: Client, event: AccessRequest
    ) -> AccessReply | NoReply | None:
        """The answer to one EAP round (``event.eap`` is set), None (or ``NoReply``, to
        be counted under its reason) to send none."""
        assert event.eap is not None
        now = svc.clock()
        if event.state is not None:
            session = self.states.take(event.state, client.id, now)
            if session is None:  # unknown, replayed, expired or another client's State
                log.info("radius.eap_unknown_state", client=client.id)
                return NoReply("unknown_state")
        else:
            refusal = self._not_ours(event.eap)
            if refusal is not None:
                reason = "eap_foreign_realm"
                record = login_event(svc.registry, client, event, reason, None, int(now))
                try:  # audited like any refused login
                    await svc.store.outbox_add(record)
                except StoreUnavailable as exc:
                    log.warning(
                        "radius.store_unavailable", port="auth", client=client.id, error=str(exc)
                    )
                    return None
                return self._reject(refusal, _identifier(event.eap), reason)
            session = self.server.session()
        step = session.step(event.eap, now)
        found: EapCredential | None = None  # the credential phase 2 named, if any
        if isinstance(step, CheckPassword):
            credentials = step.credentials
            try:
                found = await self.credentials.lookup(credentials.username)
            except StoreUnavailable as exc:  # no answer: the NAS retransmits, the peer restarts
                log.warning(
                    "radius.store_unavailable", port="auth", client=client.id, error=str(exc)
                )
                return None
            loop = asyncio.get_running_loop()
            ok = await loop.run_in_executor(
                None, verify_credential, found, credentials.password, now
            )
            step = session.verdict(ok, svc.clock())
        if isinstance(step, Failure):
            reason = f"eap_{step.reason}"
            pid = found.person_id if found is not None else None
            record = login_event(svc.registry, client, event, reason, pid, int(now))
            try:  # the audit log's login record, queued before answering (as any login)
                await svc.store.outbox_add(record)
            except StoreUnavailable as exc:
                log.warning(
                    "radius.store_unavailable", port="auth", client=client.id, error=str(exc)
                )
                return None
            metrics.REJECTS.labels(reason).inc()
            log.info("radius.eap_failure", client=client.id, person=pid, reason=step.reason)
            return AccessReject(
                eap_message_attrs(step.eap) + attr(Attr.REPLY_MESSAGE, b"Login failed"),
                pid or "",
                record["venue"],
                "",
                reason,
            )
        if isinstance(step, Success):
            return await self._success(svc, client, event, step)
        state = self.states.put(session, client.id, now)
        return AccessChallenge(eap_message_attrs(step.eap) + attr(Attr.STATE, state))

    def _not_ours(self, eap: bytes) -> str | None:
        """Why a conversation's first packet is refused (None: it is not)."""
        try:
            packet = decode_eap(eap)
        except EapError:
            return "Malformed EAP"
        if packet.type == EapType.IDENTITY:
            realm = realm_of(packet.data.decode("utf-8", errors="replace"))
            if realm != self.policy.realm:
                return f"Realm {realm!r} is not served here"
        return None

    @staticmethod
    def _reject(message: str, identifier: int, result: str) -> AccessReject:
        metrics.REJECTS.labels(result).inc()
        return AccessReject(
            eap_message_attrs(_eap_failure(identifier))
            + attr_text_split(Attr.REPLY_MESSAGE, message),
            result=result,
        )

    async def _success(
        self, svc: LoginHost, client: Client, event: AccessRequest, step: Success
    ) -> AccessReply | None:
        """TTLS succeeded: the credential must still be valid, then the allowance."""
        identifier = _identifier(step.eap)
        now = int(svc.clock())
        try:
            found = await self.credentials.lookup(step.inner_identity)
            decision, pid, nonce = await self._allowance(svc, client, event, found, now)
            record = login_event(svc.registry, client, event, decision.outcome.value, pid, now)
            await svc.store.outbox_add(record)
        except StoreUnavailable as exc:
            log.warning("radius.store_unavailable", port="auth", client=client.id, error=str(exc))
            return None
        venue = record["venue"]
        if not decision.accept or pid is None:
            reason = decision.outcome.value
            metrics.REJECTS.labels(reason).inc()
            log.info("radius.reject", client=client.id, person=pid, reason=reason, eap=True)
            return AccessReject(
                eap_message_attrs(_eap_failure(identifier))
                + attr_text_split(Attr.REPLY_MESSAGE, decision.message),
                pid or "",
                venue,
                "",
                reason,
            )
        klass = sign_class(svc.class_key, pid, "e", client.id, nonce)
        attrs = (
            eap_message_attrs(step.eap)
            + mppe_key_attrs(
                step.keys.msk, event.secret or client.secret, event.authenticator, _salts()
            )
            + attr(Attr.USER_NAME, step.inner_identity.encode())
            + attr_int(Attr.SESSION_TIMEOUT, decision.session_timeout)
            + svc._accept_tail
            + attr(Attr.CLASS, klass)
        )
        if event.wants_cui:  # RFC 4372 §2.1, as for any login
            operator = svc.config.venues[venue].operator if venue else ""
            attrs += attr(
                Attr.CHARGEABLE_USER_IDENTITY, chargeable_identity(pid, operator, svc.person_key)
            )
        return AccessAccept(attrs, pid, venue)

    async def _allowance(
        self,
        svc: LoginHost,
        client: Client,
        event: AccessRequest,
        found: EapCredential | None,
        now: int,
    ) -> tuple[AccessDecision, str | None, str]:
        """The decision for the person of credential ``found`` (revoked or expired:
        refused), whom it is about and the login's nonce; as a MAC re-authentication."""
        if found is None or not found.valid_at(now):
            return reject(Outcome.UNKNOWN_CREDENTIAL), None, ""
        pid = found.person_id
        mac = normalize_mac(event.calling_station_id) or ""
        origin = Origin(
            client.id, event.acct_session_id, event.authenticator.hex(), str(event.source)
        )
        policy = svc.policy
        stale_before = now - int(policy.stale_grace)
        state = await svc.store.auth_state(pid, "", mac, svc.days.key(now), stale_before, now)
        decision = decide_access(
            state,
            credential=False,
            password_ok=False,
            mac=mac,
            policy=policy,
            now=now,
            origin=origin,
        )
        if not decision.accept:
            return decision, pid, ""
        committed = await svc.store.commit_login(
            pid,
            "",
            mac,
            now=now,
            origin=origin,
            nonce=svc.nonce(),
            max_devices=policy.max_devices,
            stale_before=stale_before,
            remember_seconds=svc._remember,
        )
        if committed.status != "ok":
            return reject(Outcome.DEVICE_LIMIT, limit=policy.max_devices), pid, ""
        return decision, pid, committed.nonce


def eap_logins(settings: PasspointSettings, client: RedisClient) -> EapLogins:
    """The EAP side built from ``[passpoint]`` (enabled): the server certificate chain
    and key read once (the key must not be readable by group or others), one
    ``TtlsServer``, one ``StateTable``, the credential store on ``client``. Raises
    ValueError for an unusable file (``serve`` reports it at startup)."""
    if not settings.enabled or settings.server_cert is None or settings.server_key is None:
        raise ValueError("[passpoint] is not enabled or lacks server_cert/server_key")
    key_path = settings.server_key
    if key_path.stat().st_mode & 0o077:
        raise ValueError(f"{key_path}: the EAP server key must be mode 0600 (not group/other)")
    server = TtlsServer(
        settings.server_cert.read_bytes(),
        key_path.read_bytes(),
        fragment_size=settings.fragment_size,
        resumption_lifetime=float(settings.resumption_seconds),
    )
    return EapLogins(
        server,
        StateTable(lifetime=float(settings.state_seconds)),
        EapCredentialStore(client),
        CredentialPolicy(settings.realm, settings.credential_days),
    )
