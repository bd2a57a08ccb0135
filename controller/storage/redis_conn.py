"""Turn ``[redis]`` settings into a client: one server, a Cluster, a Sentinel set, or embedded.

``redis.url`` names the topology (``controller.config.redis_url``). What this module adds on
top of redis-py, and why:

- Sentinel: redis-py asks the sentinels for the primary only when it opens a
  connection, so pooled connections keep writing to a demoted primary until it turns
  read-only (seconds after a failover, and those writes are then lost). A small task
  polls the sentinels and drops every connection the moment they name a new primary,
  and the pool closes a connection to a former primary when it is returned.
- ``wait_replicas=N``: each pipeline ends with ``WAIT N timeout``; fewer acks raise
  ``NotReplicated`` (a ``ConnectionError``), which the store maps to "not recorded", so
  the NAS is answered only for writes a failover cannot lose.
- Cluster: ``RedisCluster`` from the seed list; ``SCRIPT LOAD`` goes to every primary.

``connect_store`` is what every command uses: the metered store over that client, its
scripts loaded, waiting up to ``redis.startup_wait`` for a Redis that is coming up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, TypeAlias

import redis.asyncio as aioredis
import structlog
from redis import exceptions as redis_errors
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from controller.config import Config, RedisSettings
from controller.config.redis_url import RedisTarget, parse_redis_url
from controller.storage.metered import MeteredStore
from controller.storage.redis_embedded import EmbeddedRedis
from controller.storage.store import StoreUnavailable

log = structlog.get_logger("citywifi.redis")

SOCKET_TIMEOUT = 2.0  # default of redis.timeout: how long one Redis exchange may take
MAX_CONNECTIONS = 256  # per process (per node on a cluster)
SENTINEL_POLL = 0.5  # seconds between asking the sentinels who the primary is

RedisClient: TypeAlias = aioredis.Redis | RedisCluster


class NotReplicated(redis_errors.ConnectionError):
    """The primary took the write but fewer than ``wait_replicas`` replicas confirmed it."""


class DurablePipeline(Pipeline):
    """A pipeline that ends with ``WAIT``: success means the replicas have every write."""

    wait_replicas = 0
    wait_timeout_ms = 0

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack or self.is_transaction or self.explicit_transaction:
            return await super().execute(raise_on_error)
        self.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        results = await super().execute(raise_on_error)
        acked = int(results.pop())
        if acked < self.wait_replicas:
            # a replica that stopped acknowledging may mean a failover: re-ask for the primary
            await self.connection_pool.disconnect(inuse_connections=False)
            raise NotReplicated(f"{acked} of {self.wait_replicas} replica(s) acknowledged")
        return results


class PrimaryOnlyPool(SentinelConnectionPool):
    """Drops a returned connection that points at a node the sentinels no longer name.

    redis-py re-asks the sentinels only when it opens a connection and keeps reusing the
    ones in use at a failover; this closes them as they come back instead.
    """

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        current = self.master_address
        if current is not None and (connection.host, connection.port) != current:
            await connection.disconnect()


class ManagedRedis(aioredis.Redis):
    """``redis.asyncio.Redis`` plus the write guarantee and the sentinel follower above."""

    wait_replicas = 0
    wait_timeout_ms = 0
    sentinels: Sentinel | None = None
    _follower: asyncio.Task[None] | None = None

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if not self.wait_replicas:
            return super().pipeline(transaction, shard_hint)
        pipe = DurablePipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipe.wait_replicas = self.wait_replicas
        pipe.wait_timeout_ms = self.wait_timeout_ms
        return pipe

    def follow_primary(self, service: str) -> None:
        """Start polling the sentinels (needs a running loop; one task per client)."""
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow(service))

    async def _follow(self, service: str) -> None:
        pool = self.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and self.sentinels is not None
        while True:
            await asyncio.sleep(SENTINEL_POLL)
            try:
                address = await self.sentinels.discover_master(service)
            except (redis_errors.RedisError, OSError):
                continue  # the sentinels are unreachable: keep what we have
            if pool.master_address is not None and address != pool.master_address:
                log.warning(
                    "redis.primary_switched",
                    service=service,
                    old=f"{pool.master_address[0]}:{pool.master_address[1]}",
                    new=f"{address[0]}:{address[1]}",
                )
                pool.master_address = address
                await pool.disconnect(inuse_connections=True)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()


def _common(timeout: float) -> dict[str, Any]:
    """Connect and read timeouts: a frozen or unreachable Redis fails a request after
    ``timeout`` (the NAS retransmits) instead of holding it and its in-flight slot."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
        # one more try on a fresh connection when a pooled one went stale (Redis
        # restarted): the command never reached a live server. Timeouts are not retried.
        "retry": Retry(NoBackoff(), 1, (redis_errors.ConnectionError,)),
    }


def _cluster(target: RedisTarget, timeout: float) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
        username=target.username,
        password=target.password,
        ssl=target.tls,
        max_connections=MAX_CONNECTIONS,
        # RedisCluster keeps its own retry policy (slot refresh, failover): not ours
        **{k: v for k, v in _common(timeout).items() if k != "retry"},
    )


def _sentinel(target: RedisTarget, timeout: float) -> ManagedRedis:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "ssl": target.tls,
    }
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
    if target.sentinel_username is not None:
        sentinel_kwargs["username"] = target.sentinel_username
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call,unused-ignore]
    client = sentinel.master_for(
        target.service,
        redis_class=ManagedRedis,
        connection_pool_class=PrimaryOnlyPool,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        max_connections=MAX_CONNECTIONS,
        **_common(timeout),
    )
    assert isinstance(client, ManagedRedis)
    client.sentinels = sentinel
    return client


def client_from_url(url: str, *, timeout: float = SOCKET_TIMEOUT) -> RedisClient:
    """A client for ``redis.url`` (any supported topology); connects lazily.

    ``timeout`` (``redis.timeout``) bounds every connect and every reply wait."""
    target = parse_redis_url(url)
    if target.kind == "cluster":
        return _cluster(target, timeout)
    if target.kind == "sentinel":
        client = _sentinel(target, timeout)
    else:
        plain = ManagedRedis.from_url(
            target.url, max_connections=MAX_CONNECTIONS, **_common(timeout)
        )
        assert isinstance(plain, ManagedRedis)
        client = plain
    client.wait_replicas = target.wait_replicas
    client.wait_timeout_ms = target.wait_timeout_ms
    if target.kind == "sentinel":
        with contextlib.suppress(RuntimeError):  # no running loop: no follower
            client.follow_primary(target.service)
    return client


def embedded_for(settings: RedisSettings) -> EmbeddedRedis | None:
    if settings.url:
        return None
    return EmbeddedRedis(settings.data_dir, settings.appendfsync, settings.maxmemory)


async def connect_store(config: Config, embedded: EmbeddedRedis | None) -> MeteredStore:
    """Connect and load the Lua scripts, waiting for an external Redis to come up."""
    url = config.redis.url or (await asyncio.to_thread(embedded.start) if embedded else "")
    # Redis latency and errors (/metrics); redis.timeout bounds each exchange
    store = MeteredStore(client_from_url(url, timeout=config.redis.timeout))
    deadline = time.monotonic() + config.redis.startup_wait
    while True:
        try:
            await store.load_scripts()
            return store
        except StoreUnavailable as exc:
            if time.monotonic() > deadline:
                await store.close()
                raise
            log.warning("redis.waiting", error=str(exc))
            await asyncio.sleep(1.0)
