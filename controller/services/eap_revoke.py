"""Revoking a person's EAP ("connect automatically") credentials, and ending the EAP
sessions they opened (issue 19): one function for the status page, the admin API, the
``citywifi eap`` command and the console.

A revoked credential neither logs in nor resumes a TLS session from then on (the EAP
service checks the credential on every success, ``controller.services.eap_service``);
a session it already opened would run until its Session-Timeout, so its NAS gets an
RFC 5176 Disconnect-Request now, through the enforcer (the same path as the console's
"disconnect": ``Enforcer.disconnect_sessions``, the person's other devices staying
online).

Which open sessions are EAP sessions of the revoked credentials is read from the
session record's ``user`` (the Accounting-Request's User-Name): the EAP Accept names the
inner identity in User-Name, which a NAS echoes in accounting (RFC 2865 §5.1, RFC 5281
§8). A NAS that reports the outer, anonymous identity instead (``anonymous@<realm>``)
cannot say which of the person's credentials the session is on; such sessions in the
city's realm are ended too (the device of a credential still valid reconnects by itself).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import structlog

from controller.domain.eap_credentials import EapCredential, realm_of
from controller.services.enforcer import Enforcer, EnforcerBusy, SessionOutcome
from controller.storage.accounts import AccountStore
from controller.storage.eap_credentials import EapCredentialStore
from controller.storage.store import Store

__all__ = [
    "RevokeResult",
    "credentials_json",
    "eap_sessions",
    "list_credentials",
    "revoke_credentials",
]

log = structlog.get_logger("citywifi.eap")

REASON = "revoked"  # the enforcer's disconnect reason (citywifi_enforcer_disconnects_total)


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """What a revoke did: the usernames revoked (empty: none was the person's) and the
    Disconnect of each EAP session they had open (``SessionOutcome.result``: acked,
    closed, naked, failed, no_client, unsupported, or busy when another process was
    acting on the person)."""

    person: str
    revoked: tuple[str, ...]
    disconnected: tuple[SessionOutcome, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "person": self.person,
            "revoked": list(self.revoked),
            "disconnected": [
                {"session": o.sid, "client": o.client, "result": o.result}
                for o in self.disconnected
            ],
        }


def eap_sessions(
    records: Mapping[str, Mapping[str, str]],
    revoked: Collection[str],
    remaining: Collection[str],
    realm: str,
) -> list[str]:
    """The open sessions (sid -> session record) to end when ``revoked`` usernames are
    revoked and ``remaining`` stay valid: those on a revoked username, and those whose
    User-Name is in ``realm`` but names no remaining credential (the anonymous outer
    identity of a NAS that does not echo the Accept's User-Name). Pure."""
    if not revoked:
        return []
    gone = {u.lower() for u in revoked}
    kept = {u.lower() for u in remaining}
    out = []
    for sid, record in sorted(records.items()):
        user = record.get("user", "").lower()
        if user in gone or (realm and realm_of(user) == realm.lower() and user not in kept):
            out.append(sid)
    return out


def credentials_json(pid: str, found: list[EapCredential]) -> dict[str, object]:
    """The answer listing a person's credentials (admin API and ``citywifi eap list``):
    each as ``EapCredential.public``, never a secret or hash."""
    return {"person": pid, "credentials": [c.public() for c in found]}


async def list_credentials(store: Store, pid: str) -> list[EapCredential]:
    """The person's live credentials, oldest first."""
    return await EapCredentialStore(store.redis).for_person(pid)


async def revoke_credentials(
    store: Store,
    enforcer: Enforcer | None,
    pid: str,
    username: str | None = None,
    *,
    realm: str,
    now: int,
    by: str = "",
    address: str = "",
) -> RevokeResult:
    """Revoke one of the person's credentials (``username``), or all of them (None), and
    disconnect the EAP sessions they had open (``enforcer`` None: revoke only). ``by``
    names an admin or console account: then the action is written to the audit outbox
    like the console's disconnect; a person revoking their own (status page) leaves
    ``by`` empty. Raises ``StoreUnavailable`` when Redis is down."""
    credentials = EapCredentialStore(store.redis)
    if username is not None:
        revoked: tuple[str, ...] = (username,) if await credentials.revoke(pid, username) else ()
    else:
        names = [c.username for c in await credentials.for_person(pid)]
        await credentials.revoke_person(pid)
        revoked = tuple(names)
    outcomes: tuple[SessionOutcome, ...] = ()
    if revoked and enforcer is not None:
        remaining = [c.username for c in await credentials.for_person(pid)]
        sids = eap_sessions(await store.open_sessions(pid), revoked, remaining, realm)
        if sids:
            try:
                outcomes = tuple(await enforcer.disconnect_sessions(pid, sids, reason=REASON))
            except EnforcerBusy:
                outcomes = tuple(SessionOutcome(sid, "", "busy") for sid in sids)
    log.info(
        "eap.revoke",
        person=pid,
        revoked=len(revoked),
        sessions=len(outcomes),
        who=by or "person",
    )
    if by:
        await AccountStore(store).audit(
            {
                "t": str(now),
                "user": by,
                "action": "eap_revoke",
                "target": pid if username is None else f"{pid}|{username}",
                "result": f"revoked:{len(revoked)} disconnected:{len(outcomes)}",
                "address": address,
            }
        )
    return RevokeResult(pid, revoked, outcomes)
