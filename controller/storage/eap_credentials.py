"""EAP (Passpoint) credentials in Redis: per person, looked up by username, revocable.

Two keys per credential (names in ``storage/keys.py``):

- ``cw:eap:<username>``: a hash ``pid``, ``hash`` (argon2id, PHC string), ``issued``,
  ``expires``, ``label``; Redis expires it at ``expires`` (EXPIREAT), so an expired
  credential disappears by itself, and a login reads one key.
- ``cw:{pid}:eap``: the set of the person's usernames, kept as long as its newest
  credential; the status page lists from it and "revoke all" walks it.

The two keys live in different Cluster slots, so they are written by separate commands
in one non-transactional pipeline (like the store's global indexes): the username key
first on issue and the set entry first removed on revoke, so a crash between the two
leaves at worst a set entry naming nothing, which ``for_person`` skips and cleans.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.domain.eap_credentials import EapCredential
from controller.storage import keys
from controller.storage.redis_conn import RedisClient
from controller.storage.replies import as_text
from controller.storage.store import _UNAVAILABLE, StoreUnavailable

__all__ = ["EapCredentialStore"]


def _credential(username: str, fields: Mapping[Any, Any]) -> EapCredential | None:
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    try:
        return EapCredential(
            username=username,
            person_id=values["pid"],
            secret_hash=values["hash"],
            issued_at=int(values["issued"]),
            expires_at=int(values["expires"]),
            label=values.get("label", ""),
        )
    except (KeyError, ValueError):
        return None


class EapCredentialStore:
    """The Redis side of EAP credentials (see the module docstring)."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    async def save(self, credential: EapCredential) -> None:
        """Store a new credential (its username is random: a clash would overwrite, and
        has odds of one in 31**12 per pair)."""
        key = keys.eap_credential(credential.username)
        person_key = keys.eap_credentials(credential.person_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(
            key,
            mapping={
                "pid": credential.person_id,
                "hash": credential.secret_hash,
                "issued": credential.issued_at,
                "expires": credential.expires_at,
                "label": credential.label,
            },
        )
        pipe.expireat(key, credential.expires_at)
        pipe.sadd(person_key, credential.username)
        pipe.ttl(person_key)
        pipe.time()
        replies = await pipe.execute()
        # The set lives as long as the person's newest credential. EXPIREAT GT needs
        # Redis 7 (the embedded one is 6.2), so compare here; two issues for one person
        # racing can at worst leave the set with the shorter of their two lifetimes.
        ttl, (redis_now, _) = int(replies[-2]), replies[-1]
        if ttl < 0 or int(redis_now) + ttl < credential.expires_at:
            await self._client.expireat(person_key, credential.expires_at)

    async def lookup(self, username: str) -> EapCredential | None:
        """The credential of ``username``, or None (unknown, expired by Redis, revoked)."""
        try:
            fields = await self._client.hgetall(keys.eap_credential(username))
        except _UNAVAILABLE as exc:  # a login must not be answered blind (RFC 2866 §2)
            raise StoreUnavailable(str(exc)) from exc
        return _credential(username, fields) if fields else None

    async def for_person(self, pid: str) -> list[EapCredential]:
        """The person's live credentials, oldest first; entries naming a credential that
        is gone (expired) are removed from the set on the way. Raises StoreUnavailable."""
        try:
            return await self._for_person(pid)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _for_person(self, pid: str) -> list[EapCredential]:
        person_key = keys.eap_credentials(pid)
        usernames = sorted(as_text(u) for u in await self._client.smembers(person_key))
        if not usernames:
            return []
        pipe = self._client.pipeline(transaction=False)
        for username in usernames:
            pipe.hgetall(keys.eap_credential(username))
        replies: Sequence[Any] = await pipe.execute()
        found: list[EapCredential] = []
        gone: list[str] = []
        for username, fields in zip(usernames, replies, strict=True):
            credential = _credential(username, fields) if fields else None
            if credential is None or credential.person_id != pid:
                gone.append(username)
            else:
                found.append(credential)
        if gone:
            await self._client.srem(person_key, *gone)
        return sorted(found, key=lambda c: (c.issued_at, c.username))

    async def revoke(self, pid: str, username: str) -> bool:
        """Revoke one of the person's credentials; False when it is not theirs (or gone).
        The person id is checked so a status page cannot revoke someone else's."""
        credential = await self.lookup(username)
        if credential is None or credential.person_id != pid:
            return False
        pipe = self._client.pipeline(transaction=False)
        pipe.srem(keys.eap_credentials(pid), username)
        pipe.delete(keys.eap_credential(username))
        try:
            await pipe.execute()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return True

    async def revoke_person(self, pid: str) -> int:
        """Revoke every credential of the person (console, admin CLI); returns how many."""
        credentials = await self.for_person(pid)
        if not credentials:
            return 0
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(keys.eap_credentials(pid))
        for credential in credentials:
            pipe.delete(keys.eap_credential(credential.username))
        try:
            await pipe.execute()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return len(credentials)
