"""Turn ``[redis]`` settings into a client: an external URL, or the embedded server."""

from __future__ import annotations

import redis.asyncio as aioredis

from controller.config import RedisSettings
from controller.redis_embedded import EmbeddedRedis

SOCKET_TIMEOUT = 2.0  # a request waits at most this for Redis before it is not answered


def client_from_url(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=0,
        max_connections=256,
    )


def embedded_for(settings: RedisSettings) -> EmbeddedRedis | None:
    return None if settings.url else EmbeddedRedis(settings.data_dir, settings.appendfsync)
