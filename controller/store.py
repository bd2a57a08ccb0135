"""The only module that talks to Redis.

Multi-key updates are the Lua scripts in ``controller/lua`` (one hash slot each, time in
ARGV); global indexes ride in the same pipeline, so a request costs one round trip.
Redis errors are mapped to ``StoreUnavailable`` here, at the one boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from controller import keys

T = TypeVar("T")

DAY_TTL = 3 * 86400  # day counters outlive their day by two (late Stops, midnight runs)
SESSION_TTL = 3 * 86400
LOGIN_REUSE_GRACE = 60  # seconds a consumed credential still admits the same device

SCRIPT_NAMES = ("auth_state", "commit_login", "account", "close_session")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StoreUnavailable(Exception):
    """Redis did not acknowledge: the caller must not answer the NAS (RFC 2866 §2)."""


@dataclass(frozen=True, slots=True)
class PersonState:
    password: str  # "" when there is no such credential
    bound_mac: str
    used_at: int | None
    used_mac: str
    used_today: int
    other_devices: int
    block: str  # "" when not blocked, else "until|reason"


@dataclass(frozen=True, slots=True)
class AccountingWrite:
    pid: str
    sid: str
    client_id: str
    status: int
    reported: int
    event_time: int
    input_octets: int
    output_octets: int
    cause: str
    boundaries: Sequence[tuple[int, str]]  # (day start epoch, day key), oldest first
    fields: dict[str, str] = field(default_factory=dict)  # written when first seen


@dataclass(frozen=True, slots=True)
class AccountingResult:
    applied: int
    used_today: int
    open_sessions: int
    closed_now: bool


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str


def load_lua() -> dict[str, LuaScript]:
    out = {}
    for name in SCRIPT_NAMES:
        src = resources.files("controller").joinpath("lua", f"{name}.lua").read_text()
        out[name] = LuaScript(name, src, hashlib.sha1(src.encode()).hexdigest())
    return out


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
    def __init__(self, client: aioredis.Redis) -> None:
        self.redis = client
        self.scripts = load_lua()
        self.scripts_loaded = False

    async def close(self) -> None:
        await self.redis.aclose()

    async def _guard(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``; reload scripts once if Redis lost them (restart); map outages."""
        try:
            try:
                return await op()
            except redis_errors.NoScriptError:
                await self.load_scripts()
                return await op()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def load_scripts(self) -> None:
        try:
            for script in self.scripts.values():
                sha = await self.redis.script_load(script.source)
                assert sha == script.sha, f"{script.name}: Redis SHA {sha} != {script.sha}"
        except _UNAVAILABLE as exc:
            self.scripts_loaded = False
            raise StoreUnavailable(str(exc)) from exc
        self.scripts_loaded = True

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except _UNAVAILABLE:
            return False

    def _evalsha(self, target: Any, name: str, keys_: Sequence[str], args: Sequence[Any]) -> Any:
        return target.evalsha(self.scripts[name].sha, len(keys_), *keys_, *args)

    # -- logins ---------------------------------------------------------------------

    async def issue_credential(
        self, pid: str, username: str, password: str, *, mac: str, ttl: int, phone: str, now: int
    ) -> None:
        async def op() -> None:
            pipe = self.redis.pipeline(transaction=False)
            key = keys.credential(pid, username)
            pipe.hset(key, mapping={"pw": password, "mac": mac, "issued": now})
            pipe.expire(key, ttl)
            pipe.hset(keys.profile(pid), mapping={"phone": phone, "seen": now})
            await pipe.execute()

        await self._guard(op)

    async def mac_owner(self, mac: str) -> str | None:
        async def op() -> str | None:
            value = await self.redis.get(keys.mac_owner(mac))
            return _text(value) if value else None

        return await self._guard(op)

    async def auth_state(
        self, pid: str, username: str, mac: str, today_key: str, stale_before: int
    ) -> PersonState:
        ks = (
            keys.credential(pid, username),
            keys.day_usage(pid, today_key),
            keys.open_sessions(pid),
            keys.block(pid),
        )

        async def op() -> PersonState:
            r = await self._evalsha(self.redis, "auth_state", ks, (mac, stale_before))
            return PersonState(
                password=r[0].decode(),
                bound_mac=r[1].decode(),
                used_at=int(r[2]) if r[2] else None,
                used_mac=r[3].decode(),
                used_today=int(r[4]),
                other_devices=int(r[5]),
                block=r[6].decode(),
            )

        return await self._guard(op)

    async def commit_login(
        self, pid: str, username: str, mac: str, now: int, remember_seconds: int
    ) -> str:
        """Consume the credential; remember the device for MAC re-authentication."""

        async def op() -> str:
            pipe = self.redis.pipeline(transaction=False)
            self._evalsha(
                pipe,
                "commit_login",
                (keys.credential(pid, username),),
                (now, mac, LOGIN_REUSE_GRACE),
            )
            if mac and remember_seconds > 0:
                pipe.set(keys.mac_owner(mac), pid, ex=remember_seconds)
            result = await pipe.execute()
            return str(result[0].decode())

        return await self._guard(op)

    # -- accounting -----------------------------------------------------------------

    async def account(self, w: AccountingWrite) -> AccountingResult:
        day_keys = [keys.day_usage(w.pid, k) for _, k in w.boundaries]
        ks = [keys.session(w.pid, w.sid), keys.open_sessions(w.pid), *day_keys]
        args: list[Any] = [
            w.status,
            w.reported,
            w.event_time,
            DAY_TTL,
            SESSION_TTL,
            w.input_octets,
            w.output_octets,
            w.cause,
            w.sid,
            len(w.boundaries),
        ]
        args.extend(epoch for epoch, _ in w.boundaries)
        for k, v in w.fields.items():
            args.extend((k, v))
        ref = keys.session_ref(w.pid, w.sid)

        async def op() -> AccountingResult:
            pipe = self.redis.pipeline(transaction=False)
            self._evalsha(pipe, "account", ks, args)
            if w.status == 2:
                pipe.zrem(keys.OPEN_INDEX, ref)
                pipe.srem(keys.nas_sessions(w.client_id), ref)
            else:
                pipe.zadd(keys.OPEN_INDEX, {ref: w.event_time})
                pipe.sadd(keys.nas_sessions(w.client_id), ref)
            r = (await pipe.execute())[0]
            return AccountingResult(int(r[0]), int(r[1]), int(r[2]), bool(r[3]))

        return await self._guard(op)

    async def close_session(self, pid: str, sid: str, client_id: str, cause: str) -> bool:
        ref = keys.session_ref(pid, sid)

        async def op() -> bool:
            pipe = self.redis.pipeline(transaction=False)
            self._evalsha(
                pipe,
                "close_session",
                (keys.session(pid, sid), keys.open_sessions(pid)),
                (sid, cause, SESSION_TTL),
            )
            pipe.zrem(keys.OPEN_INDEX, ref)
            pipe.srem(keys.nas_sessions(client_id), ref)
            return bool((await pipe.execute())[0])

        return await self._guard(op)

    async def close_client_sessions(self, client_id: str, cause: str) -> int:
        """Accounting-On/Off: the NAS rebooted, so every session it had is over."""

        async def members() -> list[str]:
            return [_text(m) for m in await self.redis.smembers(keys.nas_sessions(client_id))]

        closed = 0
        for ref in await self._guard(members):
            pid, sid = keys.parse_session_ref(ref)
            closed += await self.close_session(pid, sid, client_id, cause)
        return closed

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
