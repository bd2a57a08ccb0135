"""Redis storage of the console's named accounts, their sessions and lock-outs.

Every key here is built by the helpers at the top (a section of its own rather than
``keys.py``, so the two cannot conflict while the store is being reworked); each command
touches one key, so nothing here cares about Redis Cluster slots:

- ``cw:acct:user:<name>``: hash ``hash roles totp disabled created`` (roles ``,``-joined)
- ``cw:acct:users``: set of account names
- ``cw:acct:fail:<name>``: failed sign-ins in the current window (INCR, TTL = window)
- ``cw:acct:lock:<name>``: present while the account is locked (TTL = the lock)
- ``cw:acct:totp:<name>:<step>``: a TOTP step already used (SET NX, TTL past the drift)
- ``cw:acct:sess:<id>``: hash ``user created expires network`` (TTL = to ``expires``)
- ``cw:acct:usess:<name>``: set of that account's session ids (ended on passwd/disable)

Redis errors become ``StoreUnavailable`` (through the store's guard), replies become
domain types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.domain.accounts import Account, ConsoleSession, parse_role
from controller.storage.keys import (
    USERS,
    failures_key,
    lock_key,
    session_key,
    totp_used_key,
    user_key,
    user_sessions_key,
)
from controller.storage.replies import as_text
from controller.storage.store import Store


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}


def _account(name: str, f: Mapping[str, str]) -> Account:
    return Account(
        name=name,
        password_hash=f.get("hash", ""),
        roles=tuple(parse_role(r) for r in f.get("roles", "").split(",") if r),
        totp_secret=f.get("totp", ""),
        disabled=f.get("disabled", "0") == "1",
        created=int(f.get("created", "0") or 0),
    )


class AccountStore:
    """The account, session and lock-out keys, on the store's Redis connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- accounts -------------------------------------------------------------------

    async def get(self, name: str) -> Account | None:
        async def op() -> Account | None:
            raw = await self.store.redis.hgetall(user_key(name))
            return _account(name, _fields(raw)) if raw else None

        return await self.store._guard(op)

    async def create(self, account: Account) -> bool:
        """Store a new account; False if the name is taken (HSETNX on the hash field)."""

        async def op() -> bool:
            redis = self.store.redis
            if not await redis.hsetnx(user_key(account.name), "hash", account.password_hash):
                return False
            await redis.hset(
                user_key(account.name),
                mapping={
                    "roles": ",".join(str(r) for r in account.roles),
                    "totp": account.totp_secret,
                    "disabled": "1" if account.disabled else "0",
                    "created": str(account.created),
                },
            )
            await redis.sadd(USERS, account.name)
            return True

        return await self.store._guard(op)

    async def update(self, name: str, **fields: str) -> None:
        mapping: dict[Any, Any] = dict(fields)

        async def op() -> None:
            await self.store.redis.hset(user_key(name), mapping=mapping)

        await self.store._guard(op)

    async def names(self) -> list[str]:
        async def op() -> list[str]:
            return sorted(as_text(n) for n in await self.store.redis.smembers(USERS))

        return await self.store._guard(op)

    # -- lock-out ----------------------------------------------------------------------

    async def count_failure(self, name: str, window: int) -> int:
        """Count a failed sign-in; the count within the window (it starts at the first)."""

        async def op() -> int:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.set(failures_key(name), 0, ex=window, nx=True)  # the window starts
            pipe.incr(failures_key(name))  # INCR keeps the TTL
            _, count = await pipe.execute()
            return int(count)

        return await self.store._guard(op)

    async def clear_failures(self, name: str) -> None:
        async def op() -> None:
            await self.store.redis.delete(failures_key(name))

        await self.store._guard(op)

    async def lock(self, name: str, seconds: int) -> None:
        async def op() -> None:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.set(lock_key(name), "1", ex=seconds)
            pipe.delete(failures_key(name))
            await pipe.execute()

        await self.store._guard(op)

    async def unlock(self, name: str) -> None:
        async def op() -> None:
            await self.store.redis.delete(lock_key(name), failures_key(name))

        await self.store._guard(op)

    async def locked_for(self, name: str) -> int:
        """Seconds the account stays locked (0: not locked)."""

        async def op() -> int:
            return max(0, int(await self.store.redis.ttl(lock_key(name))))

        return await self.store._guard(op)

    async def use_totp_step(self, name: str, step: int, keep: int) -> bool:
        """Mark a TOTP step used; False if it was already (a replayed code). Atomic."""

        async def op() -> bool:
            return bool(
                await self.store.redis.set(totp_used_key(name, step), "1", nx=True, ex=keep)
            )

        return await self.store._guard(op)

    # -- sessions ------------------------------------------------------------------------

    async def put_session(self, session: ConsoleSession, now: int) -> None:
        async def op() -> None:
            ttl = max(1, session.expires - now)
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.hset(
                session_key(session.id),
                mapping={
                    "user": session.user,
                    "created": str(session.created),
                    "expires": str(session.expires),
                    "network": session.network,
                },
            )
            pipe.expire(session_key(session.id), ttl)
            pipe.sadd(user_sessions_key(session.user), session.id)
            pipe.expire(user_sessions_key(session.user), ttl)  # the newest lasts longest
            await pipe.execute()

        await self.store._guard(op)

    async def get_session(self, session_id: str) -> ConsoleSession | None:
        async def op() -> ConsoleSession | None:
            raw = _fields(await self.store.redis.hgetall(session_key(session_id)))
            if not raw.get("user"):
                return None
            return ConsoleSession(
                id=session_id,
                user=raw["user"],
                created=int(raw.get("created", "0") or 0),
                expires=int(raw.get("expires", "0") or 0),
                network=raw.get("network", ""),
            )

        return await self.store._guard(op)

    async def end_session(self, session_id: str, user: str) -> None:
        async def op() -> None:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.delete(session_key(session_id))
            pipe.srem(user_sessions_key(user), session_id)
            await pipe.execute()

        await self.store._guard(op)

    async def end_sessions(self, user: str) -> int:
        """End every session of an account (password changed, account disabled)."""

        async def op() -> int:
            ids = [as_text(i) for i in await self.store.redis.smembers(user_sessions_key(user))]
            for sid in ids:
                await self.store.redis.delete(session_key(sid))
            await self.store.redis.delete(user_sessions_key(user))
            return len(ids)

        return await self.store._guard(op)

    # -- audit ---------------------------------------------------------------------------

    async def audit(self, entry: Mapping[str, str]) -> None:
        """An account action for the audit log, on the outbox like login decisions."""
        await self.store.outbox_add({"k": "console", **entry})
