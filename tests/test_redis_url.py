"""``redis.url``: every topology parses to what it names; bad URLs say why, never the password."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from controller.config import check_config
from controller.config.redis_url import RedisUrlError, parse_redis_url, redact
from controller.storage.redis_conn import (
    DurablePipeline,
    ManagedRedis,
    PrimaryOnlyPool,
    client_from_url,
)
from tests.conftest import write_config
from tests.support.redis_proc import RedisProcess


def test_single_server_urls_go_to_redis_py_without_our_options() -> None:
    t = parse_redis_url("redis://:pw@h:6380/2?wait_replicas=1&wait_timeout_ms=200")
    assert (t.kind, t.url, t.wait_replicas, t.wait_timeout_ms) == (
        "server",
        "redis://:pw@h:6380/2",
        1,
        200,
    )
    assert parse_redis_url("rediss://h/0").url == "rediss://h/0"
    assert parse_redis_url("unix:///run/redis.sock?db=3").url == "unix:///run/redis.sock?db=3"


def test_cluster_seed_list() -> None:
    t = parse_redis_url("rediss+cluster://app:s3cret@10.0.0.1:7000,[::1]:7001,redis-2")
    assert t.kind == "cluster" and t.tls
    assert t.hosts == (("10.0.0.1", 7000), ("::1", 7001), ("redis-2", 6379))
    assert (t.username, t.password) == ("app", "s3cret")


def test_sentinel_service_db_and_options() -> None:
    t = parse_redis_url(
        "redis+sentinel://:pw@s1:26379,s2/citywifi/3?sentinel_password=sp&wait_replicas=1"
    )
    assert t.kind == "sentinel" and t.service == "citywifi" and t.db == 3
    assert t.hosts == (("s1", 26379), ("s2", 26379))
    assert (t.password, t.sentinel_password, t.wait_replicas) == ("pw", "sp", 1)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("memcached://h", "unsupported scheme"),
        ("redis+cluster://h:1/2", "only database 0"),
        ("redis+cluster://h:1?wait_replicas=1", "not supported with a cluster"),
        ("redis+sentinel://h:1", "/service"),
        ("redis+sentinel://h:1/m/x", "not a number"),
        ("redis+sentinel://h:1/m?bogus=1", "unknown option"),
        ("redis+cluster://h:70000", "out of range"),
        ("redis+cluster://:pw@", "no hosts"),
        ("redis://h?wait_replicas=-1", "at least 0"),
    ],
)
def test_bad_urls_say_why(url: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=says) as err:
        parse_redis_url(url)
    assert "pw" not in str(err.value)


def test_redact_hides_passwords() -> None:
    assert redact("redis://u:hunter2@h:1/0") == "redis://u:***@h:1/0"
    assert "sp" not in redact("redis+sentinel://h/m?sentinel_password=sp").split("=")[-1]


def test_check_config_reports_a_bad_topology(tmp_path: Path) -> None:
    problems = check_config(write_config(tmp_path, "redis+sentinel://s1:26379"))
    assert any("redis.url" in str(p) and "/service" in str(p) for p in problems)
    env = {"CITYWIFI_REDIS_URL": "redis+cluster://h:1/5"}
    problems = check_config(write_config(tmp_path, ""), environ=env)
    assert any("CITYWIFI_REDIS_URL" in str(p) for p in problems)


async def test_clients_by_topology() -> None:
    cluster = client_from_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    assert isinstance(cluster, RedisCluster)
    await cluster.aclose()
    sentinel = client_from_url("redis+sentinel://127.0.0.1:26379/citywifi")
    assert isinstance(sentinel, ManagedRedis)
    assert isinstance(sentinel.connection_pool, PrimaryOnlyPool)
    await sentinel.aclose()
    plain = client_from_url("redis://127.0.0.1:1/0")
    assert isinstance(plain, ManagedRedis) and not isinstance(plain.pipeline(), DurablePipeline)
    await plain.aclose()


async def test_wait_replicas_without_replicas_is_not_acknowledged(
    redis_proc: RedisProcess,
) -> None:
    """A lone primary cannot satisfy wait_replicas=1: the write is refused as not recorded."""
    client = client_from_url(redis_proc.url + "?wait_replicas=1&wait_timeout_ms=50")
    assert isinstance(client, aioredis.Redis)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set("k", "v")
        with pytest.raises(aioredis.ConnectionError, match="0 of 1 replica"):
            await pipe.execute()
        zero = client_from_url(redis_proc.url + "?wait_replicas=0")
        pipe = zero.pipeline(transaction=False)
        pipe.set("k", "v")
        assert await pipe.execute() == [True]
        await zero.aclose()
    finally:
        await client.aclose()
