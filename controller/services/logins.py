"""Issuing one-time RADIUS login credentials (the portal's and ``issue-login``'s entry)."""

from __future__ import annotations

from dataclasses import dataclass

from controller.domain.identity import new_password, new_username, person_id
from controller.storage.store import Store


@dataclass(frozen=True, slots=True)
class IssuedLogin:
    person: str
    username: str
    password: str
    expires_in: int


async def issue_login(
    store: Store,
    *,
    phone_e164: str,
    mac: str,
    client_id: str,
    person_key: bytes,
    ttl: int,
    now: int,
) -> IssuedLogin:
    """A fresh credential for a verified number, bound to the RADIUS client (``[[clients]]``
    id) it is handed to and, when known, to one device's MAC: the RADIUS server rejects
    it anywhere else (controller.domain.access)."""
    pid = person_id(phone_e164, person_key)
    username, password = new_username(pid), new_password()
    await store.issue_credential(
        pid, username, password, mac=mac, client_id=client_id, ttl=ttl, phone=phone_e164, now=now
    )
    return IssuedLogin(pid, username, password, ttl)
