"""``redis.url``: which Redis topology to talk to, parsed without connecting (pure).

One server (handed to redis-py's own URL parser):

- ``redis://[user:password@]host[:port][/db]``, ``rediss://…`` (TLS),
  ``unix://[user:password@]/path/redis.sock[?db=N]``

Redis Cluster, by seed nodes (any reachable one is enough; the rest is discovered):

- ``redis+cluster://[user:password@]host:port[,host:port…]``, ``rediss+cluster://…`` (TLS)

Sentinel-managed primary (the sentinels name the primary of ``service``):

- ``redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]``,
  ``rediss+sentinel://…`` (TLS to sentinels and primary)

The user and password are those of the data nodes. Options in the query string:

- ``wait_replicas=N`` (not for a cluster): a write is acknowledged to a NAS only after N
  replicas have it (Redis ``WAIT``), so a failover cannot lose it;
  ``wait_timeout_ms=M`` (default 500) bounds that wait, after which the request is not
  answered and the NAS retransmits.
- ``sentinel_username=…``, ``sentinel_password=…`` (sentinel only): the sentinels' own auth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

SERVER_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
OUR_OPTIONS = ("wait_replicas", "wait_timeout_ms")
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
DEFAULT_WAIT_TIMEOUT_MS = 500
EXAMPLES = (
    "redis://host:6379/0, rediss://…, unix:///path/redis.sock, "
    "redis+cluster://host1:7000,host2:7001, redis+sentinel://host1:26379,host2:26379/mymaster/0"
)

_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]/]+))(?::(?P<port>\d+))?$")


class RedisUrlError(ValueError):
    """``redis.url`` cannot be used; the message says why (never echoes the password)."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    kind: str  # "server" | "cluster" | "sentinel"
    url: str  # "server": the URL for redis-py, without our options
    hosts: tuple[tuple[str, int], ...] = ()  # cluster seeds or sentinels
    service: str = ""  # sentinel: the monitored primary's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS


def _int_option(options: dict[str, str], name: str, default: int, low: int) -> int:
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RedisUrlError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise RedisUrlError(f"{name} must be at least {low}, got {value}")
    return value


def _hosts(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    out = []
    for part in netloc.split(","):
        m = _HOST.match(part.strip())
        if not m:
            raise RedisUrlError(f"'{part}' is not host:port")
        port = int(m["port"]) if m["port"] else default_port
        if not 0 < port < 65536:
            raise RedisUrlError(f"port {port} out of range in '{part}'")
        out.append((m["v6"] or m["name"], port))
    return tuple(out)


def _split_userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None), hosts


def parse_redis_url(url: str) -> RedisTarget:
    """Parse ``redis.url``; raise ``RedisUrlError`` saying what is wrong."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (*SERVER_SCHEMES, *CLUSTER_SCHEMES, *SENTINEL_SCHEMES):
        raise RedisUrlError(f"unsupported scheme '{scheme}://'; use one of: {EXAMPLES}")
    # urlsplit cannot take "h1:1,h2:2" as a netloc port, so split by hand after the scheme
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    wait_replicas = _int_option(options, "wait_replicas", 0, 0)
    wait_timeout = _int_option(options, "wait_timeout_ms", DEFAULT_WAIT_TIMEOUT_MS, 1)

    if scheme in SERVER_SCHEMES:
        if scheme != "unix" and not parts.netloc:
            raise RedisUrlError(f"no host in the URL; use one of: {EXAMPLES}")
        if scheme == "unix" and not parts.path:
            raise RedisUrlError("no socket path in the unix:// URL")
        base = url.partition("?")[0]  # (urlunsplit would turn unix:///p into unix:/p)
        rest = f"{base}?{urlencode(options)}" if options else base
        return RedisTarget(
            "server", rest, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout
        )

    username, password, netloc = _split_userinfo(parts.netloc)
    if not netloc:
        raise RedisUrlError(f"no hosts in the URL; use one of: {EXAMPLES}")
    tls = scheme.startswith("rediss")
    if scheme in CLUSTER_SCHEMES:
        if parts.path.strip("/"):
            raise RedisUrlError("a cluster has only database 0: drop the path")
        if wait_replicas:
            raise RedisUrlError("wait_replicas is not supported with a cluster")
        if options:
            raise RedisUrlError(f"unknown option(s): {', '.join(sorted(options))}")
        return RedisTarget(
            "cluster", "", _hosts(netloc, 6379), username=username, password=password, tls=tls
        )

    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise RedisUrlError("a sentinel URL ends with /service or /service/db")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise RedisUrlError(f"database '{segments[1]}' is not a number")
        db = int(segments[1])
    s_user = options.pop("sentinel_username", None)
    s_password = options.pop("sentinel_password", None)
    if options:
        raise RedisUrlError(f"unknown option(s): {', '.join(sorted(options))}")
    return RedisTarget(
        "sentinel",
        "",
        _hosts(netloc, 26379),
        service=unquote(segments[0]),
        db=db,
        username=username,
        password=password,
        tls=tls,
        sentinel_username=s_user,
        sentinel_password=s_password,
        wait_replicas=wait_replicas,
        wait_timeout_ms=wait_timeout,
    )


def redact(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hosts}"
    tail = re.sub(r"(sentinel_password=)[^&]*", r"\1***", tail)
    return f"{scheme}{sep}{netloc}{slash}{tail}"
