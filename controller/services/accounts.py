"""Named console accounts: add, change password, disable, list; sign in (password, then
TOTP when the account has it), sessions, sign out. One set of functions for the console
(``controller.web.console``) and ``citywifi user`` (``controller.cli.users``).

Passwords are hashed with argon2id (RFC 9106) by argon2-cffi, in a worker thread (a hash
costs tens of milliseconds of CPU; RADIUS must keep being answered meanwhile). An unknown
name is verified against a dummy hash, so timing does not tell which names exist.

Every action is an audit record naming the console user who did it: an entry on the
outbox (``k=console``), which the archiver writes to the audit log like login decisions,
and a ``console.*`` log line.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from controller.domain.accounts import (
    TOTP_DRIFT,
    TOTP_PERIOD,
    Account,
    AccountError,
    ConsoleSession,
    LockoutPolicy,
    Refusal,
    check_password,
    check_username,
    locks_now,
    new_session_id,
    new_totp_secret,
    parse_role,
    provisioning_uri,
    session_expiry,
    session_holds,
    totp_step,
)
from controller.services.portal.ratelimit import network_bucket
from controller.storage.accounts import AccountStore
from controller.storage.store import Store

log = structlog.get_logger("citywifi.console")

SESSION_SECONDS = 8 * 3600  # a working shift; then sign in again
DEFAULT_LOCKOUT = LockoutPolicy()  # 5 failures in 15 minutes lock for 15 minutes
_HASHER = PasswordHasher()  # argon2id, RFC 9106 second recommended profile (64 MiB, t=3)


@cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Added:
    account: Account
    totp_uri: str  # "" without a second factor


class Accounts:
    """The account actions on one store; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        lockout: LockoutPolicy = DEFAULT_LOCKOUT,
        session_seconds: int = SESSION_SECONDS,
        issuer: str = "citywifi",
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.db = AccountStore(store)
        self.clock = clock
        self.lockout = lockout
        self.session_seconds = session_seconds
        self.issuer = issuer
        self.random_bytes = random_bytes

    # -- audit -------------------------------------------------------------------------

    async def _audit(
        self, by: str, action: str, *, target: str = "", result: str = "ok", address: str = ""
    ) -> None:
        entry = {
            "t": str(int(self.clock())),
            "user": by,
            "action": action,
            "target": target,
            "result": result,
            "address": address,
        }
        log.info(f"console.{action}", who=by, target=target, result=result, address=address)
        await self.db.audit(entry)

    # -- managing accounts ---------------------------------------------------------------

    async def add(
        self,
        name: str,
        password: str,
        roles: Iterable[str],
        *,
        totp: bool,
        by: str,
        operators: frozenset[str] | None = None,
    ) -> Added:
        check_username(name)
        check_password(password, name)
        parsed = tuple(dict.fromkeys(parse_role(r, operators) for r in roles))
        if not parsed:
            raise AccountError("no_role", "an account needs at least one role")
        secret = ""
        if totp:
            secret = new_totp_secret(base64.b32encode(self.random_bytes(20)).decode())
        hashed = await asyncio.to_thread(_HASHER.hash, password)
        account = Account(name, hashed, parsed, secret, False, int(self.clock()))
        if not await self.db.create(account):
            raise AccountError("exists", f"an account '{name}' exists")
        await self._audit(by, "user.add", target=name, result=",".join(map(str, parsed)))
        uri = provisioning_uri(secret, name, self.issuer) if secret else ""
        return Added(account, uri)

    async def passwd(self, name: str, password: str, *, by: str) -> int:
        """Set a new password; ends the account's sessions and lock. Returns sessions ended."""
        account = await self._existing(name)
        check_password(password, name)
        hashed = await asyncio.to_thread(_HASHER.hash, password)
        await self.db.update(account.name, hash=hashed)
        await self.db.unlock(name)
        ended = await self.db.end_sessions(name)
        await self._audit(by, "user.passwd", target=name)
        return ended

    async def disable(self, name: str, *, by: str) -> int:
        """Disable an account and end its sessions at once. Returns sessions ended."""
        await self._existing(name)
        await self.db.update(name, disabled="1")
        ended = await self.db.end_sessions(name)
        await self._audit(by, "user.disable", target=name)
        return ended

    async def accounts(self) -> list[Account]:
        found = [await self.db.get(n) for n in await self.db.names()]
        return [a for a in found if a is not None]

    async def _existing(self, name: str) -> Account:
        account = await self.db.get(name)
        if account is None:
            raise AccountError("unknown_user", f"no account '{name}'")
        return account

    # -- signing in ---------------------------------------------------------------------

    def _verify(self, account: Account | None, password: str) -> bool:
        # an unknown name costs one verification too, as a real one (the dummy hash is
        # made once per process, not per request: that would cost a second hash)
        digest = _dummy_hash() if account is None else account.password_hash
        try:
            return bool(_HASHER.verify(digest, password)) and account is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def sign_in(
        self, name: str, password: str, code: str, address: str
    ) -> ConsoleSession | Refusal:
        """A session for a browser at ``address``, or why not (every attempt audited)."""
        name = name.strip().lower()
        now = int(self.clock())
        locked = await self.db.locked_for(name) if name else 0
        if locked:
            return await self._refuse(name, Refusal("locked", locked), address)
        account = await self.db.get(name) if name and len(password) < 4096 else None
        ok = await asyncio.to_thread(self._verify, account, password[:4096])
        if not ok or account is None:
            return await self._refuse(name, Refusal("unknown_or_bad_password"), address)
        if account.disabled:
            return await self._refuse(name, Refusal("disabled"), address)
        if account.totp_secret:
            if not code.strip():
                return await self._refuse(name, Refusal("totp_required"), address)
            step = totp_step(account.totp_secret, code, now)
            if step is None:
                return await self._refuse(name, Refusal("bad_totp"), address)
            keep = (2 * TOTP_DRIFT + 2) * TOTP_PERIOD
            if not await self.db.use_totp_step(name, step, keep):
                return await self._refuse(name, Refusal("totp_replayed"), address)
        if _HASHER.check_needs_rehash(account.password_hash):
            hashed = await asyncio.to_thread(_HASHER.hash, password)
            await self.db.update(name, hash=hashed)
        await self.db.clear_failures(name)
        session = ConsoleSession(
            id=new_session_id(self.random_bytes(32)),
            user=name,
            created=now,
            expires=session_expiry(now, self.session_seconds),
            network=network_bucket(address),
        )
        await self.db.put_session(session, now)
        await self._audit(name, "login", target=name, address=address)
        return session

    async def _refuse(self, name: str, refusal: Refusal, address: str) -> Refusal:
        if refusal.counts and name:
            failures = await self.db.count_failure(name, self.lockout.window)
            if locks_now(failures, self.lockout):
                await self.db.lock(name, self.lockout.lock_seconds)
                await self._audit(name, "locked", target=name, result="locked", address=address)
        await self._audit(name, "login", target=name, result=refusal.reason, address=address)
        return refusal

    async def session(self, session_id: str, address: str) -> Account | None:
        """The account a session cookie signs in from ``address``, if it still holds
        (not expired, same network, account enabled)."""
        if not session_id or len(session_id) > 128:
            return None
        session = await self.db.get_session(session_id)
        if session is None or not session_holds(
            session, now=self.clock(), network=network_bucket(address)
        ):
            return None
        account = await self.db.get(session.user)
        if account is None or account.disabled:
            return None
        return account

    async def sign_out(self, session_id: str, address: str) -> None:
        session = await self.db.get_session(session_id) if session_id else None
        if session is not None:
            await self.db.end_session(session_id, session.user)
            await self._audit(session.user, "logout", target=session.user, address=address)
