"""The only module that talks to Redis.

Multi-key updates are the Lua scripts in ``controller/storage/lua`` (one hash slot each,
time in ARGV; every file there is registered, ``controller.storage.scripts``); global
indexes ride in the same pipeline, so a request costs one round trip. Every reply is
mapped here into the domain types of ``controller.domain.state`` (no reply is read by
index elsewhere). Redis errors, error replies of a script included, are mapped to
``StoreUnavailable`` here, at the one boundary, and every outage tells ``StoreHealth``
whether the store can record right now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import secrets
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import redis.asyncio as aioredis
import structlog
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster

from controller.domain.state import (
    LOGIN_REUSE_GRACE,
    AccountingResult,
    AccountingWrite,
    CommitStatus,
    Committed,
    CredentialIssue,
    DuePerson,
    EnforcerTimers,
    LoginUse,
    MacLoginAsk,
    MacLoginDone,
    Origin,
    OtpAttempt,
    OutboxEntry,
    PersonRecords,
    PersonSnapshot,
    PersonState,
    SessionVersion,
    StaleCheck,
)
from controller.storage import keys
from controller.storage.redis_batch import Batcher, Command, classify, link_for
from controller.storage.scripts import find_scripts
from radius.running_loop import running_loop

log = structlog.get_logger("citywifi.store")

T = TypeVar("T")

DAY_TTL = 3 * 86400  # day counters outlive their day by two (late Stops, midnight runs)
SESSION_TTL = 3 * 86400
DEVICE_HOLD = 90  # seconds an Access-Accept holds a device slot unless its session opens
MAX_GENERATION_TRIES = 4  # account.lua answers "new"/"moved" at most this often in a row


@functools.cache
def _account_numbers(days: int) -> struct.Struct:
    """account.lua's ARGV[11]: the 14 numbers it computes with, then the ``days`` day
    starts, as little-endian doubles (exact for every integer below 2**53) that its one
    ``struct.unpack`` reads. A number passed as text costs Redis a ``strtod`` and an
    argument of its own each (~1 k instructions together, ``bench.acct_redis
    --callgrind``: issue 16); the texts Redis stores (Acct-Session-Time, the event time,
    the octets) still go as text."""
    return struct.Struct(f"<{14 + days}d")


_MAC_LOGIN_NUMBERS = struct.Struct("<8d")  # mac_login.lua's ARGV[9], as _account_numbers


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(reply: Any) -> dict[str, str]:
    """HGETALL as a dict, whether the link returned a flat list or redis-py a dict."""
    if isinstance(reply, dict):
        return {_text(k): _text(v) for k, v in reply.items()}
    try:  # the batched link's bytes, decoded in C
        texts = list(map(bytes.decode, reply))
    except TypeError:  # some already str
        return {_text(reply[i]): _text(reply[i + 1]) for i in range(0, len(reply), 2)}
    return dict(zip(texts[0::2], texts[1::2], strict=True))


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _flat(fields: Any) -> list[bytes]:
    """Stream entry fields as one flat bytes list (name, value, ...), from a dict or a list."""
    if isinstance(fields, dict):
        return [_raw(x) for pair in fields.items() for x in pair]
    return [_raw(x) for x in fields]


# the Lua scripts' status words and codes, as the domain types name them
_COMMIT_STATUS: Mapping[str, CommitStatus] = {
    "ok": "ok",
    "gone": "gone",
    "used": "used",
    "device_limit": "device_limit",
}
_OTP_STATUS: Mapping[str, Literal["gone", "locked", "check"]] = {
    "gone": "gone",
    "locked": "locked",
    "check": "check",
}
_STALE_OUTCOME: Mapping[int, Literal["closed", "fresh", "gone"]] = {
    1: "closed",
    0: "fresh",
    -1: "gone",
}


class StoreUnavailable(Exception):
    """Redis did not acknowledge: the caller must not answer the NAS (RFC 2866 §2)."""


PROBE_INTERVAL = 1.0  # seconds between health probes while the store records
PROBE_RETRY = 0.25  # ... while it does not: answer Status-Server again soon after Redis


class StoreHealth:
    """Whether the store can record now, from the outcome of its latest round trips.

    RFC 5997 §4.2: a server must not answer Status-Server while it cannot serve, or
    proxies (FreeRADIUS, radsecproxy) keep sending it requests it drops. Every hot-path
    exchange reports here (acknowledged: up; timeout, connection or read-only: down), so
    knowing costs nothing per packet; ``Store.watch_health`` probes with a small write
    when no traffic does it. The latest outcome wins. Pure: ``now`` is passed in.
    """

    def __init__(self) -> None:
        self.up = True
        self.since = 0.0  # when ``up`` last changed

    def can_record(self) -> bool:
        return self.up

    def report(self, ok: bool, now: float) -> bool:
        """Record one outcome; True when it changed the state."""
        if ok == self.up:
            return False
        self.up, self.since = ok, now
        return True


def _snapshot(r: Sequence[Any]) -> PersonSnapshot:
    flat, marks = r[1], r[2]
    sessions: dict[str, tuple[str, int]] = {}
    slack: dict[str, int] = {}
    for i in range(0, len(flat), 2):
        sid = _text(flat[i])
        mac, _, rest = _text(flat[i + 1]).partition("|")
        last, _, extra = rest.partition("|")  # "mac|last|slack" ("mac|last" before 14)
        sessions[sid] = (mac, int(last or 0))
        if extra and extra != "0":
            slack[sid] = int(extra)
    closing = {_text(marks[i]): int(marks[i + 1]) for i in range(0, len(marks), 2)}
    closing = {sid: at for sid, at in closing.items() if sid in sessions}
    return PersonSnapshot(int(r[0]), sessions, closing, _text(r[3]), slack)


def _failed(replies: Sequence[Any]) -> list[redis_errors.RedisError]:
    """The error replies of a unit, as the exceptions redis-py would raise."""
    return [classify(r) for r in replies if isinstance(r, redis_errors.ResponseError)]


def _lost_scripts(failed: Sequence[redis_errors.RedisError]) -> bool:
    return any(isinstance(e, redis_errors.NoScriptError) for e in failed)


def _wants_fields(r: Any) -> bool:
    """account.lua's {'fields'}: the session is not recorded, send its description."""
    return len(r) == 1 and r[0] in (b"fields", "fields")


def _moved(w: AccountingWrite, r: Any, sid: str) -> tuple[int, bool, str] | None:
    """account.lua's "new"/"moved": the generation to try next, whether to create it,
    and the ref this try indexed as open (taken back by the next); None: written."""
    if r[0] in (b"new", "new", b"moved", "moved"):
        return int(r[1]), r[0] in (b"new", "new"), keys.session_ref(w.pid, sid)
    return None


def _account_result(r: Any, sid: str, generation: int, indexes: bool) -> AccountingResult:
    due = r[10]
    known = due not in (b"", "")
    return AccountingResult(  # positional (a keyword call of a record builds a dict)
        int(r[0]),  # applied
        int(r[1]),  # used_today
        int(r[2]),  # open_sessions
        bool(r[3]),  # closed_now
        _snapshot((r[1], *r[4:7])) if r[11] else None,  # snapshot
        sid,
        generation,
        bool(r[7]),  # reopened
        int(r[9]),  # gap
        known,  # due_known
        int(due) if known and int(due) >= 0 else None,  # due
        known and indexes,  # due_indexed
    )


def _owner(replies: Sequence[Any]) -> str | None:
    value = replies[0]
    return _text(value) if value else None


def _person_state(replies: Sequence[Any]) -> PersonState:
    r = replies[0]
    used = None
    if r[3]:
        origin = Origin(_text(r[5]), _text(r[6]), _text(r[7]), _text(r[8]))
        used = LoginUse(int(r[3]), _text(r[4]), origin)
    return PersonState(
        password=_text(r[0]),
        client=_text(r[1]),
        bound_mac=_text(r[2]),
        used=used,
        used_today=int(r[9]),
        other_devices=int(r[10]),
        block=_text(r[11]),
    )


def _committed(replies: Sequence[Any]) -> Committed:
    r = replies[0]
    return Committed(_COMMIT_STATUS[_text(r[0])], _text(r[1]))


def _mac_login_done(recorded: bool) -> Callable[[Sequence[Any]], MacLoginDone]:
    def parse(replies: Sequence[Any]) -> MacLoginDone:
        r = replies[0]
        pid = _text(r[1])
        return MacLoginDone(_text(r[0]), pid or None, int(r[2]), _text(r[3]), _text(r[4]), recorded)

    return parse


_DONE_RECORDED, _DONE_UNRECORDED = _mac_login_done(True), _mac_login_done(False)

_MARK = "\x00"  # stands for the pid in a key name (the person's keys split around it)


def _around_pid(key: str) -> tuple[str, str]:
    head, tail = key.split(_MARK)
    return head, tail


def _person_key_parts() -> tuple[str, str, str, str]:
    """The head of every person key (before the pid) and the tails of the open-sessions,
    device holds and block keys (after it): mac_login.lua names the keys of a person it
    looked up itself from these, so the layout stays controller.storage.keys's."""
    head, open_tail = _around_pid(keys.open_sessions(_MARK))
    parts = [_around_pid(keys.device_holds(_MARK)), _around_pid(keys.block(_MARK))]
    assert all(h == head for h, _ in parts), "person keys must share their head"
    return head, open_tail, parts[0][1], parts[1][1]


_PERSON_KEY_PARTS = _person_key_parts()


def _usage_tail(today_key: str) -> str:
    return _around_pid(keys.day_usage(_MARK, today_key))[1]


def _xadd(entry: Mapping[str, str]) -> Command:
    command: list[Any] = ["XADD", keys.OUTBOX, "*"]
    for k, v in entry.items():
        command.extend((k, v))
    return command


def _nothing(replies: Sequence[Any]) -> None:
    return None


_UNAVAILABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    OSError,
)


class Store:
    def __init__(self, client: aioredis.Redis | RedisCluster) -> None:
        self.redis = client
        self.scripts = find_scripts()  # every lua/*.lua (controller.storage.scripts)
        self.scripts_loaded = False
        # the RADIUS hot path: calls of one loop tick share a write (controller.storage.redis_batch)
        self.batch = Batcher(link_for(client))
        self._following: set[asyncio.Future[Any]] = set()  # account_soon's rare continuations
        # one Redis (or Sentinel's primary): the global indexes share the scripts' Redis,
        # account.lua writes them itself; a Cluster keeps them in other slots (a 2nd call)
        self.indexes_in_scripts = not isinstance(client, RedisCluster)
        # ... and a MAC re-authentication is one call (owner, decision, record: mac_login.lua)
        self.login_in_one_call = self.indexes_in_scripts
        self._usage_day = self._usage_tail = ""  # mac_login.lua's usage key tail, for today
        self.health = StoreHealth()
        self._probe_key = keys.health_probe(secrets.token_hex(6))

    def _report(self, ok: bool) -> None:
        if self.health.report(ok, time.monotonic()):
            (log.info if ok else log.warning)("store.up" if ok else "store.down")

    async def probe(self) -> bool:
        """One small write through the hot path's link (what accounting needs: a write
        acknowledged, so a read-only replica or a full Redis counts as down)."""
        try:
            await self._hot([("SET", self._probe_key, "1", "PX", 10_000)])
        except (StoreUnavailable, redis_errors.RedisError):
            self._report(False)
            return False
        return True

    async def watch_health(
        self, interval: float = PROBE_INTERVAL, retry: float = PROBE_RETRY
    ) -> None:
        """Probe forever (a task of ``serve``), more often while the store is down."""
        while True:
            await self.probe()
            await asyncio.sleep(interval if self.health.up else retry)

    async def close(self) -> None:
        await self.batch.close()
        await self.redis.aclose()

    def _submit(
        self, unit: list[Command], replied: Callable[[asyncio.Future[list[Any]]], None]
    ) -> None:
        """One unit of hot-path commands into this tick's batch; ``replied`` gets the
        future of its replies (raw: error replies not yet sorted) when they are in:
        ``_hot`` without a coroutine, for the callback paths (``account_soon``).
        ``MeteredStore`` times it like ``_hot``, in the same callback (one per unit)."""
        self.batch.submit(unit).add_done_callback(replied)

    async def _hot(self, commands: list[Command]) -> list[Any]:
        """Run one unit of hot-path commands in this tick's batch; replies in order.

        A NOSCRIPT reply (a Redis restarted empty, failed over or ``SCRIPT FLUSH``ed)
        reloads every script and runs the unit once more; any other error reply (a Lua
        error, OOM, WRONGTYPE) is ``StoreUnavailable`` with the reply as its cause: the
        caller must not answer as if it was written. Only outages mark the store down."""
        try:
            replies = await self.batch.run(commands)
            failed = _failed(replies)
            if _lost_scripts(failed):
                await self.load_scripts()  # Redis restarted empty: once, then again
                replies = await self.batch.run(commands)
                failed = _failed(replies)
        except _UNAVAILABLE as exc:
            self._report(False)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._settle(failed)
        return replies

    def _settle(self, failed: list[redis_errors.RedisError]) -> None:
        """Raise the first error reply of a unit as ``StoreUnavailable`` (an outage also
        marks the store down); none: the store is up."""
        for error in failed:
            if isinstance(error, _UNAVAILABLE):
                self._report(False)
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error
        self._report(True)

    def _script(self, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Command:
        return ("EVALSHA", self.scripts[name].sha, len(keys_), *keys_, *args)

    async def _guard(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``; reload scripts and run it once more if Redis lost them (NOSCRIPT:
        restart, failover, ``SCRIPT FLUSH``); every Redis error is ``StoreUnavailable``
        (outages also mark the store down), as in ``_hot``."""
        try:
            try:
                result = await op()
            except redis_errors.NoScriptError:
                await self.load_scripts()
                result = await op()
        except _UNAVAILABLE as exc:
            self._report(False)
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except redis_errors.ResponseError as exc:  # an error reply: Lua, OOM, a 2nd NOSCRIPT
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        self._report(True)
        return result

    async def load_scripts(self) -> None:
        try:
            for script in self.scripts.values():
                sha = await self.redis.script_load(script.source)
                assert sha == script.sha, f"{script.name}: Redis SHA {sha} != {script.sha}"
        except _UNAVAILABLE as exc:
            self.scripts_loaded = False
            raise StoreUnavailable(str(exc)) from exc
        self.scripts_loaded = True

    async def memory_info(self) -> Mapping[str, Any]:
        """``INFO memory`` (a Cluster: per primary, by node), for the load shedding's
        reading (``controller.services.metrics.memory_of``)."""
        redis = self.redis

        async def op() -> Mapping[str, Any]:
            if isinstance(redis, RedisCluster):  # every primary's share
                info: Mapping[str, Any] = await redis.info("memory", target_nodes="primaries")
            else:
                info = await redis.info("memory")
            return info

        return await self._guard(op)

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except _UNAVAILABLE:
            return False

    def _evalsha(self, target: Any, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        # execute_command, not .evalsha(): redis-py blocks the method in cluster pipelines
        # but routes the raw command by its keys' slot (all under one {pid} tag)
        return target.execute_command(*self._script(name, keys_, args))

    # -- logins ---------------------------------------------------------------------

    async def issue_credential(
        self,
        pid: str,
        username: str,
        password: str,
        *,
        mac: str,
        client_id: str,
        ttl: int,
        phone: str,
        now: int,
    ) -> None:
        """A portal or ``issue-login`` credential and the person's profile: one unit of
        the batched link (each command routed to its own slot on a Cluster)."""
        key = keys.credential(pid, username)
        cred = ("HSET", key, "pw", password, "mac", mac, "client", client_id, "issued", now)
        await self._hot(
            [
                cred,
                ("EXPIRE", key, ttl),
                ("HSET", keys.profile(pid), "phone", phone, "seen", now),
                ("ZADD", keys.PROFILE_INDEX, now, pid),  # for the retention purge
            ]
        )

    async def mac_owner(self, mac: str) -> str | None:
        return _owner(await self._hot([("GET", keys.mac_owner(mac))]))

    def mac_owner_soon(self, mac: str) -> asyncio.Future[str | None]:
        """``mac_owner`` continued from the reply's callback (no Task, issue 16)."""
        return self._soon([("GET", keys.mac_owner(mac))], _owner, lambda: self.mac_owner(mac))

    def _auth_state_unit(
        self, pid: str, username: str, mac: str, today_key: str, stale_before: int, now: int | None
    ) -> list[Command]:
        ks = (
            keys.credential(pid, username),
            keys.day_usage(pid, today_key),
            keys.open_sessions(pid),
            keys.block(pid),
            keys.device_holds(pid),
        )
        args = (mac, stale_before, "" if now is None else now)
        return [self._script("auth_state", ks, args)]

    async def auth_state(
        self,
        pid: str,
        username: str,
        mac: str,
        today_key: str,
        stale_before: int,
        now: int | None = None,
    ) -> PersonState:
        """Everything an Access-Request decision needs about one person, one round trip.
        Without ``now`` every device hold counts until its hash expires (conservative)."""
        unit = self._auth_state_unit(pid, username, mac, today_key, stale_before, now)
        return _person_state(await self._hot(unit))

    def auth_state_soon(
        self, pid: str, username: str, mac: str, today_key: str, stale_before: int, now: int
    ) -> asyncio.Future[PersonState]:
        """``auth_state`` continued from the reply's callback (no Task, issue 16)."""
        unit = self._auth_state_unit(pid, username, mac, today_key, stale_before, now)
        return self._soon(
            unit,
            _person_state,
            lambda: self.auth_state(pid, username, mac, today_key, stale_before, now),
        )

    def _commit_unit(
        self,
        pid: str,
        username: str,
        mac: str,
        now: int,
        origin: Origin,
        nonce: str,
        max_devices: int,
        stale_before: int,
        remember_seconds: int,
    ) -> list[Command]:
        ks = (keys.credential(pid, username), keys.open_sessions(pid), keys.device_holds(pid))
        args = (
            "c" if username else "m",
            now,
            mac,
            origin.client,
            origin.session,
            origin.authenticator,
            LOGIN_REUSE_GRACE,
            max_devices,
            stale_before,
            DEVICE_HOLD,
            nonce,
            SESSION_TTL,
            origin.source,
        )
        unit: list[Command] = [self._script("commit_login", ks, args)]
        if username and mac and remember_seconds > 0:
            # same round trip, whatever the script says: the password was right at the
            # credential's own client, so this device is the person's (a global key, so
            # not inside the script: it lives on another Cluster slot)
            unit.append(("SET", keys.mac_owner(mac), pid, "EX", remember_seconds))
        return unit

    async def commit_login(
        self,
        pid: str,
        username: str,
        mac: str,
        *,
        now: int,
        origin: Origin,
        nonce: str,
        max_devices: int,
        stale_before: int,
        remember_seconds: int,
    ) -> Committed:
        """Atomically: count the person's devices and hold this one's slot (refused at
        ``max_devices``), consume the credential (``username``; "" for a MAC login).
        A credential's device is remembered for MAC re-authentication."""
        unit = self._commit_unit(
            pid,
            username,
            mac,
            now,
            origin,
            nonce,
            max_devices,
            stale_before,
            remember_seconds,
        )
        return _committed(await self._hot(unit))

    def commit_login_soon(
        self,
        pid: str,
        username: str,
        mac: str,
        *,
        now: int,
        origin: Origin,
        nonce: str,
        max_devices: int,
        stale_before: int,
        remember_seconds: int,
    ) -> asyncio.Future[Committed]:
        """``commit_login`` continued from the reply's callback (no Task, issue 16)."""
        args = (pid, username, mac, now, origin, nonce, max_devices, stale_before)
        again = functools.partial(
            self.commit_login,
            pid,
            username,
            mac,
            now=now,
            origin=origin,
            nonce=nonce,
            max_devices=max_devices,
            stale_before=stale_before,
            remember_seconds=remember_seconds,
        )
        unit = self._commit_unit(*args, remember_seconds)
        return self._soon(unit, _committed, again)

    def _mac_login_unit(self, ask: MacLoginAsk) -> tuple[list[Command], bool]:
        """mac_login.lua's call for ``ask``, and whether it queues the audit record."""
        if ask.pid is None:
            assert self.login_in_one_call, "a Cluster looks the MAC's owner up first"
            first = keys.mac_owner(ask.user_mac)
        else:
            first = keys.open_sessions(ask.pid)  # routes the call to the person's slot
        recorded = ask.record is not None and self.login_in_one_call
        head, open_tail, holds_tail, block_tail = _PERSON_KEY_PARTS
        if self._usage_day != ask.today:
            self._usage_day, self._usage_tail = ask.today, _usage_tail(ask.today)
        args: list[Any] = [
            ask.pid or "",
            head,
            open_tail,
            holds_tail,
            self._usage_tail,
            block_tail,
            ask.mac,
            ask.nonce,
            _MAC_LOGIN_NUMBERS.pack(
                ask.now,
                ask.stale_before,
                ask.daily,
                ask.to_midnight,
                ask.min_grant,
                ask.max_devices,
                DEVICE_HOLD,
                1 if recorded else 0,
            ),
        ]
        if recorded:
            assert ask.record is not None
            for k, v in ask.record.items():
                args.extend((k, v))
        ks = (first, keys.OUTBOX if recorded else first)
        return [self._script("mac_login", ks, args)], recorded

    async def mac_login(self, ask: MacLoginAsk) -> MacLoginDone:
        """A MAC re-authentication decided and, on acceptance, its device slot held in one
        call (mac_login.lua); on one Redis with the MAC's owner looked up (``ask.pid``
        None) and the audit record queued (``ask.record``) in the same call."""
        unit, recorded = self._mac_login_unit(ask)
        return (_DONE_RECORDED if recorded else _DONE_UNRECORDED)(await self._hot(unit))

    def mac_login_soon(self, ask: MacLoginAsk) -> asyncio.Future[MacLoginDone]:
        """``mac_login`` continued from the reply's callback (no Task, issue 16)."""
        unit, recorded = self._mac_login_unit(ask)
        parse = _DONE_RECORDED if recorded else _DONE_UNRECORDED
        return self._soon(unit, parse, lambda: self.mac_login(ask))

    async def credential_issue(self, pid: str, username: str) -> CredentialIssue | None:
        """The client a credential was issued for (kept ``SESSION_TTL`` after its use)."""
        r = (await self._hot([("HMGET", keys.credential(pid, username), "client", "nonce")]))[0]
        return CredentialIssue(_text(r[0]), _text(r[1] or b"")) if r[0] else None

    # -- accounting -----------------------------------------------------------------

    async def account(self, w: AccountingWrite) -> AccountingResult:
        """Apply one report, on the generation of its (client, Acct-Session-Id) it belongs
        to: one round trip when ``w.generation`` is current and the report is of that
        session; when the NAS reused the id (account.lua), a new generation is created
        in a second (and a third if another process created it first)."""
        return await self._account_from(w, max(1, w.generation), False, "", MAX_GENERATION_TRIES)

    async def _account_from(
        self, w: AccountingWrite, generation: int, create: bool, misplaced: str, tries: int
    ) -> AccountingResult:
        for _ in range(tries):
            r, sid = await self._account_once(w, generation, create, misplaced)
            if _wants_fields(r):  # the session was not recorded after all: describe it
                w = dataclasses.replace(w, describe=True)
                continue
            moved = _moved(w, r, sid)
            if moved is not None:
                generation, create, misplaced = moved
                continue
            return await self._account_result(w, r, sid, generation)
        raise StoreUnavailable(f"session {w.sid}: generations kept moving")

    async def _account_result(
        self, w: AccountingWrite, r: Any, sid: str, generation: int
    ) -> AccountingResult:
        result = _account_result(r, sid, generation, self.indexes_in_scripts)
        if int(r[8]):
            assert result.snapshot is not None
            await self._earlier_generation(w, generation, sid, result.snapshot)
        return result

    def account_soon(self, w: AccountingWrite) -> asyncio.Future[AccountingResult]:
        """``account(w)`` without a Task in the common case (issue 16): the unit joins
        this tick's batch and the result is made in the reply's callback. The rare rest
        (a reused id's new generation, a late report of an earlier one, scripts lost
        by Redis) continues as ``account`` would, in a task. Errors as ``account``'s."""
        generation = max(1, w.generation)
        unit, sid = self._account_unit(w, generation, False, "")
        result: asyncio.Future[AccountingResult] = running_loop().create_future()

        def replied(sent: asyncio.Future[list[Any]]) -> None:
            if result.done():
                return
            try:
                failed = _failed(replies := sent.result())
                if _lost_scripts(failed):  # Redis restarted empty: account() reloads them
                    self._follow(self.account(w), result)
                    return
                self._settle(failed)
                r = replies[0]
                if _wants_fields(r):  # not recorded after all: again, described
                    self._follow(self.account(dataclasses.replace(w, describe=True)), result)
                    return
                moved = _moved(w, r, sid)
                if moved is not None:
                    self._follow(self._account_from(w, *moved, MAX_GENERATION_TRIES - 1), result)
                elif int(r[8]):
                    self._follow(self._account_result(w, r, sid, generation), result)
                else:
                    result.set_result(_account_result(r, sid, generation, self.indexes_in_scripts))
            except _UNAVAILABLE as exc:
                self._report(False)
                error = StoreUnavailable(f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                result.set_exception(error)
            except Exception as exc:  # StoreUnavailable, or a reply of the wrong shape
                result.set_exception(exc)

        self._submit(unit, replied)
        return result

    def _follow(self, work: Awaitable[T], result: asyncio.Future[T]) -> None:
        """Run ``work`` as a task whose outcome becomes ``result``'s."""
        task = asyncio.ensure_future(work)
        self._following.add(task)

        def done(task: asyncio.Future[T]) -> None:
            self._following.discard(task)
            if result.done():
                return
            if task.cancelled():
                result.cancel()
            elif (exc := task.exception()) is not None:
                result.set_exception(exc)
            else:
                result.set_result(task.result())

        task.add_done_callback(done)

    def _soon(
        self,
        unit: list[Command],
        parse: Callable[[list[Any]], T],
        again: Callable[[], Awaitable[T]],
    ) -> asyncio.Future[T]:
        """One unit of this tick's batch whose replies are parsed in the reply's callback
        (no Task, issue 16): errors as ``_hot``'s; lost scripts (NOSCRIPT) run ``again``,
        the coroutine, which reloads them."""
        result: asyncio.Future[T] = running_loop().create_future()

        def replied(sent: asyncio.Future[list[Any]]) -> None:
            if result.done():
                return
            try:
                failed = _failed(replies := sent.result())
                if _lost_scripts(failed):
                    self._follow(again(), result)
                    return
                self._settle(failed)
                result.set_result(parse(replies))
            except _UNAVAILABLE as exc:
                self._report(False)
                error = StoreUnavailable(f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                result.set_exception(error)
            except Exception as exc:  # StoreUnavailable, or a reply of the wrong shape
                result.set_exception(exc)

        self._submit(unit, replied)  # timed by MeteredStore, as _hot's
        return result

    async def _earlier_generation(
        self, w: AccountingWrite, generation: int, sid: str, snapshot: PersonSnapshot
    ) -> None:
        """A late report went to generation - 1 (rare): send its new version to the
        archive, and undo what the write's index commands did to ``sid``'s entries."""
        earlier = keys.session_ref(w.pid, keys.session_generation(w.sid, generation - 1))
        ref = keys.session_ref(w.pid, sid)
        unit: list[Command] = [("XADD", keys.OUTBOX, "*", "k", "close", "ref", earlier)]
        if sid in snapshot.open:
            unit.append(("ZADD", keys.OPEN_INDEX, snapshot.open[sid][1], ref))
            unit.append(("SADD", keys.nas_sessions(w.client_id), ref))
        else:
            unit.append(("ZREM", keys.OPEN_INDEX, ref))
            unit.append(("SREM", keys.nas_sessions(w.client_id), ref))
        await self._hot(unit)

    async def _account_once(
        self, w: AccountingWrite, generation: int, create: bool, misplaced: str
    ) -> tuple[Any, str]:
        unit, sid = self._account_unit(w, generation, create, misplaced)
        out = await self._hot(unit)
        return out[0], sid

    def _account_unit(
        self, w: AccountingWrite, generation: int, create: bool, misplaced: str
    ) -> tuple[list[Command], str]:
        """The commands of one try of ``account`` (account.lua first), and the session
        generation's id they write."""
        sid = keys.session_generation(w.sid, generation)
        ref = keys.session_ref(w.pid, sid)
        session_key = keys.session(w.pid, sid)
        inside = self.indexes_in_scripts
        ks = [
            session_key,
            keys.open_sessions(w.pid),
            *(keys.day_usage(w.pid, k) for _, k in w.boundaries),
            keys.closing(w.pid),
            keys.block(w.pid),
            keys.session(w.pid, keys.session_generation(w.sid, 1)),
            keys.session(w.pid, keys.session_generation(w.sid, max(1, generation - 1))),
        ]
        if inside:
            ks.extend(
                (keys.DUE_INDEX, keys.OPEN_INDEX, keys.nas_sessions(w.client_id), keys.OUTBOX)
            )
        else:  # a Cluster: placeholders in the person's slot, unread (ARGV[18] = 0)
            ks.extend((session_key,) * 4)
        rule = w.due
        numbers = _account_numbers(len(w.boundaries)).pack(
            w.status,
            w.reported,
            w.event_time,
            generation,
            1 if create else 0,
            1 if inside else 0,
            w.stale.grace,
            w.stale.interim,
            w.stale.cap,
            *(
                (-1, 0, 0, 0, 0)
                if rule is None
                else (
                    rule.daily,
                    rule.next_midnight,
                    rule.stale_before,
                    rule.retry_after,
                    rule.max_devices,
                )
            ),
            *(epoch for epoch, _ in w.boundaries),
        )
        args: list[Any] = [
            w.reported,
            w.event_time,
            DAY_TTL,
            SESSION_TTL,
            w.input_octets,
            w.output_octets,
            w.cause,
            sid,
            ref,
            w.pid,
            numbers,
        ]
        fields = w.fields if w.describe or create else None
        if fields is not None:  # else account.lua asks for them if it has not got them
            for k, v in fields.items():
                args.extend((k, v))

        # the reply ends with the person as the enforcer sees them after this write
        unit: list[Command] = [self._script("account", ks, args)]
        if not inside:  # the global indexes live in other slots
            if w.status == 2:
                unit.append(("ZREM", keys.OPEN_INDEX, ref))
                unit.append(("SREM", keys.nas_sessions(w.client_id), ref))
                unit.append(("XADD", keys.OUTBOX, "*", "k", "close", "ref", ref))  # to the archive
            else:
                unit.append(("ZADD", keys.OPEN_INDEX, w.event_time, ref))
                unit.append(("SADD", keys.nas_sessions(w.client_id), ref))
        if fields is not None and fields.get("mac"):
            # the device's accounting is here: its Accept's hold is over
            unit.append(("HDEL", keys.device_holds(w.pid), fields["mac"]))
        if misplaced and misplaced != ref and w.status != 2:
            # the try before indexed a closed generation as open: take that back
            unit.append(("ZREM", keys.OPEN_INDEX, misplaced))
            unit.append(("SREM", keys.nas_sessions(w.client_id), misplaced))
        return unit, sid

    async def close_session(
        self, pid: str, sid: str, client_id: str, cause: str, *, shut: str = "gone", now: int = 0
    ) -> bool:
        """Close at the last report; ``shut`` (close_session.lua): 'nas' for
        Accounting-On/Off, 'gone' when the NAS said it has no such session."""
        ref = keys.session_ref(pid, sid)

        async def op() -> bool:
            pipe = self.redis.pipeline(transaction=False)
            self._evalsha(
                pipe,
                "close_session",
                (keys.session(pid, sid), keys.open_sessions(pid)),
                (sid, cause, SESSION_TTL, shut, now),
            )
            pipe.zrem(keys.OPEN_INDEX, ref)
            pipe.srem(keys.nas_sessions(client_id), ref)
            pipe.xadd(keys.OUTBOX, {"k": "close", "ref": ref})  # to the archive (dedup there)
            return bool((await pipe.execute())[0])

        return await self._guard(op)

    async def close_client_sessions(self, client_id: str, cause: str, *, now: int = 0) -> int:
        """Accounting-On/Off at ``now``: the NAS rebooted, so every session it had is over,
        and a report of a session begun after ``now`` is a new one (account.lua)."""

        async def members() -> list[str]:
            return [_text(m) for m in await self.redis.smembers(keys.nas_sessions(client_id))]

        closed = 0
        for ref in await self._guard(members):
            pid, sid = keys.parse_session_ref(ref)
            closed += await self.close_session(pid, sid, client_id, cause, shut="nas", now=now)
        return closed

    # -- outbox (controller.storage.archive): closed sessions and login results leave Redis ------

    async def outbox_add(self, entry: Mapping[str, str]) -> None:
        """Queue a login result for the audit archive (closes are queued with the close)."""
        await self._hot([_xadd(entry)])

    def outbox_add_soon(self, entry: Mapping[str, str]) -> asyncio.Future[None]:
        """``outbox_add`` continued from the reply's callback (no Task, issue 16)."""
        return self._soon([_xadd(entry)], _nothing, lambda: self.outbox_add(entry))

    async def outbox_read(self, consumer: str, count: int, claim_idle_ms: int) -> list[OutboxEntry]:
        """Entries to archive: first those a dead consumer left unacknowledged (idle longer
        than ``claim_idle_ms``, this consumer's own failures included), then new ones."""
        raw = await self.outbox_read_raw(consumer, count, claim_idle_ms)
        return [OutboxEntry(eid.decode(), _pairs(fields)) for eid, fields in raw]

    async def outbox_read_raw(
        self, consumer: str, count: int, claim_idle_ms: int, *, claim: bool = True
    ) -> list[tuple[bytes, list[bytes]]]:
        """``outbox_read`` as the stream gave it: ids and flat field lists (name, value,
        ...), bytes, undecoded (the archiver formats them straight into its rows, issue
        16). ``claim=False``: new entries only (the rest of a round that claimed first)."""
        group = keys.OUTBOX_GROUP

        # through the batched link: the replies are parsed by hiredis, not per field in
        # Python (the archiver runs in every worker beside the RADIUS hot path)
        async def read() -> list[Any]:
            entries: list[Any] = []
            if claim:
                xclaim = ("XAUTOCLAIM", keys.OUTBOX, group, consumer, claim_idle_ms, "0-0")
                claimed = (await self._hot([(*xclaim, "COUNT", count)]))[0]
                entries = [e for e in claimed[1] if e and e[1]]
            if len(entries) < count:
                more = ("COUNT", count - len(entries), "STREAMS", keys.OUTBOX, ">")
                streams = (await self._hot([("XREADGROUP", "GROUP", group, consumer, *more)]))[0]
                for _, new in streams or []:
                    entries.extend(new)
            return entries

        try:
            entries = await read()
        except StoreUnavailable as exc:
            if "NOGROUP" not in str(exc.__cause__):
                raise
            create = ("XGROUP", "CREATE", keys.OUTBOX, group, "0", "MKSTREAM")
            try:
                await self._hot([create])
            except StoreUnavailable as busy:  # BUSYGROUP: a peer created it first
                if "BUSYGROUP" not in str(busy.__cause__):
                    raise
            entries = await read()
        out: list[tuple[bytes, list[bytes]]] = []
        for eid, fields in entries:
            if type(eid) is bytes and type(fields) is list:  # the direct link's shape
                out.append((eid, fields))
            else:  # redis-py's (a pipeline link): a dict of fields, maybe str
                out.append((_raw(eid), _flat(fields)))
        return out

    async def outbox_sessions(self, refs: Sequence[str]) -> list[SessionVersion]:
        """Per session ref: its record (empty when expired) and the archived-version mark."""

        raw = await self.outbox_sessions_raw(refs)
        return [SessionVersion(_pairs(fields), _text(mark)) for fields, mark in raw]

    async def outbox_sessions_raw(self, refs: Sequence[str]) -> list[tuple[list[bytes], bytes]]:
        """``outbox_sessions`` undecoded: each record's flat field list and its mark, bytes
        (``b""``: none), for the archiver's raw rows (decoded in its writer thread)."""

        if not refs:
            return []
        unit: list[Command] = []
        for ref in refs:
            pid, sid = keys.parse_session_ref(ref)
            unit.append(("HGETALL", keys.session(pid, sid)))
            unit.append(("GET", keys.archived_mark(pid, sid)))
        r = await self._hot(unit)  # one write for the whole batch (the archiver's hot read)
        out: list[tuple[list[bytes], bytes]] = []
        for i in range(0, len(r), 2):
            fields, mark = r[i], r[i + 1]
            out.append(
                (
                    fields if type(fields) is list else _flat(fields),
                    b"" if mark is None else _raw(mark),
                )
            )
        return out

    async def phones(self, pids: Sequence[str]) -> dict[str, str]:
        """Verified numbers of persons (the audit duty); persons without one are left out."""

        if not pids:
            return {}
        replies = await self._hot([("HGET", keys.profile(pid), "phone") for pid in pids])
        return {p: _text(v) for p, v in zip(pids, replies, strict=True) if v}

    async def phones_raw(self, pids: Sequence[bytes]) -> dict[bytes, bytes]:
        """``phones`` keyed and valued by bytes, as the archiver's raw rows take them."""

        if not pids:
            return {}
        key = keys.profile_raw
        replies = await self._hot([(b"HGET", key(pid), b"phone") for pid in pids])
        return {
            p: v if type(v) is bytes else _raw(v) for p, v in zip(pids, replies, strict=True) if v
        }

    async def outbox_done(self, ids: Sequence[str | bytes], marks: dict[str, str]) -> None:
        """After the archive write is durable: remember archived versions, ack and drop
        (a trim of the stream below its oldest pending entry, not an XDEL per entry:
        outbox_done.lua, issue 16)."""

        unit: list[Command] = []
        for ref, seen in marks.items():
            pid, sid = keys.parse_session_ref(ref)
            unit.append(("SET", keys.archived_mark(pid, sid), seen, "EX", SESSION_TTL))
        if ids:  # XACK, then a trim below the oldest pending entry (outbox_done.lua)
            unit.append(self._script("outbox_done", (keys.OUTBOX,), (keys.OUTBOX_GROUP, *ids)))
        if unit:
            await self._hot(unit)

    async def outbox_backlog(self) -> int:
        async def op() -> int:
            return int(await self.redis.xlen(keys.OUTBOX))

        return await self._guard(op)

    # -- reading --------------------------------------------------------------------

    async def used_on(self, pid: str, day_key: str) -> int:
        async def op() -> int:
            return int(await self.redis.get(keys.day_usage(pid, day_key)) or 0)

        return await self._guard(op)

    async def open_sessions(self, pid: str) -> dict[str, dict[str, str]]:
        async def op() -> dict[str, dict[str, str]]:
            sids = [_text(s) for s in await self.redis.hkeys(keys.open_sessions(pid))]
            out = {}
            for sid in sids:
                raw = await self.redis.hgetall(keys.session(pid, sid))
                out[sid] = {_text(k): _text(v) for k, v in raw.items()}
            return out

        return await self._guard(op)

    async def session(self, pid: str, sid: str) -> dict[str, str]:
        async def op() -> dict[str, str]:
            raw = await self.redis.hgetall(keys.session(pid, sid))
            return {_text(k): _text(v) for k, v in raw.items()}

        return await self._guard(op)

    # -- captive portal (controller.services.portal): SMS codes, rate limits, client memory ------
    # Through the batched link, as the RADIUS path (issue 16): one unit of commands per
    # call, the same error mapping (StoreUnavailable, NOSCRIPT reloaded once) as ``_hot``.

    async def otp_put(self, phone_id: str, digest: str, ttl: int, now: int) -> None:
        """Keep a new SMS code's digest for ``ttl`` s, replacing any pending code."""
        await self._hot([self._script("portal_otp_put", (keys.otp(phone_id),), (digest, now, ttl))])

    async def otp_attempt(self, phone_id: str, max_attempts: int) -> OtpAttempt:
        """Count one attempt at the pending code of ``phone_id`` (otp_attempt.lua)."""
        unit = [self._script("otp_attempt", (keys.otp(phone_id),), (max_attempts,))]
        r = (await self._hot(unit))[0]
        return OtpAttempt(_OTP_STATUS[_text(r[0])], _text(r[1]), int(r[2]))

    async def otp_consume(self, phone_id: str) -> bool:
        """Delete a verified code; False if another request consumed it first."""
        return bool((await self._hot([("DEL", keys.otp(phone_id))]))[0])

    @staticmethod
    def _rate_args(checks: Sequence[tuple[str, str, Sequence[tuple[int, int]]]]) -> list[Any]:
        args: list[Any] = []
        for _, _, rules in checks:
            args.append(len(rules))
            for limit, window in rules:
                args.extend((limit, window))
        return args

    def _rate_unit(
        self,
        checks: Sequence[tuple[str, str, Sequence[tuple[int, int]]]],
        now_ms: int,
        member: str,
        record: bool,
    ) -> list[Command]:
        """One portal_rate.lua call per dimension (each log in its own slot)."""
        flag = 1 if record else 0
        return [
            self._script(
                "portal_rate",
                (keys.rate(dimension, ident),),
                (now_ms, member, flag, 1, *self._rate_args([(dimension, ident, rules)])),
            )
            for dimension, ident, rules in checks
        ]

    async def rate_hit(
        self,
        checks: Sequence[tuple[str, str, Sequence[tuple[int, int]]]],
        now_ms: int,
        member: str,
        *,
        record: bool,
    ) -> list[int]:
        """Per (dimension, value, [(limit, window ms)]): 0 if one more event is allowed
        (recorded in that dimension when ``record``), else ms to wait. One unit, one
        script call per key."""
        if not checks:
            return []
        replies = await self._hot(self._rate_unit(checks, now_ms, member, record))
        return [int(r[0]) for r in replies]

    async def rate_admit(
        self,
        checks: Sequence[tuple[str, str, Sequence[tuple[int, int]]]],
        now_ms: int,
        member: str,
    ) -> list[int]:
        """The event of one request in every dimension, or in none: per check 0 if every
        dimension allowed it (then it is recorded in all), else the ms to wait. One script
        call over every key on one Redis (Sentinel too); on a Cluster, where the logs live
        in other slots, every key is checked first, then recorded in each (two units)."""
        if not checks:
            return []
        if self.indexes_in_scripts:
            ks = [keys.rate(dimension, ident) for dimension, ident, _ in checks]
            args = (now_ms, member, 1, len(ks), *self._rate_args(checks))
            r = (await self._hot([self._script("portal_rate", ks, args)]))[0]
            return [int(w) for w in r]
        waits = await self.rate_hit(checks, now_ms, member, record=False)
        if any(waits):
            return waits
        return await self.rate_hit(checks, now_ms, member, record=True)

    async def purge_profiles(self, cutoff: int, batch: int = 500) -> list[str]:
        """Delete the phone profiles last seen at or before ``cutoff`` (the retention's
        end); returns the person ids deleted. A person seen since keeps theirs (the
        script checks 'seen'); the index entries up to the cutoff go once all are done."""

        async def op() -> list[str]:
            gone: list[str] = []
            start = 0
            while True:
                found = await self.redis.zrangebyscore(
                    keys.PROFILE_INDEX, "-inf", cutoff, start=start, num=batch
                )
                pids = [_text(p) for p in found if isinstance(p, bytes | str)]
                if not pids:
                    break
                pipe = self.redis.pipeline(transaction=False)
                for pid in pids:
                    self._evalsha(pipe, "purge_profile", (keys.profile(pid),), (cutoff,))
                done = await pipe.execute()
                gone.extend(p for p, d in zip(pids, done, strict=True) if int(d))
                start += len(pids)
            await self.redis.zremrangebyscore(keys.PROFILE_INDEX, "-inf", cutoff)
            return gone

        return await self._guard(op)

    async def person_phone(self, pid: str) -> str | None:
        """The verified number of a person (for the audit duty and remembered devices)."""
        value = (await self._hot([("HGET", keys.profile(pid), "phone")]))[0]
        return _text(value) if value else None

    @staticmethod
    def _client_commands(address: str, values: Mapping[str, str], ttl: int) -> list[Command]:
        key = keys.portal_client(address)
        hset: list[Any] = ["HSET", key]
        for k, v in values.items():
            hset.extend((k, v))
        return [hset, ("EXPIRE", key, ttl)]

    async def remember_client(self, address: str, values: dict[str, str], ttl: int) -> None:
        """What the portal learnt about a client address (NAS redirect data, person)."""
        await self.remember_clients([address], values, ttl)

    async def remember_clients(
        self, addresses: Sequence[str], values: Mapping[str, str], ttl: int
    ) -> None:
        """``remember_client`` of the same values at several addresses, one unit."""
        unit = [c for address in addresses for c in self._client_commands(address, values, ttl)]
        if unit:
            await self._hot(unit)

    def remember_clients_soon(
        self, addresses: Sequence[str], values: Mapping[str, str], ttl: int
    ) -> asyncio.Future[None]:
        """``remember_clients`` queued in this tick's batch now, without a Task: a login
        sends it in the same write as the credential it awaits next."""
        unit = [c for address in addresses for c in self._client_commands(address, values, ttl)]
        again = functools.partial(self.remember_clients, addresses, values, ttl)
        return self._soon(unit, _nothing, again)

    async def client_at(self, address: str) -> dict[str, str]:
        return _pairs((await self._hot([("HGETALL", keys.portal_client(address))]))[0])

    async def device_token_put(self, pid: str, tid: str, expires: int, now: int, keep: int) -> None:
        """Honour remembered-device token ``tid`` until ``expires``; drop expired tokens and
        all but the ``keep`` newest (portal_device_token.lua: one key, Cluster-safe)."""
        args = (tid, expires, now, keep)
        await self._hot([self._script("portal_device_token", (keys.device_tokens(pid),), args)])

    def device_token_put_soon(
        self, pid: str, tid: str, expires: int, now: int, keep: int
    ) -> asyncio.Future[None]:
        """``device_token_put`` queued in this tick's batch now (a login's last write)."""
        args = (tid, expires, now, keep)
        unit = [self._script("portal_device_token", (keys.device_tokens(pid),), args)]
        again = functools.partial(self.device_token_put, pid, tid, expires, now, keep)
        return self._soon(unit, _nothing, again)

    async def device_token_valid(self, pid: str, tid: str, now: int) -> bool:
        expires = (await self._hot([("ZSCORE", keys.device_tokens(pid), tid)]))[0]
        return expires is not None and float(expires) > now

    async def device_tokens_revoke(self, pid: str, tid: str | None = None) -> int:
        """Revoke one token of a person (logout), or all of them (``tid`` None: admin)."""
        key = keys.device_tokens(pid)

        async def op() -> int:
            if tid is not None:
                return int(await self.redis.zrem(key, tid))
            pipe = self.redis.pipeline(transaction=True)
            pipe.zcard(key)
            pipe.delete(key)
            return int((await pipe.execute())[0])

        return await self._guard(op)

    async def forget_mac(self, mac: str, pid: str) -> bool:
        """End MAC re-authentication of a device if it is still remembered for ``pid``."""

        async def op() -> bool:
            return bool(
                await self._evalsha(self.redis, "forget_mac", (keys.mac_owner(mac),), (pid,))
            )

        return await self._guard(op)

    # -- personal data (controller.services.persons): a person's own records, erasure -------

    async def _scan(self, pattern: str) -> list[str]:
        return [_text(k) async for k in self.redis.scan_iter(match=pattern, count=10000)]

    async def _values(self, command: str, found: Sequence[str], *args: str) -> list[str]:
        """One command per key, 500 a unit of the batched link (redis-py's pipeline costs
        ten times as much per reply): the replies as text ("" for none)."""
        out: list[str] = []
        for start in range(0, len(found), 500):
            unit: list[Command] = [(command, key, *args) for key in found[start : start + 500]]
            out.extend(_text(v) if v else "" for v in await self._hot(unit))
        return out

    async def _macs_naming(self, pid: str) -> list[str]:
        """The MAC-memory keys whose value is the person (one SCAN of the MAC memory)."""
        found = await self._scan(f"{keys.MAC_PREFIX}*")
        values = await self._values("GET", found)
        return [k for k, v in zip(found, values, strict=True) if v == pid]

    async def person_records(self, pid: str) -> PersonRecords:
        """What Redis holds about a person beyond today's usage and sessions: the phone
        profile, remembered-device tokens and MACs (with their expiry)."""

        async def op() -> PersonRecords:
            profile = _pairs(await self.redis.hgetall(keys.profile(pid)))
            tokens: list[Any] = await self.redis.zrange(
                keys.device_tokens(pid), 0, -1, withscores=True
            )
            macs = []
            for key in await self._macs_naming(pid):
                ttl = int(await self.redis.ttl(key))
                macs.append((key.removeprefix(keys.mac_owner("")), ttl))
            return PersonRecords(
                phone=profile.get("phone", ""),
                seen=int(profile.get("seen") or 0),
                device_tokens=tuple((_text(t), int(e)) for t, e in tokens),
                macs=tuple(sorted(macs)),
            )

        return await self._guard(op)

    async def erase_person(self, pid: str) -> dict[str, int]:
        """Delete a person's personal records (profile and its index entry, credentials,
        remembered devices, MAC memory, pending SMS codes, rate-limit logs, the portal's
        memory of them, EAP credentials and their set); keep the usage families
        (``keys.USAGE_FAMILIES``). Returns the count per family deleted."""

        async def op() -> dict[str, int]:
            found: dict[str, list[str]] = {}
            for key in await self._scan(keys.SCAN_ALL):  # once: a SCAN reads every key anyway
                family = keys.erase_family(key, pid)
                if family is not None:
                    found.setdefault(family, []).append(key)
            macs, clients = found.pop("mac", []), found.pop("pc", [])
            credentials = found.pop("c", [])
            used = await self._values("HGET", credentials, "used_at")
            # an unused credential is a way back in: deleted; a used one admits nothing
            # new (single use) and ties a running session's accounting to the person when
            # the NAS echoes no Class: kept until its TTL, like the session record
            found["c"] = [k for k, u in zip(credentials, used, strict=True) if not u]
            # EAP credentials: the person's set names them (storage/eap_credentials.py)
            usernames = [_text(u) for u in await self.redis.smembers(keys.eap_credentials(pid))]
            eap_keys = [keys.eap_credential(u) for u in usernames]
            owners = await self._values("HGET", eap_keys, "pid")
            found["eap_credentials"] = [
                k for k, v in zip(eap_keys, owners, strict=True) if v == pid
            ]
            removed = {family: len(names) for family, names in found.items()}
            owners = await self._values("GET", macs)
            for key, owner in zip(macs, owners, strict=True):
                if owner == pid:  # the script re-checks: a login on the device meanwhile wins
                    forgot = await self._evalsha(self.redis, "forget_mac", (key,), (pid,))
                    removed["mac"] = removed.get("mac", 0) + int(forgot)
            persons = await self._values("HGET", clients, "pid")
            pipe = self.redis.pipeline(transaction=False)
            for key, who in zip(clients, persons, strict=True):
                if who == pid:  # the address's NAS data stays; whom it logged in goes
                    pipe.hset(key, "pid", "")
                    removed["pc"] = removed.get("pc", 0) + 1
            for names in found.values():
                for key in names:
                    pipe.delete(key)  # one key a command: they live on several Cluster slots
            pipe.zrem(keys.PROFILE_INDEX, pid)
            await pipe.execute()
            return {family: n for family, n in sorted(removed.items()) if n}

        return await self._guard(op)

    # -- quota enforcer (controller.services.enforcer): due index, leases, closing, stale, blocks --

    @staticmethod
    def _state_keys(pid: str, usage_key: str) -> tuple[str, str, str, str]:
        return (keys.open_sessions(pid), usage_key, keys.closing(pid), keys.block(pid))

    async def person_snapshot(self, pid: str, day_key: str) -> PersonSnapshot:
        ks = self._state_keys(pid, keys.day_usage(pid, day_key))

        async def op() -> PersonSnapshot:
            return _snapshot(await self._evalsha(self.redis, "enforce_state", ks, ()))

        return await self._guard(op)

    async def index_due(self, due: Mapping[str, int]) -> None:
        """Ask the enforcer to look at persons by these times. Entries only move earlier
        here (ZADD LT); the enforcer moves them later after a look (``reindex_due``)."""
        if not due:
            return

        async def op() -> None:
            await self.redis.zadd(keys.DUE_INDEX, dict(due), lt=True)

        await self._guard(op)

    async def reindex_due(self, pid: str, seen: float, new: int | None) -> bool:
        """Set the person's entry to ``new`` (None: remove) unless it moved from ``seen``."""
        args = (pid, repr(seen), "" if new is None else new)

        async def op() -> bool:
            return bool(await self._evalsha(self.redis, "enforce_reindex", (keys.DUE_INDEX,), args))

        return await self._guard(op)

    async def due_persons(self, until: float, limit: int) -> list[DuePerson]:
        """The first ``limit`` persons due by ``until``, earliest first."""

        async def op() -> list[DuePerson]:
            r: Any = await self.redis.zrangebyscore(
                keys.DUE_INDEX, "-inf", until, start=0, num=limit, withscores=True
            )
            return [DuePerson(_text(m), float(s)) for m, s in r]

        return await self._guard(op)

    async def enforcer_timers(self) -> EnforcerTimers:
        """The earliest due time and the oldest last report among open sessions."""

        async def op() -> EnforcerTimers:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrange(keys.DUE_INDEX, 0, 0, withscores=True)
            pipe.zrange(keys.OPEN_INDEX, 0, 0, withscores=True)
            due, oldest = await pipe.execute()
            return EnforcerTimers(
                float(due[0][1]) if due else None,
                float(oldest[0][1]) if oldest else None,
            )

        return await self._guard(op)

    async def stale_sessions(self, before: int, limit: int) -> list[str]:
        """Refs (``pid|sid``) of open sessions without accounting since ``before``."""

        async def op() -> list[str]:
            r: Any = await self.redis.zrangebyscore(
                keys.OPEN_INDEX, "-inf", f"({before}", start=0, num=limit
            )
            return [_text(m) for m in r]

        return await self._guard(op)

    async def close_stale(
        self,
        pid: str,
        sid: str,
        client_id: str,
        before: int,
        cause: str,
        now: int | None = None,
        nas_slack: int = 0,
    ) -> StaleCheck:
        """Close a session still without accounting since ``before`` (its cadence slack
        included) at its last report (``StaleCheck``: closed, fresh after all, or closed
        already). The global indexes follow (a left-over entry is
        dropped, a lagging one repaired: a slow NAS's session is looked at again only
        when its own grace has passed). ``nas_slack``: the slack of the cadence its NAS
        was seen to report at, for a session that has shown none of its own yet."""
        ref = keys.session_ref(pid, sid)
        ks = (keys.session(pid, sid), keys.open_sessions(pid), keys.closing(pid))

        async def op() -> StaleCheck:
            r = await self._evalsha(
                self.redis,
                "enforce_stale",
                ks,
                (sid, before, cause, SESSION_TTL, before if now is None else now, nas_slack),
            )
            check = StaleCheck(_STALE_OUTCOME[int(r[0])], int(r[1]))
            last = check.last
            pipe = self.redis.pipeline(transaction=False)
            if check.outcome == "fresh":
                pipe.zadd(keys.OPEN_INDEX, {ref: last}, gt=True)
            else:
                pipe.zrem(keys.OPEN_INDEX, ref)
                pipe.srem(keys.nas_sessions(client_id), ref)
                pipe.xadd(keys.OUTBOX, {"k": "close", "ref": ref})  # to the archive (dedup there)
            await pipe.execute()
            return check

        return await self._guard(op)

    async def note_cadence(self, gaps: Mapping[str, int]) -> None:
        """The largest gaps between reports seen per NAS (client id -> s), kept as a max."""
        if not gaps:
            return

        async def op() -> None:
            await self.redis.zadd(keys.CADENCE, dict(gaps), gt=True)

        await self._guard(op)

    async def cadences(self) -> dict[str, int]:
        async def op() -> dict[str, int]:
            r: Any = await self.redis.zrange(keys.CADENCE, 0, -1, withscores=True)
            return {_text(m): int(s) for m, s in r}

        return await self._guard(op)

    async def mark_closing(self, pid: str, sid: str, now: int) -> bool:
        ks = (keys.session(pid, sid), keys.open_sessions(pid), keys.closing(pid))

        async def op() -> bool:
            r = await self._evalsha(self.redis, "enforce_mark", ks, (sid, now, SESSION_TTL))
            return bool(r)

        return await self._guard(op)

    async def acquire_lease(self, pid: str, token: str, ttl_ms: int) -> bool:
        async def op() -> bool:
            return bool(await self.redis.set(keys.lease(pid), token, nx=True, px=ttl_ms))

        return await self._guard(op)

    async def release_lease(self, pid: str, token: str) -> None:
        async def op() -> None:
            await self._evalsha(self.redis, "enforce_release", (keys.lease(pid),), (token,))

        await self._guard(op)

    async def set_block(self, pid: str, value: str, ttl: int) -> None:
        """Block a person (``until|reason``, read at auth by auth_state.lua) for ``ttl`` s."""

        async def op() -> None:
            await self.redis.set(keys.block(pid), value, ex=max(1, ttl))

        await self._guard(op)

    async def clear_block(self, pid: str) -> bool:
        async def op() -> bool:
            return bool(await self.redis.delete(keys.block(pid)))

        return await self._guard(op)
